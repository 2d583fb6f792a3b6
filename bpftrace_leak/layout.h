/*
 * Record layouts, limits and hashes shared by probes.c and the Python side.
 *
 * This file is the one definition: probes.c includes it, tracer/layout.py
 * parses its enums and defines, the map key/value ctypes come from BCC
 * compiling it, and tests/unit/test_layout.py compiles site_hash() with the
 * host's C compiler to pin tracer/sites.py's copy of it. Keep it to enums,
 * defines, plain structs and that one function so that every reader agrees.
 * Program names are the probe catalog's (tracer/catalog.py; a unit test
 * checks it against probes.c).
 */
#ifndef KLEAKTRACE_LAYOUT_H
#define KLEAKTRACE_LAYOUT_H

#define CACHE_NAME_LEN 32
#define COMM_LEN 16
#define REF_NAME_LEN 32

/* What an outstanding allocation is; the report's "kind". */
enum kind {
	KIND_KMALLOC = 0,
	KIND_SLAB = 1,
	KIND_PAGE = 2,
	KIND_PERCPU = 3,
	KIND_VMALLOC = 4,
	KIND_USER_PAGE = 5,
	NR_KINDS = 6,
};

/*
 * Address spaces: slab pointers, PFNs, percpu pointers and vmap addresses are
 * separate, so a PFN never frees a slab pointer. kmalloc and kmem_cache share
 * one space because kfree() frees kmem_cache objects too.
 */
enum space {
	SPACE_SLAB = 0,
	SPACE_PAGE = 1,
	SPACE_PERCPU = 2,
	SPACE_VMALLOC = 3,
};

/* Per-CPU event counters, summed by the Python side. */
enum counter {
	CNT_ALLOCS = 0,		/* allocations recorded (not atomic: may lose a count) */
	CNT_FREES = 1,		/* frees that retired a recorded allocation (ditto) */
	CNT_MISSED_FREES = 2,	/* address handed out again while still recorded */
	CNT_DROPPED = 3,	/* live map full: allocation not recorded */
	CNT_STACK_ERRORS = 4,	/* stacks lost: get_stackid failed, a retry too */
	CNT_FAILED_ALLOCS = 5,	/* NULL / ERR_PTR results, never recorded */
	CNT_IRQ_SKIPPED = 6,	/* target filter on: allocation made in interrupt context */
	CNT_OWN_STACKS = 7,	/* allocations that took their own stack (not atomic) */
	CNT_STACK_COLLISIONS = 8,	/* -EEXIST: another stack holds the hash bucket */
	CNT_STACK_FULL = 9,	/* -ENOMEM: every entry of the stack table is taken */
	CNT_FREED_WITH_SLAB = 10,	/* retired: their slab page went back to the page allocator */
	CNT_FREED_BY_RCU = 11,	/* retired at kvfree_call_rcu(): dead to their owner (kprobe) */
	CNT_FOUND_FREE = 12,	/* retired: the allocator holds them free, on a slab list or in a free page block (tracer/census.py) */
	NR_COUNTERS = 13,
};

/*
 * Kernel functions the programs call (kfuncs, BTF-typed, 6.2+). BCC compiles
 * no __ksym externs, so a program calls one as a helper of this number (no
 * helper has one so high), and tracer/bcc.py rewrites each such call into a
 * kfunc call (src_reg BPF_PSEUDO_KFUNC_CALL, imm the function's BTF id)
 * before the program loads. A call left as it was fails to load ("invalid
 * func unknown#30001").
 */
enum kfunc_call {
	KFUNC_RDONLY_CAST = 30001,	/* bpf_rdonly_cast(obj, btf_id) */
};

/* Raw-tracepoint slab free events, each attached as up to FREE_COPIES copies. */
enum free_event {
	FREE_EV_KFREE = 0,
	FREE_EV_KMEM_CACHE_FREE = 1,
	NR_FREE_EVENTS = 2,
};
#define FREE_COPIES 3

struct live_key {
	u64 addr;		/* in the live hash: MANGLEd (the slot arrays, mmap()ed, keep it plain) */
	u32 space;
	u32 pad;
};

