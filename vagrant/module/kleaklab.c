// SPDX-License-Identifier: GPL-2.0
/*
 * kleaklab: deliberate kernel leaks, and decoys that look like leaks but are
 * not, for kleaktrace's lab. Each scenario is a file under /proc/kleaklab;
 * writing a number K to it runs the scenario K times in the writer's context,
 * so the expected leak is exact and charged to the writing process.
 *
 *   kmalloc      leak kmalloc(64), kmalloc(512), kmalloc(3000)      3K objects
 *   cache        leak one object of the module's own cache          K objects
 *   socket       leak a kernel UDP socket (sock_create_kern)        K sock_inode_cache
 *   percpu       leak alloc_percpu(32 bytes)                        K percpu objects
 *   pathref      the field case: path_get on a copy of an open file's path, the file
 *                is closed, the copy is cleared as 3.x __fput did, then path_put on
 *                it: +1 reference on dentry and vfsmount that is never dropped.
 *                Write "FD" (one fd of the writer) per call.
 *   decoy_park   park K kmalloc objects; writing 0 frees every parked object
 *   decoy_rcu    K objects freed through call_rcu, K through kfree_rcu
 *   decoy_ref    balanced path_get/path_put on the writer's fd FD
 *   sheaf        leak one object of kleaklab_sheaf, a cache made with the kernel's
 *                defaults (on 6.18+ with sheaves asked for), while 16 more of it go
 *                through kmem_cache_alloc_bulk/kmem_cache_free_bulk  K objects
 *   decoy_bulk   16 objects of kleaklab_sheaf allocated one by one, freed with one
 *                kmem_cache_free_bulk; 16 more bulk-allocated and bulk-freed
 *   decoy_rcuvol K objects of kleaklab_sheaf freed with kfree_rcu (write thousands:
 *                kvfree_rcu batches them into pages freed by kfree_bulk, and on
 *                6.18+ caches with sheaves batch them into rcu sheaves instead)
 *   orphan       an object of kleaklab_lone (128 bytes), the only pointer dropped:
 *                nothing points at it                                       K objects
 *   cycle        two kleaklab_lone objects pointing at each other, nothing else 2K objects
 *   hold         kzalloc'd objects kept on the module's list `kept` until unload K objects
 *                (the holder scan: orphaned, orphan cycle, held by `kept`)
 *
 * Process churn, the last decoy, needs no module: the driver forks and execs.
 */
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/net.h>
#include <linux/path.h>
#include <linux/percpu.h>
#include <linux/proc_fs.h>
#include <linux/rcupdate.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/version.h>
#include <net/net_namespace.h>

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Deliberate kernel leaks and decoys for the kleaktrace lab");

struct kleaklab_obj {
	struct list_head node;
	struct rcu_head rcu;
	char payload[200];
};

/* small enough for a sheaf-sized batch to stay on one slab page */
struct kleaklab_small {
	struct rcu_head rcu;
	char payload[80];
};

#define BULK 16

/* the cycle scenario's objects: each points at the other, nothing at them */
struct kleaklab_pair {
	struct kleaklab_pair *peer;
	char payload[120];
};

static struct kmem_cache *kleaklab_cache;
static struct kmem_cache *kleaklab_sheaf;
/*
 * The orphans' and cycles' cache, its own (a constructor: never merged).
 * From kmalloc-128 they took addresses other kernel code had just freed
 * (LIFO reuse): a stale copy of such an address in a live frame of a
 * kworker's stack then "held" a planted orphan (CI, the 7.2 guest: 18 of
 * 19, held by kworker/1:1H). Nothing but this module uses these addresses.
 */
static struct kmem_cache *kleaklab_lone;
static LIST_HEAD(parked);
static DEFINE_MUTEX(parked_lock);
/* the hold scenario's objects: held by this list head, in the module's data */
static LIST_HEAD(kept);
static DEFINE_MUTEX(kept_lock);
static struct proc_dir_entry *dir;
/* Leaked on purpose; kept only so the compiler cannot drop the allocations. */
static void *volatile sink;

/* A constructor keeps SLUB from merging this cache into another one. */
static void kleaklab_ctor(void *p)
{
	memset(p, 0, sizeof(struct kleaklab_obj));
}

