/*
 * kleaktrace kernel side: keeps every outstanding allocation in `live`.
 *
 * Allocations come from perf-event tracepoints: BCC builds their argument
 * structs from the running kernel's tracefs format files, so field offsets
 * are never taken from (possibly mismatched) headers. Fields that some
 * kernels lack are guarded by HAVE_FIELD_* macros that tracer.py defines from
 * those same format files.
 *
 * Frees come from raw tracepoints, several identical copies per event. A BPF
 * program does not run while the same program is already running on that CPU
 * (perf-event programs: while *any* of them is), so an RCU softirq freeing
 * sockets inside a running probe would lose its frees and leave phantom
 * leaks (iovisor/bcc#3005). A nested free finds a copy that is not running;
 * a free is an idempotent delete, so running it twice is harmless.
 *
 * Compile-time knobs (set by tracer.py): MAX_OBJECTS, STACK_SLOTS,
 * MAX_TARGETS, PAGE_BYTES, FILTER_TARGETS, TRACE_CHILDREN, USER_PAGE_GFP,
 * INCLUDE_USER_PAGES, HAVE_TP_<system>_<event>, HAVE_FIELD_<event>_<field>.
 */
#include <uapi/linux/ptrace.h>
#include "layout.h"

#define EEXIST_ 17	/* errno values; the uapi header differs between trees */
#define E2BIG_ 7

BPF_HASH(live, struct live_key, struct live_obj, MAX_OBJECTS);
BPF_STACK_TRACE(stacks, STACK_SLOTS);
BPF_PERCPU_ARRAY(counters, u64, NR_COUNTERS);
BPF_HASH(targets, u32, u8, MAX_TARGETS);
/*
 * Per CPU: [IRQ_SOFT] inside a softirq handler, [IRQ_HARD] inside a hardirq
 * handler, kept by the irq_* raw programs below. The tracepoint record cannot
 * tell: while a perf-event BPF program runs, the record's common header holds
 * a pt_regs pointer, not common_flags. Flags, not a depth: softirqs do not
 * nest on a CPU and handlers run with interrupts off, and a flag set or
 * cleared twice heals itself where a counter would stay off by one for ever
 * (an entry seen without its exit when attaching mid-softirq).
 */
#define IRQ_SOFT 0
#define IRQ_HARD 1
BPF_PERCPU_ARRAY(irq_state, u32, 2);

static __always_inline void count(u32 which)
{
	u64 *c = counters.lookup(&which);
	/* atomic: a raw-tracepoint free can interrupt an alloc probe on this CPU */
	if (c)
		__sync_fetch_and_add(c, 1);
}

static __always_inline int failed_ptr(u64 addr)
{
	/* NULL and ERR_PTR() results (iovisor/bcc#3085) */
	return addr == 0 || addr >= (u64)-4095;
}

/*
 * Decide whether the current allocation belongs to a target. Allocations
 * made in interrupt context run on behalf of nobody in particular, so with a
 * target filter they are not charged to whatever task they interrupted.
 */
static __always_inline int wanted(void *args)
{
#ifdef FILTER_TARGETS
	int soft = IRQ_SOFT, hard = IRQ_HARD;
	u32 *in_soft = irq_state.lookup(&soft);
	u32 *in_hard = irq_state.lookup(&hard);
	if ((in_soft && *in_soft) || (in_hard && *in_hard)) {
		count(CNT_IRQ_SKIPPED);
		return 0;
	}
	u32 tgid = bpf_get_current_pid_tgid() >> 32;
	return targets.lookup(&tgid) != NULL;
#else
	return 1;
#endif
}

/*
 * An untraced allocation at an address we still hold means its free was never
 * seen (a skipped or bulk free): retire the stale record now.
 */
static __always_inline void retire_reused(struct live_key *key)
{
	if (live.delete(key) == 0)
		count(CNT_MISSED_FREES);
}

/*
 * Whether an allocation at ``key`` is to be recorded: never a failed one, and
 * one for a process we do not trace retires any stale record at its address.
 */
static __always_inline int admit(void *args, struct live_key *key, int failed)
{
	if (failed) {
		count(CNT_FAILED_ALLOCS);
		return 0;
	}
	if (!wanted(args)) {
		retire_reused(key);
		return 0;
	}
	return 1;
}