/*
 * Where an object's stack came from. Taking a kernel stack costs about ten
 * times the rest of a probe, so by default (STACKS_AT_SITES) only a call
 * site's first allocation takes one and later allocations there point at it;
 * sites user space promotes (their objects age and grow) take their own.
 */
enum stack_how {
	STACK_OWN = 0,		/* stack_id is this allocation's own stack */
	STACK_SITE = 1,		/* stack_id is the first stack seen at its call site */
};

/*
 * Everything after ts is what groups an object with others: user space
 * reads those bytes as one key (livemap.py), so keep them together and keep
 * no per-object field but ts outside them.
 */
struct live_obj {
	u64 ts;			/* bpf_jiffies64() at allocation: tracer/clock.py converts */
	u64 call_site;
	u64 cache;		/* struct kmem_cache * of KIND_SLAB objects; pages: gfp << 8 | order; else 0 */
	u32 bytes;		/* 0 for KIND_SLAB when the site knows its cache's size */
	u32 cgroup;		/* the allocating task's cgroup (kernfs id): probes/filters.h task_cgroup */
	u32 tgid;
	s32 stack_id;		/* negative: stack lost, fall back to call_site */
	u16 kind;
	u16 stack_how;
	u32 syscall;		/* the allocating task's syscall number: tells call paths apart */
};

/* what clock_now (probes/objects.h) leaves for tracer/clock.py: one instant on both clocks */
struct clock_pair {
	u64 jiffies;
	u64 ktime_ns;
};

/*
 * A slot of an object table (probes/maps.h: slots and slot_objs, page_slots
 * and page_objs): its head, 16 bytes, four to a cache line, in one array,
 * and its record, the struct live_obj, at the same index of another. A free
 * reads only the head; an allocation claims the head and writes the record
 * without reading it. One 64-byte slot of both cost a free 20 ns more
 * (bench/micro.py: slot_read against pair_read, docs/overhead.md).
 */
#define SLOT_BUSY 1		/* slot_head.addr while its record is being written */

struct slot_head {
	u64 addr;		/* 0: free; SLOT_BUSY: being written */
	s64 spilled;		/* objects of this slot's addresses in the `live` hash */
};

/* Objects of the page table (probes.c: page_slots) before pages spill to the hash */
#define PAGE_SLOT_COUNT 65536

/* site_marks: an array of 1 << SITE_MARK_BITS entries, a site's hash tag | its state */
#define SITE_MARK_BITS 16
#define SITE_MARK_STATE 3
#define SITE_MARK_SEEN 1	/* has a representative stack in `sites` */
#define SITE_MARK_PROMOTED 2	/* every allocation takes its own stack */

/*
 * A call site: the allocator's caller, for one cache, in one system call.
 * The syscall number (pt_regs->orig_ax, read for the cost of two helper
 * calls) tells apart paths that meet in one function: alloc_empty_file()
 * from socketpair() and from openat() take a first stack each.
 */
struct site_key {
	u64 call_site;
	u64 cache;
	u32 kind;
	u32 syscall;
};

/*
 * A call site's hash: its site_marks slot is the top SITE_MARK_BITS bits,
 * its tag the rest but SITE_MARK_STATE. tracer/sites.py computes the same.
 */
static inline __attribute__((always_inline)) u64 site_hash(u64 call_site, u64 cache, u32 kind, u32 syscall)
{
	return (call_site ^ (cache >> 3) ^ ((u64)kind << 56) ^ ((u64)syscall << 40)) * 0x9E3779B97F4A7C15ULL;
}

/*
 * A page allocation's call site: the event has none, so its gfp flags and
 * order stand for one, in the site key's `cache`, both above site_hash's
 * >> 3. The order was once at bit 0 and shifted out: a gfp's sites of every
 * order shared one mark, and an allocation of another order than the
 * first's took STACK_SITE with no `sites` entry of its own: "[stack not
 * recorded]" (7.2's order-1 pgd_alloc beside order-0 pages of a driver;
 * a socket's page frags of orders 0 to 3 on this host).
 */
static inline __attribute__((always_inline)) u64 page_site(u64 gfp, u32 order)
{
	return (gfp << 8) | ((u64)(order & 31) << 3);
}