static void kleaklab_lone_ctor(void *p)
{
	memset(p, 0, sizeof(struct kleaklab_pair));
}

static noinline int kleaklab_leak_kmalloc(void)
{
	sink = kmalloc(64, GFP_KERNEL);
	sink = kmalloc(512, GFP_KERNEL);
	sink = kmalloc(3000, GFP_KERNEL);
	return sink ? 0 : -ENOMEM;
}

static noinline int kleaklab_leak_cache(void)
{
	sink = kmem_cache_alloc(kleaklab_cache, GFP_KERNEL);
	return sink ? 0 : -ENOMEM;
}

static noinline int kleaklab_leak_socket(void)
{
	struct socket *sock;

	return sock_create_kern(&init_net, AF_INET, SOCK_DGRAM, IPPROTO_UDP, &sock);
}

static noinline int kleaklab_leak_percpu(void)
{
	sink = (void *)__alloc_percpu(32, 8);
	return sink ? 0 : -ENOMEM;
}

/*
 * The field case, reproduced deterministically: today's __fput no longer
 * NULLs f_path, so the module keeps its own copy and clears it the way old
 * kernels did before putting it.
 */
static noinline int kleaklab_pathref(int fd)
{
	struct file *file = fget(fd);
	struct path copy;

	if (!file)
		return -EBADF;
	copy = file->f_path;
	path_get(&copy);
	fput(file);
	/* ... the process closes fd; 3.x __fput set f_path.{dentry,mnt} = NULL ... */
	copy.dentry = NULL;
	copy.mnt = NULL;
	path_put(&copy);	/* dput(NULL), mntput(NULL): nothing dropped */
	return 0;
}

/*
 * The stack of the write() that made an orphan keeps its last pointer in a
 * dead slot until something overwrites it, and the holder scan reads kernel
 * stacks (kmemleak's do too): the scenarios wipe what lies below them. Deep:
 * the allocation's tracepoint ran the tracer's BPF program and its stack
 * unwinder on this stack, far below kmalloc's own frames. With a 2 KiB wipe
 * the vagrant box's kcore and BPF scans disagreed on 8 of the cycle's 14
 * objects, held for one read and not the other: a stale word that a running
 * task's stack (read whole: its stack pointer moves) showed to one read only.
 * 4 x 1.5 KiB, one frame each.
 */
static noinline void kleaklab_scrub_from(int depth)
{
	char buf[1536];

	memzero_explicit(buf, sizeof(buf));
	barrier_data(buf);
	if (depth > 0)
		kleaklab_scrub_from(depth - 1);
	barrier_data(buf);	/* no tail call: each level a frame of its own */
}

static noinline void kleaklab_scrub(void)
{
	kleaklab_scrub_from(3);
}

static noinline int kleaklab_orphan(void)
{
	void *p = kmem_cache_alloc(kleaklab_lone, GFP_KERNEL);

	if (!p)
		return -ENOMEM;
	barrier_data(p);	/* allocated for real; its only pointer dies here */
	return 0;
}

static noinline int kleaklab_cycle(void)
{
	struct kleaklab_pair *a = kmem_cache_alloc(kleaklab_lone, GFP_KERNEL);
	struct kleaklab_pair *b = kmem_cache_alloc(kleaklab_lone, GFP_KERNEL);

	if (!a || !b) {
		if (a)
			kmem_cache_free(kleaklab_lone, a);
		if (b)
			kmem_cache_free(kleaklab_lone, b);
		return -ENOMEM;
	}
	a->peer = b;
	b->peer = a;
	barrier_data(a);
	barrier_data(b);
	return 0;
}

static noinline int kleaklab_hold(void)
{
	struct kleaklab_obj *obj = kzalloc(sizeof(*obj), GFP_KERNEL);

	if (!obj)
		return -ENOMEM;
	mutex_lock(&kept_lock);
	list_add_tail(&obj->node, &kept);
	mutex_unlock(&kept_lock);
	return 0;
}