static __always_inline void record(void *args, struct live_key *key,
				   struct live_obj *obj)
{
	obj->ts_ns = bpf_ktime_get_ns();
	obj->tgid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(&obj->comm, sizeof(obj->comm));
	obj->stack_id = stacks.get_stackid(args, 0);
	if (obj->stack_id < 0)
		count(CNT_STACK_ERRORS);

	int ret = live.insert(key, obj);
	if (ret == -EEXIST_) {
		count(CNT_MISSED_FREES);
		live.update(key, obj);
	} else if (ret != 0) {
		count(CNT_DROPPED);
		return;
	}
	count(CNT_ALLOCS);
}

static __always_inline int forget(u32 space, u64 addr)
{
	struct live_key key = {.addr = addr, .space = space};
	if (live.delete(&key) == 0)
		count(CNT_FREES);
	return 0;
}

/* ---- slab: kmalloc and kmem_cache_alloc ---------------------------------- */

#ifdef HAVE_TP_kmem_kmalloc
TRACEPOINT_PROBE(kmem, kmalloc)
{
	struct live_key key = {.addr = (u64)args->ptr, .space = SPACE_SLAB};
	if (!admit(args, &key, failed_ptr(key.addr)))
		return 0;
	struct live_obj obj = {.kind = KIND_KMALLOC};
	obj.bytes = args->bytes_alloc;
	obj.call_site = args->call_site;
	record(args, &key, &obj);
	return 0;
}
#endif

#ifdef HAVE_TP_kmem_kmem_cache_alloc
TRACEPOINT_PROBE(kmem, kmem_cache_alloc)
{
	struct live_key key = {.addr = (u64)args->ptr, .space = SPACE_SLAB};
	if (!admit(args, &key, failed_ptr(key.addr)))
		return 0;
	struct live_obj obj = {.kind = KIND_SLAB};
	obj.bytes = args->bytes_alloc;
	obj.call_site = args->call_site;
#ifdef HAVE_FIELD_kmem_cache_alloc_name
	/* `name` was added to kmem_cache_alloc between 6.14 and 6.18 */
	TP_DATA_LOC_READ_STR(&obj.cache, name, sizeof(obj.cache));
#endif
	record(args, &key, &obj);
	return 0;
}
#endif

/* ---- pages ---------------------------------------------------------------- */

#ifdef HAVE_TP_kmem_mm_page_alloc
TRACEPOINT_PROBE(kmem, mm_page_alloc)
{
	struct live_key key = {.addr = args->pfn, .space = SPACE_PAGE};
	/* the event reports a failed allocation as pfn -1 */
	if (!admit(args, &key, key.addr == (u64)-1))
		return 0;
	/* GFP_USER and its relatives set __GFP_HARDWALL: anonymous, page-cache and
	 * pipe pages of the process, not kernel objects */
	u32 kind = (args->gfp_flags & USER_PAGE_GFP) ? KIND_USER_PAGE : KIND_PAGE;
#ifndef INCLUDE_USER_PAGES
	if (kind == KIND_USER_PAGE) {
		retire_reused(&key);
		return 0;
	}
#endif
	struct live_obj obj = {.kind = kind};
	obj.bytes = (u64)PAGE_BYTES << args->order;
	record(args, &key, &obj);
	return 0;
}
#endif

#ifdef HAVE_TP_kmem_mm_page_free
TRACEPOINT_PROBE(kmem, mm_page_free)
{
	return forget(SPACE_PAGE, args->pfn);
}
#endif

#ifdef HAVE_TP_kmem_mm_page_free_batched
TRACEPOINT_PROBE(kmem, mm_page_free_batched)
{
	return forget(SPACE_PAGE, args->pfn);
}
#endif

/* ---- percpu --------------------------------------------------------------- */