/*
 * ---- slab pages that go back to the page allocator (probes.c: retire_page) ----
 * A leaked object pins its slab page, so when a slab page is freed every
 * object recorded inside it is dead, whatever path freed it (bulk frees,
 * kfree_rcu batches and 6.18's sheaves fire no per-object event). The free
 * event gives the struct page; its address in the direct map is
 * page * (PAGE_BYTES / sizeof(struct page)) + offset, the offset fixed at boot
 * (KASLR moves page_offset_base and vmemmap_base, and this kernel's kallsyms
 * may not list them): it is learned from two large kmallocs whose page
 * allocation was seen just before them, which agree.
 */
struct page_calib {
	u64 offset;		/* va - page * ratio, once two observations agreed */
	u64 candidate;		/* the last observation */
	u64 ready;		/* offset is valid */
};

/* the 4 KiB pages of a freed page still to visit (probes.c: retire_pages) */
struct retire_state {
	u64 va;
	u32 next;
	u32 n;
};

/*
 * ---- the slab census (tracer/census.py, probes.c: census_*) ----
 * Programs run on demand (BPF_PROG_TEST_RUN), not on events: they read the
 * slab allocator's own free lists (slab freelists, per-CPU freelists, 6.18's
 * sheaves and barns) and retire every recorded object found on them.
 */
#define PEEK_BYTES 4096		/* census_peek reads at most this much */
#define CENSUS_LIST_MAX 64	/* slabs or sheaves listed per run */
#define CENSUS_FREELIST_MAX 512	/* objects walked per freelist (the verifier follows 8,192 jumps) */
#define CENSUS_SHEAF_MAX 256	/* objects read per sheaf */

struct peek_buf {
	u8 data[PEEK_BYTES];
};

/* census_lists[CENSUS_SLABS]: a CPU's partial slabs; [CENSUS_SHEAVES]:
 * sheaves to visit (a CPU's, or a barn's full ones) */
enum census_list_kind {
	CENSUS_SLABS = 0,
	CENSUS_SHEAVES = 1,
};

struct census_list {
	u64 items[CENSUS_LIST_MAX];
	u64 n;
};

struct last_page {
	u64 task;		/* pid_tgid that allocated it */
	u64 page;		/* struct page * */
};

struct site {
	s32 stack_id;		/* of the site's first allocation */
	u32 promoted;		/* set by user space: every allocation takes its own stack */
	u64 bytes;		/* KIND_SLAB: the cache's object size */
	char cache[CACHE_NAME_LEN];	/* KIND_SLAB: the cache's name */
};

/* a process that exited while traced; pruned once it exited longer ago
 * than the minimum age and no object of it is outstanding (tracer/reader.py) */
struct exited_comm {
	char comm[COMM_LEN];
	u64 exited_ns;
};

/* ---- cgroups (TRACK_CGROUPS) ---- */
#define CGROUP_PATH_LEN 256

/* a cgroup made while traced (cgroup:cgroup_mkdir), by its kernfs id */
struct cgroup_name {
	char path[CGROUP_PATH_LEN];	/* in its hierarchy, from its root */
	u64 mem_cgroup;		/* its struct mem_cgroup, when the hierarchy has memory (MANGLEd) */
	u64 removed_ns;		/* cgroup:cgroup_rmdir, 0 while it exists */
};

/* probes/filters.h task_cgroup's per-CPU memo: a task's cgroup until any task
 * migrates or exits (cgroup_gen changes) */
struct cgroup_memo {
	u64 pid;		/* the task's pid */
	u64 gen;
	u64 id;
};

/* ---- reference counts (TRACK_REFS) ---- */

enum ref_object {
	REF_DENTRY = 0,
	REF_VFSMOUNT = 1,
};

/* Why a reference is reported. */
enum ref_why {
	WHY_NEVER_PUT = 0,	/* path_get(p) with no path_put(p) yet */
	WHY_PUT_CLEARED = 1,	/* path_put(p) found p's dentry/mnt cleared or changed */
};

/* An outstanding path_get(), keyed by the struct path's address. */
struct path_get_rec {
	u64 dentry;		/* MANGLEd, as every address a map user space does not mmap() keeps */
	u64 mnt;		/* MANGLEd */
	u64 ts_ns;
	u32 tgid;
	s32 stack_id;		/* of the path_get */
	u32 count;		/* path_get()s on this path with these fields */
	u32 pad;
	char comm[COMM_LEN];
	char dentry_name[REF_NAME_LEN];
	char mnt_name[REF_NAME_LEN];	/* the mount point's dentry name */
};