static void release_kept(void)
{
	struct kleaklab_obj *obj, *tmp;

	mutex_lock(&kept_lock);
	list_for_each_entry_safe(obj, tmp, &kept, node) {
		list_del(&obj->node);
		kfree(obj);
	}
	mutex_unlock(&kept_lock);
}

static noinline int kleaklab_decoy_ref(int fd)
{
	struct file *file = fget(fd);
	struct path copy;

	if (!file)
		return -EBADF;
	copy = file->f_path;
	path_get(&copy);
	path_put(&copy);
	fput(file);
	return 0;
}

static noinline int kleaklab_decoy_park(void)
{
	struct kleaklab_obj *obj = kmalloc(sizeof(*obj), GFP_KERNEL);

	if (!obj)
		return -ENOMEM;
	mutex_lock(&parked_lock);
	list_add(&obj->node, &parked);
	mutex_unlock(&parked_lock);
	return 0;
}

static void release_parked(void)
{
	struct kleaklab_obj *obj, *tmp;

	mutex_lock(&parked_lock);
	list_for_each_entry_safe(obj, tmp, &parked, node) {
		list_del(&obj->node);
		kfree(obj);
	}
	mutex_unlock(&parked_lock);
}

static void kleaklab_rcu_free(struct rcu_head *head)
{
	kfree(container_of(head, struct kleaklab_obj, rcu));
}

static noinline int kleaklab_decoy_rcu(void)
{
	struct kleaklab_obj *a = kmalloc(sizeof(*a), GFP_KERNEL);
	struct kleaklab_obj *b = kmalloc(sizeof(*b), GFP_KERNEL);

	if (a)
		call_rcu(&a->rcu, kleaklab_rcu_free);
	if (b)
		kfree_rcu(b, rcu);
	return (a && b) ? 0 : -ENOMEM;
}

/* objects of kleaklab_sheaf through the bulk interface, none kept */
static noinline int kleaklab_bulk_churn(void)
{
	void *objs[BULK];

	/* an int (objects allocated, 0 on failure) up to 6.x, a bool in 7.x */
	if (!kmem_cache_alloc_bulk(kleaklab_sheaf, GFP_KERNEL, BULK, objs))
		return -ENOMEM;
	kmem_cache_free_bulk(kleaklab_sheaf, BULK, objs);
	return 0;
}

static noinline int kleaklab_leak_sheaf(void)
{
	sink = kmem_cache_alloc(kleaklab_sheaf, GFP_KERNEL);
	if (!sink)
		return -ENOMEM;
	return kleaklab_bulk_churn();
}

static noinline int kleaklab_decoy_bulk(void)
{
	void *objs[BULK];
	int i;

	for (i = 0; i < BULK; i++) {
		objs[i] = kmem_cache_alloc(kleaklab_sheaf, GFP_KERNEL);
		if (!objs[i]) {
			kmem_cache_free_bulk(kleaklab_sheaf, i, objs);
			return -ENOMEM;
		}
	}
	kmem_cache_free_bulk(kleaklab_sheaf, BULK, objs);
	return kleaklab_bulk_churn();
}

static noinline int kleaklab_decoy_rcuvol(void)
{
	struct kleaklab_small *obj = kmem_cache_alloc(kleaklab_sheaf, GFP_KERNEL);

	if (!obj)
		return -ENOMEM;
	kfree_rcu(obj, rcu);
	return 0;
}

static struct kmem_cache *make_sheaf_cache(void)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 18, 0)
	/* sheaves are opt-in on 6.18: ask for them as maple tree and vma caches do */
	struct kmem_cache_args args = { .sheaf_capacity = 32 };

	return kmem_cache_create("kleaklab_sheaf", sizeof(struct kleaklab_small), &args, 0);
#else
	/* the kernel's defaults: no constructor, so SLUB may merge it with a twin */
	return kmem_cache_create("kleaklab_sheaf", sizeof(struct kleaklab_small), 0, 0, NULL);
#endif
}