#ifdef HAVE_TP_percpu_percpu_alloc_percpu
TRACEPOINT_PROBE(percpu, percpu_alloc_percpu)
{
	struct live_key key = {.addr = (u64)args->ptr, .space = SPACE_PERCPU};
	if (!admit(args, &key, failed_ptr(key.addr)))
		return 0;
	struct live_obj obj = {.kind = KIND_PERCPU};
	/* call_site and bytes_alloc were added in 5.19 (commit dee6876db0a7) */
#ifdef HAVE_FIELD_percpu_alloc_percpu_bytes_alloc
	obj.bytes = args->bytes_alloc;
#else
	obj.bytes = args->size;
#endif
#ifdef HAVE_FIELD_percpu_alloc_percpu_call_site
	obj.call_site = args->call_site;
#endif
	record(args, &key, &obj);
	return 0;
}
#endif

#ifdef HAVE_TP_percpu_percpu_free_percpu
TRACEPOINT_PROBE(percpu, percpu_free_percpu)
{
	return forget(SPACE_PERCPU, (u64)args->ptr);
}
#endif

/* ---- vmalloc (per vmap area; the events exist from 6.2) -------------------- */

#ifdef HAVE_TP_vmalloc_alloc_vmap_area
TRACEPOINT_PROBE(vmalloc, alloc_vmap_area)
{
	struct live_key key = {.addr = args->addr, .space = SPACE_VMALLOC};
	if (!admit(args, &key, args->failed || key.addr == 0))
		return 0;
	struct live_obj obj = {.kind = KIND_VMALLOC};
	obj.bytes = args->size;
	record(args, &key, &obj);
	return 0;
}
#endif

#ifdef HAVE_TP_vmalloc_free_vmap_area_noflush
TRACEPOINT_PROBE(vmalloc, free_vmap_area_noflush)
{
	return forget(SPACE_VMALLOC, args->va_start);
}
#endif

/* ---- children ------------------------------------------------------------- */

#ifdef TRACE_CHILDREN
TRACEPOINT_PROBE(sched, sched_process_fork)
{
	/* the forking task is current; parent_pid is its thread id, not its tgid */
	u32 parent = bpf_get_current_pid_tgid() >> 32;
	if (targets.lookup(&parent)) {
		u32 child = args->child_pid;
		u8 one = 1;
		targets.update(&child, &one);
	}
	return 0;
}
#endif

/*
 * ---- slab frees, raw tracepoints ------------------------------------------
 * kfree(call_site, ptr) and kmem_cache_free(call_site, ptr, s | name): the
 * pointer is args[1] in every kernel from 4.x to 6.18.
 */
/*
 * Which copies are running on this CPU (free_running[event][copy]) and how
 * many of copy 0's skipped events a later copy handled (free_covered[event]).
 * Copy k runs an event first when copies 0..k-1 all skipped it, i.e. are all
 * mid-run on this CPU; then copy 0's miss was covered. The kernel's
 * recursion_misses of copy 0 minus free_covered is what no copy saw.
 */
BPF_PERCPU_ARRAY(free_running, u32, NR_FREE_EVENTS * FREE_COPIES);
BPF_PERCPU_ARRAY(free_covered, u64, NR_FREE_EVENTS);

static __always_inline u32 copy_running(int event, int copy)
{
	int idx = event * FREE_COPIES + copy;
	u32 *r = free_running.lookup(&idx);
	return r ? *r : 0;
}

static __always_inline int free_copy(int event, int copy, u64 addr)
{
	int idx = event * FREE_COPIES + copy;
	u32 *me = free_running.lookup(&idx);
	if (copy > 0 && copy_running(event, 0) &&
	    (copy < 2 || copy_running(event, 1))) {
		u64 *covered = free_covered.lookup(&event);
		if (covered)
			*covered += 1;
	}
	if (me)
		*me = 1;
	forget(SPACE_SLAB, addr);
	if (me)
		*me = 0;
	return 0;
}

#define SLAB_FREE_COPY(event, idx, n)                                          \
	int free_##event##_##n(struct bpf_raw_tracepoint_args *ctx)           \
	{                                                                      \
		return free_copy(idx, n, ctx->args[1]);                        \
	}

SLAB_FREE_COPY(kfree, FREE_EV_KFREE, 0)
SLAB_FREE_COPY(kfree, FREE_EV_KFREE, 1)
SLAB_FREE_COPY(kfree, FREE_EV_KFREE, 2)
SLAB_FREE_COPY(kmem_cache_free, FREE_EV_KMEM_CACHE_FREE, 0)
SLAB_FREE_COPY(kmem_cache_free, FREE_EV_KMEM_CACHE_FREE, 1)
SLAB_FREE_COPY(kmem_cache_free, FREE_EV_KMEM_CACHE_FREE, 2)