/* References leaked by a put on a cleared path, aggregated per object and stack. */
struct ref_leak_key {
	u64 object;		/* MANGLEd */
	u32 type;		/* enum ref_object */
	s32 get_stack;
	u32 tgid;
	u32 why;		/* enum ref_why */
};

struct ref_leak {
	u64 refs;
	u64 ts_ns;		/* of the first leaked reference */
	s32 put_stack;		/* of the path_put that dropped nothing */
	u32 pad;
	char comm[COMM_LEN];
	char name[REF_NAME_LEN];
};

/*
 * ---- the reference census (tracer/pins.py, probes.c: pins_*) ----
 * Who holds the outstanding dentries: their own counts (d_lockref.count),
 * read in batches by pins_read from addresses user space writes into
 * pin_in, and the holders the kernel can list without kprobes, written by
 * BPF iterators as struct pin_holder records.
 */
#define PIN_BATCH 8192		/* dentries handed over through pin_in/pin_out at a time */
#define PIN_RUN 32		/* read per pins_read run: one a tail call (at most 33) */
#define PIN_NAME_LEN 48		/* bytes of a dentry's name kept */
#define PIN_CHILDREN_MAX 1024	/* children counted per pins_children run (two branches each, of 8,192 the verifier follows) */

enum pin_state {
	PIN_GONE = 0,		/* no record any more, or another object's now: not read */
	PIN_READ = 1,		/* read while its record stood before and after */
};

/* pin_out[i]: what pins_read found at pin_in[i] */
struct pin_dentry {
	u64 parent;		/* d_parent (itself for a root) */
	u64 sb;			/* d_sb */
	u64 inode;		/* d_inode (0: negative) */
	s32 count;		/* d_lockref.count: 0 cached, > 0 held, < 0 dead */
	u32 flags;		/* d_flags */
	u32 state;		/* enum pin_state */
	u32 pad;
	char name[PIN_NAME_LEN];
};

/* who holds a path: one record per holder and path it holds */
enum pin_kind {
	PIN_FILE = 0,		/* a struct file's f_path (fd tables, mappings, exe_file) */
	PIN_PWD = 1,		/* an fs_struct's working directory */
	PIN_ROOT = 2,		/* an fs_struct's root */
	PIN_MNT_NS = 3,		/* a mount namespace (dentry: 0, mnt: the namespace) */
	PIN_STACK = 4,		/* a task's kernel stack (holder: the stack, dentry: the task, mnt: its saved stack pointer or 0; the holder scan's) */
};

/* THREAD_SIZE on x86-64 (16 KiB without KASAN): a PIN_STACK record whose
 * saved stack pointer is its stack + KSTACK_SIZE has no live frame: the
 * stacks of kleaktrace's own threads, read as dead whole */
#define KSTACK_SIZE 16384

struct pin_holder {
	u64 holder;		/* the struct file or fs_struct: one reference each */
	u64 dentry;
	u64 mnt;		/* struct vfsmount * */
	u32 kind;		/* enum pin_kind */
	u32 tgid;
};

/* where pins_read_next is (per CPU) */
struct pin_run {
	u32 at;
	u32 end;
};

/* pins_children's result: children counted from ``next`` on */
struct pin_children {
	u64 next;		/* where the walk stopped (0: it reached the end) */
	u64 count;
};

/*
 * ---- the holder scan (tracer/scan.py; probes/scan.h) ----
 * Who points at each outstanding object: kernel memory is read a batch of
 * pages at a time by scan_read, run on demand, into mmap()ed arrays that
 * user space matches with numpy. The tracer's own records never look like
 * references: addresses kept in maps user space does not mmap() are stored
 * XORed with ADDR_KEY (MANGLE), and mmap()ed pages are left out of the scan.
 */
#define SCAN_BATCH 1024		/* pages user space hands over at a time: 4 MiB */
#define SCAN_RUN 16		/* pages one scan_read run reads */
#define SCAN_PAGE_BYTES 4096

struct scan_page {
	u8 data[SCAN_PAGE_BYTES];
};

#endif