enum scenario {
	S_KMALLOC, S_CACHE, S_SOCKET, S_PERCPU, S_PATHREF, S_PARK, S_RCU, S_REF,
	S_SHEAF, S_BULK, S_RCUVOL, S_ORPHAN, S_CYCLE, S_HOLD, NR_SCENARIOS
};
static const char *const names[NR_SCENARIOS] = {
	"kmalloc", "cache", "socket", "percpu", "pathref", "decoy_park", "decoy_rcu", "decoy_ref",
	"sheaf", "decoy_bulk", "decoy_rcuvol", "orphan", "cycle", "hold",
};

static ssize_t kleaklab_write(struct file *file, const char __user *ubuf, size_t len, loff_t *off)
{
	long which = (long)pde_data(file_inode(file));
	char buf[24];
	long n, i;
	int err = 0;

	if (len >= sizeof(buf))
		return -EINVAL;
	if (copy_from_user(buf, ubuf, len))
		return -EFAULT;
	buf[len] = 0;
	if (kstrtol(strim(buf), 10, &n) || n < 0 || n > 1000000)
		return -EINVAL;
	switch (which) {
	case S_PATHREF:
		err = kleaklab_pathref(n);	/* n is a file descriptor here */
		break;
	case S_REF:
		err = kleaklab_decoy_ref(n);
		break;
	case S_PARK:
		if (n == 0) {
			release_parked();
			break;
		}
		fallthrough;
	default:
		for (i = 0; i < n && !err; i++) {
			switch (which) {
			case S_KMALLOC: err = kleaklab_leak_kmalloc(); break;
			case S_CACHE: err = kleaklab_leak_cache(); break;
			case S_SOCKET: err = kleaklab_leak_socket(); break;
			case S_PERCPU: err = kleaklab_leak_percpu(); break;
			case S_PARK: err = kleaklab_decoy_park(); break;
			case S_RCU: err = kleaklab_decoy_rcu(); break;
			case S_SHEAF: err = kleaklab_leak_sheaf(); break;
			case S_BULK: err = kleaklab_decoy_bulk(); break;
			case S_RCUVOL: err = kleaklab_decoy_rcuvol(); break;
			case S_ORPHAN: err = kleaklab_orphan(); kleaklab_scrub(); break;
			case S_CYCLE: err = kleaklab_cycle(); kleaklab_scrub(); break;
			case S_HOLD: err = kleaklab_hold(); break;
			}
		}
	}
	return err ? err : len;
}

static const struct proc_ops kleaklab_ops = {
	.proc_write = kleaklab_write,
};

static int __init kleaklab_init(void)
{
	long i;

	kleaklab_cache = kmem_cache_create("kleaklab_obj", sizeof(struct kleaklab_obj), 0, 0, kleaklab_ctor);
	if (!kleaklab_cache)
		return -ENOMEM;
	kleaklab_sheaf = make_sheaf_cache();
	kleaklab_lone = kmem_cache_create("kleaklab_lone", sizeof(struct kleaklab_pair), 0, 0, kleaklab_lone_ctor);
	if (!kleaklab_sheaf || !kleaklab_lone) {
		kmem_cache_destroy(kleaklab_lone);
		kmem_cache_destroy(kleaklab_sheaf);
		kmem_cache_destroy(kleaklab_cache);
		return -ENOMEM;
	}
	dir = proc_mkdir("kleaklab", NULL);
	if (!dir)
		goto fail;
	for (i = 0; i < NR_SCENARIOS; i++)
		if (!proc_create_data(names[i], 0200, dir, &kleaklab_ops, (void *)i))
			goto fail;
	return 0;
fail:
	proc_remove(dir);
	kmem_cache_destroy(kleaklab_lone);
	kmem_cache_destroy(kleaklab_sheaf);
	kmem_cache_destroy(kleaklab_cache);
	return -ENOMEM;
}

static void __exit kleaklab_exit(void)
{
	proc_remove(dir);
	release_parked();
	release_kept();
	rcu_barrier();
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 12, 0)
	kvfree_rcu_barrier();	/* kfree_rcu'd objects of kleaklab_sheaf */
#endif
	/* the leaked cache objects make this complain, which is the point */
	kmem_cache_destroy(kleaklab_lone);
	kmem_cache_destroy(kleaklab_sheaf);
	kmem_cache_destroy(kleaklab_cache);
}

module_init(kleaklab_init);
module_exit(kleaklab_exit);