/*
 * ---- bulk frees, kprobe (attached only where the kernel has kprobes) ---------
 * kmem_cache_free_bulk(s, size, p) frees p[0..size) with no per-object event;
 * kfree_bulk() is an inline call to it, and that is how batched kfree_rcu()
 * frees (kfree_rcu_work, 5.x to 6.x). Without this, every kfree_rcu'd object
 * is a phantom leak. KVFREE_BULK_MAX_ENTR is about 510 on 4 KiB pages; other
 * callers pass fewer.
 */
#define BULK_MAX 1024

int free_bulk(struct pt_regs *ctx)
{
	u64 size = PT_REGS_PARM2(ctx);
	void **p = (void **)PT_REGS_PARM3(ctx);

	for (int i = 0; i < BULK_MAX; i++) {
		if (i >= size)
			break;
		void *obj = NULL;
		bpf_probe_read_kernel(&obj, sizeof(obj), &p[i]);
		if (obj)
			forget(SPACE_SLAB, (u64)obj);
	}
	return 0;
}

/*
 * ---- interrupt context, for the target filter --------------------------------
 * One program per event: a program shared by two events would skip the inner
 * one when a hardirq arrives while it runs for a softirq.
 */
static __always_inline int irq_set(int which, u32 value)
{
	u32 *state = irq_state.lookup(&which);
	if (state)
		*state = value;
	return 0;
}

int irq_softirq_entry(struct bpf_raw_tracepoint_args *ctx) { return irq_set(IRQ_SOFT, 1); }
int irq_softirq_exit(struct bpf_raw_tracepoint_args *ctx) { return irq_set(IRQ_SOFT, 0); }
int irq_irq_handler_entry(struct bpf_raw_tracepoint_args *ctx) { return irq_set(IRQ_HARD, 1); }
int irq_irq_handler_exit(struct bpf_raw_tracepoint_args *ctx) { return irq_set(IRQ_HARD, 0); }

#ifdef TRACK_REFS
/*
 * ---- reference counts: path_get / path_put, kprobes ------------------------
 * dget() is inline (its lockref_get is not even traceable on 6.1) and the
 * dcache takes most references with bare increments, so per-object deltas of
 * dput() cannot tell a module's unbalanced get from the dcache's own. A
 * struct path is different: the code that path_get()s one path_put()s the
 * same struct. Records are keyed by its address; a path_put() that finds the
 * fields cleared or changed (the field case: close() NULLed f_path on 3.x
 * kernels, the module's path_put then dropped nothing) leaks the references
 * that path_get() took. Offsets come from the running kernel's BTF:
 * PATH_MNT_OFF, PATH_DENTRY_OFF, DENTRY_NAME_OFF (d_name.name),
 * MOUNT_MNT_OFF (struct mount.mnt), MOUNT_MOUNTPOINT_OFF.
 */
BPF_HASH(path_gets, u64, struct path_get_rec, MAX_REFS);
BPF_HASH(ref_leaks, struct ref_leak_key, struct ref_leak, MAX_REFS);

static __always_inline void read_path(u64 p, u64 *mnt, u64 *dentry)
{
	bpf_probe_read_kernel(mnt, sizeof(*mnt), (void *)(p + PATH_MNT_OFF));
	bpf_probe_read_kernel(dentry, sizeof(*dentry), (void *)(p + PATH_DENTRY_OFF));
}

static __always_inline void dentry_name(u64 dentry, char *buf)
{
	u64 name = 0;
	if (!dentry)
		return;
	bpf_probe_read_kernel(&name, sizeof(name), (void *)(dentry + DENTRY_NAME_OFF));
	if (name)
		bpf_probe_read_kernel_str(buf, REF_NAME_LEN, (void *)name);
}

/* a vfsmount is embedded in a struct mount; name it by its mount point */
static __always_inline void mount_name(u64 mnt, char *buf)
{
	u64 mountpoint = 0;
	if (!mnt)
		return;
	bpf_probe_read_kernel(&mountpoint, sizeof(mountpoint),
			      (void *)(mnt - MOUNT_MNT_OFF + MOUNT_MOUNTPOINT_OFF));
	dentry_name(mountpoint, buf);
}

/*
 * A struct file's own reference: do_dentry_open() path_get()s f_path, and
 * __fput() drops it with dput()+mntput(), never path_put(). Such gets are not
 * recorded; they are recognised by the return address into those functions
 * (IGNORE_CALLER_{START,END}_n from /proc/kallsyms). At a kprobe on function
 * entry the stack pointer points at the return address.
 */
static __always_inline int file_lifetime_get(struct pt_regs *ctx)
{
	u64 ret = 0;
	bpf_probe_read_kernel(&ret, sizeof(ret), (void *)PT_REGS_SP(ctx));
#ifdef IGNORE_CALLER_START_0
	if (ret >= IGNORE_CALLER_START_0 && ret < IGNORE_CALLER_END_0)
		return 1;
#endif
#ifdef IGNORE_CALLER_START_1
	if (ret >= IGNORE_CALLER_START_1 && ret < IGNORE_CALLER_END_1)
		return 1;
#endif
#ifdef IGNORE_CALLER_START_2
	if (ret >= IGNORE_CALLER_START_2 && ret < IGNORE_CALLER_END_2)
		return 1;
#endif
	return 0;
}

int ref_path_get(struct pt_regs *ctx)
{
	u64 p = PT_REGS_PARM1(ctx);
	struct path_get_rec rec = {};

	if (!wanted(ctx) || file_lifetime_get(ctx))
		return 0;
	read_path(p, &rec.mnt, &rec.dentry);
	struct path_get_rec *old = path_gets.lookup(&p);
	if (old && old->dentry == rec.dentry && old->mnt == rec.mnt) {
		__sync_fetch_and_add(&old->count, 1);
		return 0;
	}
	rec.ts_ns = bpf_ktime_get_ns();
	rec.tgid = bpf_get_current_pid_tgid() >> 32;
	rec.count = 1;
	rec.stack_id = stacks.get_stackid(ctx, 0);
	bpf_get_current_comm(&rec.comm, sizeof(rec.comm));
	dentry_name(rec.dentry, rec.dentry_name);
	mount_name(rec.mnt, rec.mnt_name);
	path_gets.update(&p, &rec);
	return 0;
}

static __always_inline void leak_ref(struct path_get_rec *rec, u32 type, u64 object,
				     const char *name, s32 put_stack)
{
	struct ref_leak_key key = {.object = object, .type = type, .get_stack = rec->stack_id,
				   .tgid = rec->tgid, .why = WHY_PUT_CLEARED};
	struct ref_leak zero = {};
	struct ref_leak *leak;

	if (!object)
		return;
	leak = ref_leaks.lookup_or_try_init(&key, &zero);
	if (!leak)
		return;
	if (leak->refs == 0) {
		leak->ts_ns = rec->ts_ns;
		leak->put_stack = put_stack;
		__builtin_memcpy(leak->comm, rec->comm, sizeof(leak->comm));
		bpf_probe_read_kernel_str(leak->name, sizeof(leak->name), name);
	}
	__sync_fetch_and_add(&leak->refs, 1);
}

int ref_path_put(struct pt_regs *ctx)
{
	u64 p = PT_REGS_PARM1(ctx);
	u64 mnt = 0, dentry = 0;
	struct path_get_rec *rec = path_gets.lookup(&p);

	if (!rec)
		return 0;
	read_path(p, &mnt, &dentry);
	if (mnt != rec->mnt || dentry != rec->dentry) {
		/* this put drops nothing of what path_get took: those references leak */
		s32 put_stack = stacks.get_stackid(ctx, 0);
		leak_ref(rec, REF_DENTRY, rec->dentry, rec->dentry_name, put_stack);
		leak_ref(rec, REF_VFSMOUNT, rec->mnt, rec->mnt_name, put_stack);
	}
	if (rec->count <= 1)
		path_gets.delete(&p);
	else
		__sync_fetch_and_add(&rec->count, -1);
	return 0;
}
#endif
