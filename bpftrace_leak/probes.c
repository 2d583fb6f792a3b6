/*
 * kleaktrace kernel side: keeps every outstanding allocation, slab objects
 * in `slots`, pages in `page_slots`, the rest in `live`.
 *
 * Every tracepoint is attached raw: the program gets the tracepoint's
 * arguments themselves, several times cheaper than the perf-event form,
 * which first copies a record into a buffer. Their positions come from the
 * running kernel's BTF (tracer/plan.py): ARG_<event>_<name> is the index of
 * argument <name> in ctx->args, defined for every argument the kernel's
 * tracepoint has, so a program tests for an argument some kernels lack with
 * #ifdef. EVENT_<event> is defined for each tracepoint the session attaches.
 * What each program attaches to is the probe catalog's (tracer/catalog.py).
 *
 * A kernel stack costs about ten times the rest of a probe, so by default a
 * call site takes one on its first allocation and again only once user space
 * promotes it (take_stack).
 *
 * Frees come from raw tracepoints, several identical copies per event. A BPF
 * program does not run while the same program is already running on that CPU
 * (perf-event programs: while *any* of them is), so an RCU softirq freeing
 * sockets inside a running probe would lose its frees and leave phantom
 * leaks (iovisor/bcc#3005). A nested free finds a copy that is not running.
 *
 * Compile-time knobs (tracer/plan.py): SLOT_BITS, SLOT_COUNT, MAX_OBJECTS,
 * STACK_SLOTS, MAX_SITES, STACKS_AT_SITES, TARGET_WORDS, PAGE_BYTES,
 * FILTER_TARGETS, TRACE_CHILDREN, USER_PAGE_GFP, INCLUDE_USER_PAGES,
 * TRACK_ALLOCS, TRACK_REFS, REFS_FENTRY, EVENT_*, ARG_*, and struct
 * offsets from BTF (KMEM_CACHE_*_OFF, TASK_*_OFF, PATH_*_OFF, ...).
 */
#include <uapi/linux/ptrace.h>
#include "layout.h"

/*
 * Addresses kept in maps user space does not mmap() are stored XORed with
 * ADDR_KEY (random per session; its top 16 bits set, so a mangled kernel
 * address is a user-space one and never 0): the holder scan reads all of
 * kernel memory for words that point into outstanding objects, and the
 * tracer's own records of them must not count (layout.h: the holder scan).
 */
#define MANGLE(addr) ((u64)(addr) ^ ADDR_KEY)

#include "probes/scan.h"

/* errno values; the uapi headers differ between trees */
#define EEXIST_ 17
#define ENOMEM_ 12

/* argument ``name`` of raw tracepoint ``event`` */
#define ARG(event, name) (ctx->args[ARG_##event##_##name])

/* kernel memory at ``addr``; 0 where it cannot be read */
static __always_inline u64 kread(u64 addr)
{
	u64 v = 0;
	bpf_probe_read_kernel(&v, sizeof(v), (void *)addr);
	return v;
}

static __always_inline u32 kread32(u64 addr)
{
	u32 v = 0;
	bpf_probe_read_kernel(&v, sizeof(v), (void *)addr);
	return v;
}


/*
 * Slab objects live in `slots`, pages in `page_slots`, arrays indexed by the address:
 * claiming and releasing a slot is one compare-and-swap, with no bucket lock
 * and no allocation, and most slab objects live for microseconds. An object
 * whose slot is taken goes to the `live` hash, which also holds every other
 * address space; the slot counts such objects (spilled), so that while it
 * holds none no event for its addresses touches the hash at all. `slots` is
 * mmap()ed by user space (livemap.py), which reads it without a system call
 * per entry.
 */
BPF_F_TABLE("array", u32, struct slab_slot, slots, SLOT_COUNT, BPF_F_MMAPABLE);
/* Small: every page-cache page comes and goes through it, and only kernel
 * pages stay; a table that stays in cache keeps those visits cheap. */
BPF_F_TABLE("array", u32, struct slab_slot, page_slots, PAGE_SLOT_COUNT, BPF_F_MMAPABLE);
BPF_HASH(live, struct live_key, struct live_obj, MAX_OBJECTS);
/* Exactly --stack-slots entries (BPF_STACK_TRACE would round them up to a
 * power of two) in the next power of two of hash buckets: see stack_of. */
BPF_TABLE("stacktrace", int, struct bpf_stacktrace, stacks, STACK_SLOTS);
#define SITE_MARK_SLOTS (1 << SITE_MARK_BITS)
BPF_HASH(sites, struct site_key, struct site, MAX_SITES);
BPF_PERCPU_ARRAY(counters, u64, NR_COUNTERS);
/* The traced tgids, a bit each: an array lookup, not a hash lookup, on
 * every allocation (TARGET_WORDS u64 words cover pid_max). A target's bit
 * is cleared when it exits (task_exit), so a pid used again later is not
 * traced, and target_count, how many bits are set, tells user space when
 * every target (children included) is gone. System-wide (EXCLUDE_SET) the
 * bits mark the processes *not* traced: kleaktrace itself and what it
 * forks, whose maps, buffers and page tables would top its own report. */
BPF_ARRAY(targets, u64, TARGET_WORDS);
BPF_ARRAY(target_count, s64, 1);

static __always_inline int is_target(u32 tgid)
{
	u32 word = tgid / 64;
	u64 *w = targets.lookup(&word);
	return w && (*w & (1ULL << (tgid % 64)));
}

/* Comms of the processes that exited while traced; the living ones' are
 * read from /proc when a report names them. */
BPF_HASH(exited_comms, u32, struct exited_comm, 16384);
/*
 * Per CPU: [IRQ_SOFT] inside a softirq handler, [IRQ_HARD] inside a hardirq
 * handler, kept by the irq_* raw programs below. The tracepoint record cannot
 * tell: while a perf-event BPF program runs, the record's common header holds
 * a pt_regs pointer, not common_flags. Flags, not a depth: softirqs do not
 * nest on a CPU and handlers run with interrupts off, and a flag set or
 * cleared twice heals itself where a counter would stay off by one for ever
 * (an entry seen without its exit when attaching mid-softirq).
 */
#define IRQ_SOFT 1
#define IRQ_HARD 2
BPF_PERCPU_ARRAY(irq_state, u32);

static __always_inline void count(u32 which)
{
	u64 *c = counters.lookup(&which);
	/* atomic: a raw-tracepoint free can interrupt an alloc probe on this CPU */
	if (c)
		__sync_fetch_and_add(c, 1);
}

/* For the per-event counters: an increment lost to an interrupt on this CPU
 * costs a statistic one count; a locked add on every event costs more. */
static __always_inline void count_hot(u32 which)
{
	u64 *c = counters.lookup(&which);
	if (c)
		*c += 1;
}

static __always_inline int failed_ptr(u64 addr)
{
	/* NULL and ERR_PTR() results (iovisor/bcc#3085) */
	return addr == 0 || addr >= (u64)-4095;
}

#ifdef TRACK_CGROUPS
/*
 * ---- cgroups ---------------------------------------------------------------
 * Each allocation records its task's cgroup in one hierarchy: the memory
 * controller's (v1, where it is mounted so, as on this project's host) or
 * the unified one (v2). A cgroup is named by its kernfs id, the inode number
 * of its folder in cgroupfs, so user space finds paths by listing folders;
 * cgroups made or removed while traced are named by their events
 * (cgroup_names). The v1 lookup follows four pointers, so it is kept per CPU
 * for the current task until any task migrates or exits (cgroup_gen): a
 * task's cgroup changes only by migrating.
 */
BPF_HASH(cgroup_names, u64, struct cgroup_name, 4096);
BPF_ARRAY(cgroup_gen, u64, 1);
BPF_PERCPU_ARRAY(cgroup_memo, struct cgroup_memo, 1);
#ifdef FILTER_CGROUPS
BPF_HASH(cgroup_filter, u64, u8, 4096);	/* --cgroup: those and their descendants */
#endif

static __always_inline u64 cgroup_id(u64 cgrp)
{
	return kread(kread(cgrp + CGROUP_KN_OFF) + KERNFS_ID_OFF);
}

static __always_inline u32 current_cgroup(void)
{
#ifdef CGROUP_V1_SUBSYS
	int zero = 0;
	u64 task = bpf_get_current_task();
	u64 *gen = cgroup_gen.lookup(&zero);
	struct cgroup_memo *m = cgroup_memo.lookup(&zero);
	if (!gen || !m)
		return 0;
	if (m->task == MANGLE(task) && m->gen == *gen)
		return m->id;
	u64 css = kread(kread(task + TASK_CGROUPS_OFF) + CSS_SET_SUBSYS_OFF + 8 * CGROUP_V1_SUBSYS);
	m->task = MANGLE(task);
	m->gen = *gen;
	m->id = cgroup_id(kread(css + CSS_CGROUP_OFF));
	return m->id;
#else
	return bpf_get_current_cgroup_id();
#endif
}

static __always_inline void cgroups_changed(void)
{
	int zero = 0;
	u64 *gen = cgroup_gen.lookup(&zero);
	if (gen)
		__sync_fetch_and_add(gen, 1);
}
#endif

/*
 * Decide whether the current allocation belongs to a target. Allocations
 * made in interrupt context run on behalf of nobody in particular, so with a
 * target filter they are not charged to whatever task they interrupted.
 */
static __always_inline int wanted(void *args)
{
#ifdef FILTER_TARGETS
	int zero = 0;
	u32 *irq = irq_state.lookup(&zero);
	if (irq && *irq) {
		count(CNT_IRQ_SKIPPED);
		return 0;
	}
	return is_target(bpf_get_current_pid_tgid() >> 32);
#elif defined(FILTER_CGROUPS)
	int zero = 0;
	u32 *irq = irq_state.lookup(&zero);
	if (irq && *irq) {
		count(CNT_IRQ_SKIPPED);
		return 0;
	}
	u64 id = current_cgroup();
	return cgroup_filter.lookup(&id) != NULL;
#elif defined(EXCLUDE_SET)
	return !is_target(bpf_get_current_pid_tgid() >> 32);
#else
	return 1;
#endif
}

static __always_inline int in_slots(u32 space)
{
	return space == SPACE_SLAB || space == SPACE_PAGE;
}

/*
 * The slot of an address. One slab page's objects get neighbouring slots
 * (a window of 256, one per 16 bytes of the page), so they share cache
 * lines and TLB entries: a plain hash spread them over the whole table and
 * the misses made probes half again as slow. Each page's window starts at
 * a hash of the page, so that windows, and objects of one size that sit at
 * the same offsets of their pages, still spread evenly over the table:
 * indexing by the low address bits alone filled a third of the table.
 */
static __always_inline u32 slot_window(u64 addr)
{
	return ((addr >> 12) * 0x9E3779B97F4A7C15ULL) >> (64 - SLOT_BITS);
}

static __always_inline struct slab_slot *slot_of(struct live_key *key)
{
	if (key->space == SPACE_PAGE) {
		u32 idx = (key->addr >> 6) & (PAGE_SLOT_COUNT - 1);	/* struct page: 64 bytes */
		return page_slots.lookup(&idx);
	}
	u32 idx = (slot_window(key->addr) + ((key->addr >> 4) & 255)) & (SLOT_COUNT - 1);
	return slots.lookup(&idx);
}

/* ``key`` as the live hash keeps it: its address mangled */
static __always_inline struct live_key hash_key(struct live_key *key)
{
	struct live_key k = {.addr = MANGLE(key->addr), .space = key->space};
	return k;
}

/* Delete ``key`` from the hash, where its slot said it may be. */
static __always_inline int unspill(struct slab_slot *slot, struct live_key *key)
{
	struct live_key k = hash_key(key);
	if (!slot->spilled || live.delete(&k) != 0)
		return 0;
	__sync_fetch_and_add(&slot->spilled, -1);
	return 1;
}

/* Delete a record of ``key`` wherever it is; 1 when there was one. */
static __always_inline int drop_record(struct live_key *key)
{
	if (key->addr <= SLOT_BUSY)
		return 0;	/* kfree(NULL) fires the event too, and 0 marks a free slot */
	if (in_slots(key->space)) {
		struct slab_slot *slot = slot_of(key);
		if (!slot)
			return 0;
		if (slot->addr == key->addr &&
		    __sync_val_compare_and_swap(&slot->addr, key->addr, 0) == key->addr)
			return 1;
		return unspill(slot, key);
	}
	struct live_key k = hash_key(key);
	return live.delete(&k) == 0;
}

/*
 * An untraced allocation at an address we still hold means its free was never
 * seen (a skipped or bulk free): retire the stale record now.
 */
static __always_inline void retire_reused(struct live_key *key)
{
	if (drop_record(key))
		count(CNT_MISSED_FREES);
}

#ifdef SAMPLE_BYTES
/*
 * --sample-bytes: an allocation of ``size`` bytes is kept with probability
 * min(1, size / SAMPLE_BYTES), as heap profilers sample; user space weighs
 * each kept one by the inverse (tracer/reader.py), so objects and bytes are
 * unbiased estimates. One not kept does not look for a stale record at its
 * address (the slot's cache miss was half of an allocation's cost): few are
 * kept, and a freed slab page or the census retires what a missed free left.
 */
#define KEEP(size) ({ u64 _s = (size); _s >= SAMPLE_BYTES || bpf_get_prandom_u32() % SAMPLE_BYTES < _s; })
/* a slab object is at most two pages (KMALLOC_MAX_CACHE_SIZE): a draw above
 * that keeps none, and its ``size`` (a read, for kmem_cache objects) is
 * looked at only when the draw may keep it */
#define KEEP_SLAB(size) ({ u32 _d = bpf_get_prandom_u32() % SAMPLE_BYTES; u64 _s = 0; \
	_d < 2 * PAGE_BYTES && ((_s = (size)) >= SAMPLE_BYTES || _d < _s); })
#else
#define KEEP(size) 1
#define KEEP_SLAB(size) 1
#endif

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

/*
 * What is known of a call site, for the hot path: `site_marks`, an array
 * indexed by a hash of the site (layout.h: site_hash), holds that hash's tag
 * and a SITE_MARK_* state, so a known site costs no hash lookup. A site
 * whose slot holds another's tag uses `sites` itself.
 */
BPF_ARRAY(site_marks, u64, SITE_MARK_SLOTS);	/* u64: BPF's cmpxchg before v3 */

static __always_inline u64 *site_mark(u64 h)
{
	u32 idx = h >> (64 - SITE_MARK_BITS);
	return site_marks.lookup(&idx);
}

static __always_inline u64 site_tag(u64 h)
{
	return h & ~(u64)SITE_MARK_STATE;
}

/*
 * A stack id for the current stack, ``skip`` frames left out. Without
 * BPF_F_REUSE_STACKID (which would give an old object's id to another
 * stack), get_stackid fails with -EEXIST when another stack holds the hash
 * bucket, and with -ENOMEM when every entry is taken, which needs more
 * buckets than entries: the kernel gives a table the next power of two of
 * buckets (kernel/bpf/stackmap.c), so with a power of two of entries (the
 * default) only collisions lose stacks. A collision is retried once with one more frame
 * skipped: another hash, another bucket. The frame lost is the innermost,
 * a tracing or allocator frame the report trims anyway; reference stacks,
 * which must start at the traced function, are not retried.
 */
static __always_inline s32 stack_of(void *ctx, u32 skip, int retry)
{
	s32 id = stacks.get_stackid(ctx, skip & BPF_F_SKIP_FIELD_MASK);
	if (id == -EEXIST_)
		count(CNT_STACK_COLLISIONS);
	if (id == -EEXIST_ && retry) {
		id = stacks.get_stackid(ctx, (skip + 1) & BPF_F_SKIP_FIELD_MASK);
	}
	if (id == -ENOMEM_)
		count(CNT_STACK_FULL);
	if (id < 0)
		count(CNT_STACK_ERRORS);
	return id;
}

/*
 * The stack of an allocation at call site ``sk`` (NULL: no usable call site,
 * always its own stack). A site's first allocation takes a stack and leaves
 * it in `sites` as the site's representative; later ones are STACK_SITE
 * (user space finds that stack by their call site) unless user space has
 * promoted the site. ``s`` is the struct kmem_cache of slab objects, whose
 * name the site keeps.
 */
static __always_inline void take_stack(void *ctx, struct site_key *sk, u64 s,
				       struct live_obj *obj)
{
	struct site *site = NULL;
	u64 *mark = NULL;
	u64 tag = 0;

	if (sk) {
		u64 h = site_hash(sk->call_site, sk->cache, sk->kind, sk->syscall);
		mark = site_mark(h);
		tag = site_tag(h);
		u64 m = mark ? *mark : 0;
		if (m && (m & ~SITE_MARK_STATE) == tag) {
#ifdef STACKS_AT_SITES
			if ((m & SITE_MARK_STATE) == SITE_MARK_SEEN) {
				obj->stack_id = -1;
				obj->stack_how = STACK_SITE;
				return;
			}
#endif
			sk = NULL;	/* known, and promoted: nothing to keep */
		} else {
			site = sites.lookup(sk);
#ifdef STACKS_AT_SITES
			if (site && !site->promoted && site->stack_id >= 0) {
				obj->stack_id = -1;
				obj->stack_how = STACK_SITE;
				return;
			}
#endif
		}
	}
	obj->stack_id = stack_of(ctx, 0, 1);
	obj->stack_how = STACK_OWN;
	if (obj->stack_id >= 0)
		count_hot(CNT_OWN_STACKS);
	if (!sk)
		return;
	if (site) {
		if (site->stack_id < 0)
			site->stack_id = obj->stack_id;	/* the first one was lost */
		return;
	}
	if (obj->stack_id < 0)
		return;	/* no representative yet: the next allocation tries again */
	struct site fresh = {.stack_id = obj->stack_id};
#ifdef KMEM_CACHE_NAME_OFF
	if (s) {
		bpf_probe_read_kernel(&fresh.bytes, sizeof(u32), (void *)(s + KMEM_CACHE_SIZE_OFF));
		u64 name = 0;
		bpf_probe_read_kernel(&name, sizeof(name), (void *)(s + KMEM_CACHE_NAME_OFF));
		if (name)
			bpf_probe_read_kernel_str(fresh.cache, sizeof(fresh.cache), (void *)name);
	}
#endif
	/* a full map only costs later allocations here their stacks */
	if (sites.insert(sk, &fresh) == 0 && mark)
		__sync_val_compare_and_swap(mark, 0, tag | SITE_MARK_SEEN);
}

/*
 * Keep an object in its slot; 0 when another object holds the slot. The
 * slot is claimed as SLOT_BUSY and gets its address only once the record is
 * written, so a reader never sees an address with a previous object's record.
 */
static __always_inline int store_slot(struct slab_slot *slot, struct live_key *key,
				      struct live_obj *obj)
{
	u64 old = __sync_val_compare_and_swap(&slot->addr, 0, SLOT_BUSY);
	if (old == key->addr) {
		count(CNT_MISSED_FREES);	/* still held: its free was not seen */
	} else if (old != 0) {
		return 0;
	} else if (unspill(slot, key)) {
		count(CNT_MISSED_FREES);	/* a stale record of it had spilled */
	}
	__builtin_memcpy(&slot->obj, obj, sizeof(*obj));
	asm volatile("" ::: "memory");	/* the record before the address (x86 keeps store order) */
	slot->addr = key->addr;
	return 1;
}

/*
 * The current task's system call number (pt_regs->orig_ax; in interrupt
 * context the interrupted task's). Two helper calls and a read: a few tens
 * of nanoseconds, against 1.6 us for a stack (bench/overhead.py).
 */
static __always_inline u32 current_syscall(void)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	u64 nr = -1;
	bpf_probe_read_kernel(&nr, sizeof(nr), &regs->orig_ax);
	return nr;
}

#ifdef PAGE_RETIRE
/*
 * page_marks, a bit per page frame (modulo PAGE_MARKS): a slab object was
 * recorded in that page since it was last scanned, so a page free without
 * its mark costs no scan. A bit each, not a byte (array elements take 8
 * bytes: a byte each took 128 MiB for this host's 24 GiB); set and cleared
 * without atomics (BCC's BPF has no atomic OR here): a race loses a mark,
 * which only leaves that page's objects to reuse or the census.
 */
BPF_ARRAY(page_marks, u64, PAGE_MARKS / 64);
BPF_ARRAY(page_calib, struct page_calib, 1);
BPF_PERCPU_ARRAY(last_page, struct last_page, 1);

static __always_inline void mark_page(u64 addr)
{
	u32 i = ((addr >> 12) & (PAGE_MARKS - 1)) / 64;
	u64 bit = 1ULL << ((addr >> 12) & 63), *w = page_marks.lookup(&i);
	if (w && !(*w & bit))
		*w |= bit;
}
#endif

static __always_inline void record(void *ctx, struct live_key *key, struct live_obj *obj,
				   struct site_key *sk, u64 s)
{
	obj->ts_ns = bpf_ktime_get_ns();
	obj->tgid = bpf_get_current_pid_tgid() >> 32;
	if (sk)
		obj->syscall = sk->syscall = current_syscall();
#ifdef TRACK_CGROUPS
	obj->cgroup = current_cgroup();
#endif
	take_stack(ctx, sk, s, obj);
#ifdef PAGE_RETIRE
	if (key->space == SPACE_SLAB)
		mark_page(key->addr);
#endif

	struct slab_slot *slot = NULL;
	if (in_slots(key->space)) {
		slot = slot_of(key);
		if (!slot)
			return;
		if (store_slot(slot, key, obj)) {
			count_hot(CNT_ALLOCS);
			return;
		}
		__sync_fetch_and_add(&slot->spilled, 1);	/* before the insert: frees look at it */
	}
	struct live_key k = hash_key(key);
	int ret = live.insert(&k, obj);
	if (ret == -EEXIST_) {
		count(CNT_MISSED_FREES);
		live.update(&k, obj);
		if (slot)
			__sync_fetch_and_add(&slot->spilled, -1);	/* replaced, not added */
	} else if (ret != 0) {
		count(CNT_DROPPED);
		if (slot)
			__sync_fetch_and_add(&slot->spilled, -1);
		return;
	}
	count_hot(CNT_ALLOCS);
}

static __always_inline int forget(u32 space, u64 addr)
{
	struct live_key key = {.addr = addr, .space = space};
	if (drop_record(&key)) {
		count_hot(CNT_FREES);
		return 1;
	}
	return 0;
}

#ifdef TRACK_ALLOCS	/* --kinds refs compiles none of the allocation probes */
#ifdef PAGE_RETIRE
/*
 * ---- slab pages going back to the page allocator (layout.h: page_calib) ------
 * The struct page -> address offset is learned from large kmallocs: a
 * kmalloc above KMALLOC_MAX_CACHE takes its pages straight from the page
 * allocator, whose event fired just before in the same task; two such pairs
 * that agree fix the offset (an interrupt's page allocation in between gives
 * a pair that does not).
 */
static __always_inline void note_page(u64 page)
{
	int zero = 0;
	struct page_calib *c = page_calib.lookup(&zero);
	struct last_page *l = last_page.lookup(&zero);
	if (c && l && !c->ready) {
		l->task = bpf_get_current_pid_tgid();
		l->page = MANGLE(page);
	}
}

static __always_inline void calibrate(u64 va)
{
	int zero = 0;
	struct page_calib *c = page_calib.lookup(&zero);
	struct last_page *l = last_page.lookup(&zero);
	if (!c || !l || c->ready || !l->page || l->task != bpf_get_current_pid_tgid())
		return;
	u64 offset = va - MANGLE(l->page) * PAGE_RATIO;
	l->page = 0;
	if (c->candidate == offset) {
		c->offset = offset;
		c->ready = 1;
	} else {
		c->candidate = offset;
	}
}

/*
 * Retire every object recorded in the 4 KiB at ``base``: they sit in the
 * window of 256 slots slot_of() gives that page, the object at offset o in
 * slot window + o / 16; one that spilled to the hash is at base + 16k or,
 * for 8-byte objects, base + 16k + 8. Only a page whose mark says a slab
 * object was recorded in it is visited.
 */
static __always_inline void retire_window(u64 base)
{
	u32 i = ((base >> 12) & (PAGE_MARKS - 1)) / 64;
	u64 bit = 1ULL << ((base >> 12) & 63), *w = page_marks.lookup(&i);
	if (!w || !(*w & bit))
		return;
	*w &= ~bit;

	struct live_key key = {.space = SPACE_SLAB};
	u32 window = slot_window(base);
	for (u32 k = 0; k < 256; k++) {
		u32 idx = (window + k) & (SLOT_COUNT - 1);
		struct slab_slot *slot = slots.lookup(&idx);
		if (!slot)
			continue;
		u64 a = slot->addr;
		if (a > SLOT_BUSY && (a >> 12) == (base >> 12) &&
		    __sync_val_compare_and_swap(&slot->addr, a, 0) == a)
			count(CNT_FREED_WITH_SLAB);
		if (slot->spilled) {
			key.addr = base + 16 * k;
			if (unspill(slot, &key))
				count(CNT_FREED_WITH_SLAB);
			key.addr += 8;
			if (unspill(slot, &key))
				count(CNT_FREED_WITH_SLAB);
		}
	}
}

/*
 * A page of 2^order pages was freed: retire what was recorded in it (slab
 * pages are at most order 3, SLUB's slub_max_order). Each 4 KiB is a loop of
 * 256 slots, and the verifier follows at most 8192 jumps in one program: the
 * first 4 KiB are done here, each further one by retire_pages, a tail call
 * (retire_next[0]) that carries on from retire_at.
 */
BPF_PROG_ARRAY(retire_next, 1);
BPF_PERCPU_ARRAY(retire_at, struct retire_state, 1);

static __always_inline void retire_page(void *ctx, u64 page, u32 order)
{
	int zero = 0;
	struct page_calib *c = page_calib.lookup(&zero);
	if (!c || !c->ready || order > 3)
		return;
	u64 va = page * PAGE_RATIO + c->offset;
	retire_window(va);
	struct retire_state *st = retire_at.lookup(&zero);
	if (order && st) {
		st->va = MANGLE(va);
		st->next = 1;
		st->n = 1u << order;
		retire_next.call(ctx, 0);
	}
}

int retire_pages(struct bpf_raw_tracepoint_args *ctx)
{
	int zero = 0;
	struct retire_state *st = retire_at.lookup(&zero);
	if (!st || st->next >= st->n || st->next >= 8)
		return 0;
	u64 sub = MANGLE(st->va) + ((u64)st->next << 12);
	st->next++;
	retire_window(sub);
	if (st->next < st->n)
		retire_next.call(ctx, 0);
	return 0;
}
#endif

#ifdef SLAB_CENSUS
/*
 * ---- the slab census (layout.h; tracer/census.py drives it) ------------------
 * Objects whose free no event showed (bulk frees, kfree_rcu batches, sheaves)
 * are free in the slab allocator's own books: on a slab's freelist, a CPU's
 * freelist, a per-CPU sheaf or a sheaf in a barn. These programs run on
 * demand (BPF_PROG_TEST_RUN) and retire each recorded object they find
 * there. They only read kernel memory; a slab whose kmem_cache is not one
 * user space found in the kernel's cache list is left alone, and a freelist
 * walk stops at the first pointer outside its slab or off an object's start.
 */
BPF_F_TABLE("array", u32, struct peek_buf, peek_buf, 1, BPF_F_MMAPABLE);
BPF_ARRAY(cpu_offsets, u64, CENSUS_CPUS);	/* __per_cpu_offset[cpu], learned */
BPF_ARRAY(cpu_bases, u64, CENSUS_CPUS);	/* where a CPU's per-CPU area starts (BTF offsets add to it) */
BPF_HASH(census_known, u64, u8, 4096);		/* the kernel's struct kmem_cache pointers */
BPF_HASH(census_seen, u64, u8, 4096);		/* caches whose slabs held recorded objects */
BPF_ARRAY(census_lists, struct census_list, 2);	/* enum census_list_kind */

/* args: address, length: copies that much kernel memory into peek_buf */
int census_peek(struct bpf_raw_tracepoint_args *ctx)
{
	u32 n = ((u32)ctx->args[1] - 1) & (PEEK_BYTES - 1);	/* 1..PEEK_BYTES, as the verifier wants it */
	int zero = 0;
	struct peek_buf *b = peek_buf.lookup(&zero);
	if (!b)
		return 1;
	return bpf_probe_read_kernel(b->data, n + 1, (void *)ctx->args[0]) ? 2 : 0;
}

/*
 * Run on each CPU: learn its per-CPU offset, the distance from a per-CPU
 * pointer to this CPU's copy. current->se.cfs_rq->rq is this CPU's struct
 * rq, the per-CPU variable runqueues: its address less runqueues' offset in
 * the per-CPU section (BTF) is the section's start plus this CPU's offset
 * (the start is 0 where per-CPU pointers are zero-based, the section's link
 * address where they are not, as on x86-64 from 6.15); this_cpu_off, at its
 * own offset from there, holds the CPU's offset itself.
 */
int census_cpu(struct bpf_raw_tracepoint_args *ctx)
{
	u64 cfs_rq = kread(bpf_get_current_task() + TASK_CFS_RQ_OFF);
	u64 here = kread(cfs_rq + CFS_RQ_RQ_OFF) - PCPU_RUNQUEUES;
	u64 off = kread(here + PCPU_THIS_CPU_OFF);
	if (!off && !here)
		return 1;
	u32 cpu = bpf_get_smp_processor_id();
	u64 *slot = cpu_offsets.lookup(&cpu);
	u64 *base = cpu_bases.lookup(&cpu);
	if (!slot || !base)
		return 2;
	*slot = off;
	*base = here;
	return 0;
}

/* args: address, space: a recorded object the kernel holds for reuse (fork's
 * cached stacks, tracer/census.py) is retired like one found free */
int census_drop(struct bpf_raw_tracepoint_args *ctx)
{
	struct live_key key = {.addr = ctx->args[0], .space = (u32)ctx->args[1]};
	if (!drop_record(&key))
		return 1;
	count(CNT_FOUND_FREE);
	return 0;
}

static __always_inline void found_free(u64 addr)
{
	scan_mark_free(addr);	/* the holder scan asks whether a holder is free */
	struct live_key key = {.addr = addr, .space = SPACE_SLAB};
	if (drop_record(&key))
		count(CNT_FOUND_FREE);
}

/* The objects of a freelist from ``p`` in the slab [base, end) of a cache
 * with object ``size``, ``pad`` bytes of left red zone, the next pointer at
 * ``off`` (CONFIG_SLAB_FREELIST_HARDENED: XORed with s->random and the
 * byte-swapped address it is stored at, mm/slub.c freelist_ptr_decode). */
static __always_inline void walk_freelist(u64 p, u64 s, u64 base, u64 end)
{
	u64 size = kread32(s + KMEM_CACHE_SIZE_OFF);
	u64 off = kread32(s + KMEM_CACHE_OFFSET_OFF);
	u64 pad = kread32(s + KMEM_CACHE_RED_LEFT_PAD_OFF);
#ifdef KMEM_CACHE_RANDOM_OFF
	u64 random = kread(s + KMEM_CACHE_RANDOM_OFF);
#endif
	if (!size)
		return;
	for (int i = 0; i < CENSUS_FREELIST_MAX; i++) {
		if (p < base || p >= end || (p - base) % size != pad)
			return;
		found_free(p);
		u64 at = p + off;
		p = kread(at);
#ifdef KMEM_CACHE_RANDOM_OFF
		p ^= random ^ __builtin_bswap64(at);
#endif
	}
}

/* The address range of slab ``slab`` (a struct slab/page, a head page) of cache ``s`` */
static __always_inline int slab_range(u64 slab, u64 s, u64 *base, u64 *end)
{
	int zero = 0;
	struct page_calib *c = page_calib.lookup(&zero);
	if (!c || !c->ready)
		return 0;
	u64 counters = kread(slab + SLAB_COUNTERS_OFF);
	u64 objects = (counters >> 16) & 0x7fff;	/* struct slab: inuse:16, objects:15, frozen:1 */
	*base = slab * PAGE_RATIO + c->offset;
	*end = *base + objects * kread32(s + KMEM_CACHE_SIZE_OFF);
	return 1;
}

/*
 * The head page of ``page``. A tail page's compound_head (7.x: compound_info)
 * has bit 0 set and the rest points at the head; on 7.x with HugeTLB vmemmap
 * optimisation the rest is instead a mask (ones, then zeros) that the tail's
 * own address is ANDed with. A mask is never a struct page's address. The
 * same in Python: tracer/census.py page_head.
 */
static __always_inline u64 page_head(u64 page)
{
	u64 info = kread(page + PAGE_COMPOUND_HEAD_OFF);
	if (!(info & 1))
		return page;
	u64 m = info - 1, inv = ~m;
	return (inv & (inv + 1)) == 0 ? (page & m) : m;
}

/* args: a struct page in a slab: its slab's freelist */
int census_slab(struct bpf_raw_tracepoint_args *ctx)
{
	u64 page = page_head(ctx->args[0]), base, end;
	u64 s = kread(page + SLAB_CACHE_OFF);
	if (!census_known.lookup(&s))
		return 1;	/* not a slab (any more), or a cache we do not know */
	u8 one = 1;
	census_seen.update(&s, &one);
	if (!slab_range(page, s, &base, &end))
		return 2;
	walk_freelist(kread(page + SLAB_FREELIST_OFF), s, base, end);
	return 0;
}

static __always_inline struct census_list *census_list(u32 kind)
{
	struct census_list *l = census_lists.lookup(&kind);
	if (l)
		l->n = 0;
	return l;
}

/* args: kmem_cache, a CPU's per-CPU offset: that CPU's freelist; its partial
 * slabs into census_lists[CENSUS_SLABS], its sheaves into [CENSUS_SHEAVES] */
int census_cpu_cache(struct bpf_raw_tracepoint_args *ctx)
{
	u64 s = ctx->args[0], off = ctx->args[1], base, end;
	struct census_list *slabs = census_list(CENSUS_SLABS), *sheaves = census_list(CENSUS_SHEAVES);
	if (!census_known.lookup(&s) || !slabs || !sheaves)
		return 1;
#ifdef KMEM_CACHE_CPU_SLAB_OFF
	u64 c = kread(s + KMEM_CACHE_CPU_SLAB_OFF) + off;
	u64 slab = kread(c + CPU_SLAB_SLAB_OFF);
	if (slab && slab_range(slab, s, &base, &end))
		walk_freelist(kread(c + CPU_SLAB_FREELIST_OFF), s, base, end);
	u64 p = kread(c + CPU_SLAB_PARTIAL_OFF);
	for (int i = 0; i < CENSUS_LIST_MAX; i++) {
		if (!p)
			break;
		slabs->items[i] = p;
		slabs->n = i + 1;
		p = kread(p + SLAB_NEXT_OFF);
	}
#endif
#ifdef KMEM_CACHE_CPU_SHEAVES_OFF
	u64 pcs = kread(s + KMEM_CACHE_CPU_SHEAVES_OFF) + off;
	sheaves->items[0] = kread(pcs + SHEAVES_MAIN_OFF);
	sheaves->items[1] = kread(pcs + SHEAVES_SPARE_OFF);
	sheaves->items[2] = kread(pcs + SHEAVES_RCU_FREE_OFF);
	sheaves->n = 3;
#endif
	return 0;
}

#ifdef KMEM_CACHE_CPU_SHEAVES_OFF
/* args: kmem_cache, NUMA node: the full sheaves of the node's barn into
 * census_lists[CENSUS_SHEAVES] */
int census_barn(struct bpf_raw_tracepoint_args *ctx)
{
	u64 s = ctx->args[0];
	struct census_list *sheaves = census_list(CENSUS_SHEAVES);
	if (!census_known.lookup(&s) || !sheaves)
		return 1;
	u64 n = ctx->args[1] & 1023;
#ifdef KMEM_CACHE_PER_NODE_OFF	/* 7.x: s->per_node[n].barn; the struct is these two pointers */
	u64 stride = (PER_NODE_BARN_OFF > PER_NODE_NODE_OFF ? PER_NODE_BARN_OFF : PER_NODE_NODE_OFF) + 8;
	u64 barn = kread(s + KMEM_CACHE_PER_NODE_OFF + stride * n + PER_NODE_BARN_OFF);
#else			/* 6.18: s->node[n]->barn */
	u64 node = kread(s + KMEM_CACHE_NODE_OFF + 8 * n);
	u64 barn = node ? kread(node + KMEM_CACHE_NODE_BARN_OFF) : 0;
#endif
	if (!barn)
		return 2;
	u64 head = barn + BARN_FULL_OFF, at = kread(head);
	for (int i = 0; i < CENSUS_LIST_MAX; i++) {
		if (!at || at == head)
			break;
		sheaves->items[i] = at - SHEAF_LIST_OFF;
		sheaves->n = i + 1;
		at = kread(at);
	}
	return 0;
}

/* args: a sheaf: every object it holds is free */
int census_sheaf(struct bpf_raw_tracepoint_args *ctx)
{
	u64 sheaf = ctx->args[0];
	if (!sheaf)
		return 1;
	u32 size = kread32(sheaf + SHEAF_SIZE_OFF);
	for (int i = 0; i < CENSUS_SHEAF_MAX; i++) {
		if (i >= size)
			break;
		u64 obj = kread(sheaf + SHEAF_OBJECTS_OFF + 8 * i);
		if (obj)
			found_free(obj);
	}
	return 0;
}
#endif
#endif /* SLAB_CENSUS */

#if defined(PIN_CENSUS) || defined(HOLDER_SCAN)
/* The iterators' contexts (the kernel's bpf_iter__<target>; the verifier
 * checks accesses against its BTF, so only the layout matters here) */
struct pins_iter_meta {
	union { struct seq_file *seq; };
	u64 session_id;
	u64 seq_num;
};
struct pins_iter_task {
	union { struct pins_iter_meta *meta; };
	union { void *task; };
};
struct pins_iter_task_file {
	union { struct pins_iter_meta *meta; };
	union { void *task; };
	u32 fd;
	union { void *file; };
};
struct pins_iter_task_vma {
	union { struct pins_iter_meta *meta; };
	union { void *task; };
	union { void *vma; };
};

#endif

#ifdef PIN_CENSUS
/*
 * ---- the reference census (layout.h; tracer/pins.py drives it) ---------------
 * A dentry's reference count is d_lockref.count: 0 cached, reclaimable; >= 1
 * held by something. pins_read reads the counts of the dentries the tracer
 * holds records of; the iterators below list what the kernel can say holds
 * them without kprobes: every struct file (fd tables, mappings, exe_file,
 * one reference each), every fs_struct (its pwd and root) and the mount
 * namespaces (tracer/pins.py walks their mounts with census_peek).
 */
BPF_F_TABLE("array", u32, u64, pin_in, PIN_BATCH, BPF_F_MMAPABLE);
BPF_F_TABLE("array", u32, struct pin_dentry, pin_out, PIN_BATCH, BPF_F_MMAPABLE);
BPF_ARRAY(pin_walk, struct pin_children, 1);

/* The allocation time of the record of slab object ``addr``; 0: none. */
static __always_inline u64 record_ts(u64 addr)
{
	struct live_key key = {.addr = addr, .space = SPACE_SLAB};
	struct slab_slot *slot = slot_of(&key);
	if (!slot)
		return 0;
	if (slot->addr == addr)
		return slot->obj.ts_ns;
	if (!slot->spilled)
		return 0;
	struct live_key k = hash_key(&key);
	struct live_obj *obj = live.lookup(&k);
	return obj ? obj->ts_ns : 0;
}

/*
 * Read pin_in[at] into pin_out[at]. A dentry is read only while the tracer
 * holds its record, checked before and after the reads: a free between
 * them (its event drops the record before the memory is reused; dentries
 * go back to the slab after an RCU grace period, and this program runs
 * inside one) or a new object at the address (a new record, another
 * allocation time) marks the entry PIN_GONE.
 */
static __always_inline void pin_read_one(u32 at)
{
	u64 *addr = pin_in.lookup(&at);
	struct pin_dentry *out = pin_out.lookup(&at);
	if (!addr || !out)
		return;
	u64 d = *addr, born = record_ts(d);
	out->state = PIN_GONE;
	if (!born)
		return;
	out->count = (s32)kread32(d + PIN_COUNT_OFF);
	out->flags = kread32(d + PIN_FLAGS_OFF);
	out->parent = kread(d + PIN_PARENT_OFF);
	out->sb = kread(d + PIN_SB_OFF);
	out->inode = kread(d + PIN_INODE_OFF);
	bpf_probe_read_kernel_str(out->name, PIN_NAME_LEN, (void *)kread(d + PIN_NAME_OFF));
	if (record_ts(d) == born)
		out->state = PIN_READ;
}

/*
 * One dentry a program, the next through a tail call (pins_next[0] is
 * pins_read_next): a loop over even 8 was more than the verifier follows
 * (each read forks its paths: record in a slot, in the hash, none), and
 * BCC cannot pass bpf_loop a callback. 33 tail calls at most: PIN_RUN.
 */
BPF_PROG_ARRAY(pins_next, 1);
BPF_PERCPU_ARRAY(pin_at, struct pin_run, 1);

int pins_read_next(struct bpf_raw_tracepoint_args *ctx)
{
	int zero = 0;
	struct pin_run *run = pin_at.lookup(&zero);
	if (!run || run->at >= run->end || run->at >= PIN_BATCH)
		return 0;
	pin_read_one(run->at);
	run->at++;
	pins_next.call(ctx, 0);
	return 0;
}

/* args: from, n: read pin_in[from..from+n) into pin_out (n <= PIN_RUN) */
int pins_read(struct bpf_raw_tracepoint_args *ctx)
{
	int zero = 0;
	struct pin_run *run = pin_at.lookup(&zero);
	if (!run)
		return 1;
	run->at = ctx->args[0];
	run->end = ctx->args[0] + ctx->args[1];
	pins_next.call(ctx, 0);
	return 2;	/* the tail call failed */
}

/*
 * args: dentry, from: count the dentry's children (each holds a reference
 * on its parent: d_alloc) from ``from`` (0: the first), at most
 * PIN_CHILDREN_MAX, into pin_walk. 6.1 links them in a list_head
 * (d_subdirs/d_child, circular), 6.8+ in an hlist (d_children/d_sib).
 */
int pins_children(struct bpf_raw_tracepoint_args *ctx)
{
	u64 head = ctx->args[0] + PIN_CHILDREN_OFF;
	u64 node = ctx->args[1] ? ctx->args[1] : kread(head);
	u64 n = 0;
	int zero = 0;
	struct pin_children *out = pin_walk.lookup(&zero);
	if (!out)
		return 1;
#pragma clang loop unroll(disable)
	for (u32 i = 0; i < PIN_CHILDREN_MAX; i++) {
		if (!node || node == head)
			break;
		n++;
		node = kread(node);
	}
	out->count = n;
	out->next = node == head ? 0 : node;
	return 0;
}

static __always_inline void pin_path(struct seq_file *seq, u64 holder, u64 path, u32 kind, u64 task)
{
	struct pin_holder h = {.holder = holder, .kind = kind};
	h.dentry = kread(path + PIN_PATH_DENTRY_OFF);
	h.mnt = kread(path + PIN_PATH_MNT_OFF);
	h.tgid = kread32(task + TASK_TGID_OFF);
	bpf_seq_write(seq, &h, sizeof(h));
}

/* every open file of every process (threads sharing a table are skipped) */
int bpf_iter__task_file(struct pins_iter_task_file *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	u64 file = (u64)ctx->file, task = (u64)ctx->task;
	if (file && task)
		pin_path(seq, file, file + PIN_FILE_PATH_OFF, PIN_FILE, task);
	return 0;
}

/* every mapped file of every process */
int bpf_iter__task_vma(struct pins_iter_task_vma *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	u64 vma = (u64)ctx->vma, task = (u64)ctx->task;
	if (!vma || !task)
		return 0;
	u64 file = kread(vma + PIN_VMA_FILE_OFF);
	if (file)
		pin_path(seq, file, file + PIN_FILE_PATH_OFF, PIN_FILE, task);
	return 0;
}

#endif /* PIN_CENSUS */

#if defined(PIN_CENSUS) || defined(HOLDER_SCAN)
/* every task's fs_struct (pwd, root), executable and mount namespace (the
 * reference census), and its kernel stack (the holder scan names it) */
int bpf_iter__task(struct pins_iter_task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	u64 task = (u64)ctx->task;
	if (!task)
		return 0;
#ifdef HOLDER_SCAN
	struct pin_holder st = {.holder = kread(task + TASK_STACK_OFF), .dentry = task, .kind = PIN_STACK,
				.tgid = kread32(task + TASK_TGID_OFF)};
	bpf_seq_write(seq, &st, sizeof(st));
#endif
#ifdef PIN_CENSUS
	u64 fs = kread(task + PIN_TASK_FS_OFF);
	if (fs) {
		pin_path(seq, fs, fs + PIN_FS_PWD_OFF, PIN_PWD, task);
		pin_path(seq, fs, fs + PIN_FS_ROOT_OFF, PIN_ROOT, task);
	}
	u64 mm = kread(task + PIN_TASK_MM_OFF);
	u64 exe = mm ? kread(mm + PIN_MM_EXE_OFF) : 0;
	if (exe)
		pin_path(seq, exe, exe + PIN_FILE_PATH_OFF, PIN_FILE, task);
	u64 nsproxy = kread(task + PIN_TASK_NSPROXY_OFF);
	u64 ns = nsproxy ? kread(nsproxy + PIN_NSPROXY_MNT_NS_OFF) : 0;
	if (ns) {
		struct pin_holder h = {.holder = ns, .kind = PIN_MNT_NS};
		bpf_seq_write(seq, &h, sizeof(h));
	}
#endif
	return 0;
}
#endif

/* ---- slab: kmalloc and kmem_cache_alloc --------------------------------------- */

int alloc_kmalloc(struct bpf_raw_tracepoint_args *ctx)
{
	struct live_key key = {.addr = ARG(kmalloc, ptr), .space = SPACE_SLAB};
#ifdef PAGE_RETIRE
	if (ARG(kmalloc, bytes_alloc) > KMALLOC_MAX_CACHE && !failed_ptr(key.addr))
		calibrate(key.addr);	/* a large kmalloc: its pages were allocated just before */
#endif
	if (!admit(ctx, &key, failed_ptr(key.addr)) || !KEEP(ARG(kmalloc, bytes_alloc)))
		return 0;
	struct live_obj obj = {.kind = KIND_KMALLOC};
	obj.bytes = ARG(kmalloc, bytes_alloc);
	obj.call_site = ARG(kmalloc, call_site);
	struct site_key sk = {.call_site = obj.call_site, .kind = KIND_KMALLOC};
	record(ctx, &key, &obj, &sk, 0);
	return 0;
}

#ifdef VMAP_ALLOC_START_0
/*
 * vmalloc keeps its areas' descriptions in slab objects (struct vmap_area,
 * allocated in alloc_vmap_area(), one for the area and one preloaded to
 * split free space): the allocator's bookkeeping, kept after the area is
 * freed (purged lazily, or describing free space). The area itself is
 * counted, as kind vmalloc; its descriptions are not recorded, as the pages
 * that back slab objects are not (README: What is traced). They are told by
 * their call site, inside alloc_vmap_area (VMAP_ALLOC_{START,END}_n, kallsyms).
 */
static __always_inline int from_alloc_vmap_area(u64 ip)
{
	if (ip >= VMAP_ALLOC_START_0 && ip < VMAP_ALLOC_END_0)
		return 1;
#ifdef VMAP_ALLOC_START_1
	if (ip >= VMAP_ALLOC_START_1 && ip < VMAP_ALLOC_END_1)
		return 1;
#endif
	return 0;
}
#endif

int alloc_kmem_cache(struct bpf_raw_tracepoint_args *ctx)
{
	struct live_key key = {.addr = ARG(kmem_cache_alloc, ptr), .space = SPACE_SLAB};
#ifdef VMAP_ALLOC_START_0
	if (from_alloc_vmap_area(ARG(kmem_cache_alloc, call_site))) {
		retire_reused(&key);
		return 0;
	}
#endif
	if (!admit(ctx, &key, failed_ptr(key.addr)))
		return 0;
#ifdef ARG_kmem_cache_alloc_s
	/* the cache's object size costs a read: only when the draw may keep it */
	if (!KEEP_SLAB(kread32(ARG(kmem_cache_alloc, s) + KMEM_CACHE_SIZE_OFF)))
#else
	if (!KEEP_SLAB(ARG(kmem_cache_alloc, bytes_alloc)))
#endif
		return 0;
	struct live_obj obj = {.kind = KIND_SLAB};
	obj.call_site = ARG(kmem_cache_alloc, call_site);
#ifdef ARG_kmem_cache_alloc_s
	/* 6.1+: the cache itself. Its object size (what bytes_alloc reported)
	 * is read once per call site, into `sites`: user space fills it in. */
	u64 s = ARG(kmem_cache_alloc, s);
	obj.cache = s;
#else
	u64 s = 0;
	obj.bytes = ARG(kmem_cache_alloc, bytes_alloc);
#endif
	struct site_key sk = {.call_site = obj.call_site, .cache = s, .kind = KIND_SLAB};
	record(ctx, &key, &obj, &sk, s);
	return 0;
}

/* ---- pages ---------------------------------------------------------------- */

/*
 * Page-cache and anonymous pages come and go by the hundred thousand a
 * second under file I/O. Keyed by the struct page address (the raw events
 * give no PFN), the same on the free side.
 */
#ifdef EVENT_mm_page_alloc
int alloc_page(struct bpf_raw_tracepoint_args *ctx)
{
	struct live_key key = {.addr = ARG(mm_page_alloc, page), .space = SPACE_PAGE};
#ifdef PAGE_RETIRE
	note_page(key.addr);
#endif
	/* GFP_USER and its relatives set __GFP_HARDWALL: anonymous, page-cache and
	 * pipe pages of the process, not kernel objects */
	u32 kind = (ARG(mm_page_alloc, gfp_flags) & USER_PAGE_GFP) ? KIND_USER_PAGE : KIND_PAGE;
#ifndef INCLUDE_USER_PAGES
	if (kind == KIND_USER_PAGE) {
		retire_reused(&key);
		return 0;
	}
#endif
	if (!admit(ctx, &key, key.addr == 0) || !KEEP((u64)PAGE_BYTES << (u32)ARG(mm_page_alloc, order)))
		return 0;
	struct live_obj obj = {.kind = kind};
	obj.bytes = (u64)PAGE_BYTES << (u32)ARG(mm_page_alloc, order);
	record(ctx, &key, &obj, NULL, 0);	/* no call site: every page takes its stack */
	return 0;
}
#endif

#ifdef EVENT_mm_page_free
int free_page(struct bpf_raw_tracepoint_args *ctx)
{
	u64 page = ARG(mm_page_free, page);
	forget(SPACE_PAGE, page);
#ifdef PAGE_RETIRE
	retire_page(ctx, page, ARG(mm_page_free, order));
#endif
	return 0;
}
#endif

#ifdef EVENT_mm_page_free_batched
int free_page_batched(struct bpf_raw_tracepoint_args *ctx)
{
	u64 page = ARG(mm_page_free_batched, page);
	forget(SPACE_PAGE, page);
#ifdef PAGE_RETIRE
	retire_page(ctx, page, 0);
#endif
	return 0;
}
#endif

/* ---- percpu --------------------------------------------------------------- */

#ifdef EVENT_percpu_alloc_percpu
int alloc_percpu(struct bpf_raw_tracepoint_args *ctx)
{
	struct live_key key = {.addr = ARG(percpu_alloc_percpu, ptr), .space = SPACE_PERCPU};
#ifdef ARG_percpu_alloc_percpu_bytes_alloc
	u64 size = ARG(percpu_alloc_percpu, bytes_alloc);
#else
	u64 size = ARG(percpu_alloc_percpu, size);
#endif
	if (!admit(ctx, &key, failed_ptr(key.addr)) || !KEEP(size))
		return 0;
	struct live_obj obj = {.kind = KIND_PERCPU};
	/* call_site and bytes_alloc were added in 5.19 (commit dee6876db0a7) */
#ifdef ARG_percpu_alloc_percpu_bytes_alloc
	obj.bytes = ARG(percpu_alloc_percpu, bytes_alloc);
#else
	obj.bytes = ARG(percpu_alloc_percpu, size);
#endif
#ifdef ARG_percpu_alloc_percpu_call_site
	obj.call_site = ARG(percpu_alloc_percpu, call_site);
	struct site_key sk = {.call_site = obj.call_site, .kind = KIND_PERCPU};
	record(ctx, &key, &obj, &sk, 0);
#else
	record(ctx, &key, &obj, NULL, 0);
#endif
	return 0;
}
#endif

#ifdef EVENT_percpu_free_percpu
int free_percpu(struct bpf_raw_tracepoint_args *ctx)
{
	return forget(SPACE_PERCPU, ARG(percpu_free_percpu, ptr));
}
#endif

/* ---- vmalloc (per vmap area; the events exist from 6.2) -------------------- */

#ifdef EVENT_alloc_vmap_area
int alloc_vmalloc(struct bpf_raw_tracepoint_args *ctx)
{
	struct live_key key = {.addr = ARG(alloc_vmap_area, addr), .space = SPACE_VMALLOC};
	if (!admit(ctx, &key, (int)ARG(alloc_vmap_area, failed) || key.addr == 0) ||
	    !KEEP(ARG(alloc_vmap_area, size)))
		return 0;
	struct live_obj obj = {.kind = KIND_VMALLOC};
	obj.bytes = ARG(alloc_vmap_area, size);
	record(ctx, &key, &obj, NULL, 0);
	return 0;
}
#endif

#ifdef EVENT_free_vmap_area_noflush
int free_vmalloc(struct bpf_raw_tracepoint_args *ctx)
{
	return forget(SPACE_VMALLOC, ARG(free_vmap_area_noflush, va_start));
}
#endif

#endif /* TRACK_ALLOCS */

/* ---- exits: keep the comm of a process that goes ------------------------------ */

/*
 * Whether the exiting task is its process's last thread. 6.16 gave the
 * tracepoint a group_dead argument; before it, do_exit() has already done
 * atomic_dec_and_test(&tsk->signal->live) when the tracepoint fires, so a
 * live count of 0 says the same (offsets from BTF).
 */
static __always_inline int group_dead(struct bpf_raw_tracepoint_args *ctx)
{
#ifdef ARG_sched_process_exit_group_dead
	return (u8)ARG(sched_process_exit, group_dead);
#elif defined(TASK_SIGNAL_OFF) && defined(SIGNAL_LIVE_OFF)
	u64 signal = 0;
	s32 live = 1;
	bpf_probe_read_kernel(&signal, sizeof(signal), (void *)(ARG(sched_process_exit, p) + TASK_SIGNAL_OFF));
	if (signal)
		bpf_probe_read_kernel(&live, sizeof(live), (void *)(signal + SIGNAL_LIVE_OFF));
	return live == 0;
#else
	u64 id = bpf_get_current_pid_tgid();
	return (u32)id == id >> 32;	/* the leader: no better guess */
#endif
}

#ifdef FILTER_TARGETS
/*
 * Tasks of targets that exited and are not freed yet. An exited task keeps
 * its task_struct, signal_struct, sighand and pid until it is reaped (its
 * parent's wait), and sched_process_free fires an RCU grace period after
 * that, when they go: a report made at the last exit showed 500 of each
 * for 500 exited children (kleaktrace -c 'python3 fork500.py' --children).
 * User space waits for exits_unfreed to reach 0 before the final report.
 */
BPF_HASH(exited_tasks, u64, u8, 65536);
BPF_ARRAY(exits_unfreed, s64, 1);

int task_freed(struct bpf_raw_tracepoint_args *ctx)
{
	u64 task = MANGLE(ARG(sched_process_free, p));
	int zero = 0;
	s64 *n = exits_unfreed.lookup(&zero);
	if (exited_tasks.delete(&task) == 0 && n)
		__sync_fetch_and_add(n, -1);
	return 0;
}
#endif

int task_exit(struct bpf_raw_tracepoint_args *ctx)
{
#ifdef TRACK_CGROUPS
	cgroups_changed();	/* its task_struct may be someone else's next */
#endif
	u64 id = bpf_get_current_pid_tgid();
	u32 tgid = id >> 32;
	if ((u32)id == tgid) {	/* the process, not one of its threads */
		struct exited_comm c = {.exited_ns = bpf_ktime_get_ns()};
		bpf_get_current_comm(&c.comm, sizeof(c.comm));
		exited_comms.update(&tgid, &c);
	}
#ifdef FILTER_TARGETS
	if (is_target(tgid)) {
		u64 task = MANGLE(bpf_get_current_task());
		u8 one = 1;
		int zero = 0;
		s64 *n = exits_unfreed.lookup(&zero);
		if (exited_tasks.insert(&task, &one) == 0 && n)
			__sync_fetch_and_add(n, 1);
	}
#endif
#if defined(FILTER_TARGETS) || defined(EXCLUDE_SET)
	if (is_target(tgid) && group_dead(ctx)) {
		u32 word = tgid / 64, zero = 0;
		u64 bit = 1ULL << (tgid % 64), *w = targets.lookup(&word);
		s64 *n = target_count.lookup(&zero);
		/* a subtract clears the bit atomically: it is set, and only this
		 * process's last thread gets here */
		if (w && (*w & bit)) {
			__sync_fetch_and_add(w, -bit);
			if (n)
				__sync_fetch_and_add(n, -1);
		}
	}
#endif
	return 0;
}

#ifdef TRACK_CGROUPS
/* cgroup:cgroup_mkdir(cgrp, path), in the hierarchy traced: remember its
 * path; its struct mem_cgroup, allocated by the mkdir's caller, is the new
 * cgroup's own and kept while the cgroup dies: it is charged to it. With
 * --cgroup, a child of a traced cgroup is traced. */
int cgroup_made(struct bpf_raw_tracepoint_args *ctx)
{
	u64 cgrp = ARG(cgroup_mkdir, cgrp);
	if (kread32(kread(cgrp + CGROUP_ROOT_OFF) + CGROUP_ROOT_HIERARCHY_OFF) != CGROUP_HIERARCHY)
		return 0;
	u64 id = cgroup_id(cgrp);
	struct cgroup_name name = {};
	bpf_probe_read_kernel_str(name.path, sizeof(name.path), (void *)ARG(cgroup_mkdir, path));
#ifdef CGROUP_MEMORY_SUBSYS
	u64 memcg = kread(cgrp + CGROUP_SUBSYS_OFF + 8 * CGROUP_MEMORY_SUBSYS);
	struct live_key key = {.addr = memcg, .space = SPACE_SLAB};
	struct slab_slot *slot = memcg ? slot_of(&key) : NULL;
	if (slot && slot->addr == key.addr)
		slot->obj.cgroup = id;
	name.mem_cgroup = MANGLE(memcg);
#endif
	cgroup_names.update(&id, &name);
#ifdef FILTER_CGROUPS
	u64 parent = cgroup_id(kread(kread(cgrp + CGROUP_SELF_OFF + CSS_PARENT_OFF) + CSS_CGROUP_OFF));
	u8 one = 1;
	if (cgroup_filter.lookup(&parent))
		cgroup_filter.update(&id, &one);
#endif
	return 0;
}

/* cgroup:cgroup_rmdir(cgrp, path): when it went, and its name if it was
 * made before the session */
int cgroup_removed(struct bpf_raw_tracepoint_args *ctx)
{
	u64 cgrp = ARG(cgroup_rmdir, cgrp);
	if (kread32(kread(cgrp + CGROUP_ROOT_OFF) + CGROUP_ROOT_HIERARCHY_OFF) != CGROUP_HIERARCHY)
		return 0;
	u64 id = cgroup_id(cgrp);
	struct cgroup_name *known = cgroup_names.lookup(&id);
	if (known) {
		known->removed_ns = bpf_ktime_get_ns();
		return 0;
	}
	struct cgroup_name name = {.removed_ns = bpf_ktime_get_ns()};
	bpf_probe_read_kernel_str(name.path, sizeof(name.path), (void *)ARG(cgroup_rmdir, path));
#ifdef CGROUP_MEMORY_SUBSYS
	name.mem_cgroup = MANGLE(kread(cgrp + CGROUP_SUBSYS_OFF + 8 * CGROUP_MEMORY_SUBSYS));
#endif
	cgroup_names.update(&id, &name);
	return 0;
}

/* cgroup:cgroup_attach_task: a task changed cgroups; memos are stale */
int cgroup_moved(struct bpf_raw_tracepoint_args *ctx)
{
	cgroups_changed();
	return 0;
}
#endif

/* ---- children ------------------------------------------------------------- */

#if defined(TRACE_CHILDREN) || defined(EXCLUDE_SET)
/*
 * sched_process_fork(parent, child) fires in the forking task for new
 * processes and new threads alike: a thread (same tgid as its parent) is
 * already covered by its process's bit. TASK_{PID,TGID}_OFF come from BTF.
 * A target's children are targets (--children); an excluded process's
 * children are excluded (EXCLUDE_SET).
 */
int task_fork(struct bpf_raw_tracepoint_args *ctx)
{
	u32 parent = bpf_get_current_pid_tgid() >> 32;
	if (!is_target(parent))
		return 0;
	u64 task = ARG(sched_process_fork, child);
	u32 child = 0, child_tgid = 0;
	bpf_probe_read_kernel(&child, sizeof(child), (void *)(task + TASK_PID_OFF));
	bpf_probe_read_kernel(&child_tgid, sizeof(child_tgid), (void *)(task + TASK_TGID_OFF));
	if (child != child_tgid)
		return 0;
	u32 word = child / 64, zero = 0;
	u64 bit = 1ULL << (child % 64), *w = targets.lookup(&word);
	s64 *n = target_count.lookup(&zero);
	/* an add sets the bit atomically: it is clear, and forks on other
	 * CPUs set other bits */
	if (w && !(*w & bit)) {
		__sync_fetch_and_add(w, bit);
		if (n)
			__sync_fetch_and_add(n, 1);
	}
	return 0;
}
#endif

#ifdef TRACK_ALLOCS
/*
 * ---- slab frees --------------------------------------------------------------
 * kfree(call_site, ptr) and kmem_cache_free(call_site, ptr, s | name).
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
BPF_PERCPU_ARRAY(free_last, u64, NR_FREE_EVENTS);	/* address a copy last freed */

static __always_inline u32 copy_running(int event, int copy)
{
	int idx = event * FREE_COPIES + copy;
	u32 *r = free_running.lookup(&idx);
	return r ? *r : 0;
}

static __always_inline int free_copy(int event, int copy, u64 addr)
{
#if FREE_COPIES_USED == 1
	/* one copy (serve's default): nothing to coordinate, and the kernel's
	 * recursion_misses alone count what it skipped */
	forget(SPACE_SLAB, addr);
	return 0;
#endif
	u64 *last = free_last.lookup(&event);
	int skipped_before = 0;

	/* A later copy runs an event after the earlier ones, and has work only
	 * when they skipped it: then the last address they freed on this CPU
	 * is another one. (Comparing addresses, not "is copy 0 mid-run" flags,
	 * leaves no window at the edges of copy 0's run.) */
	if (copy > 0) {
		if (last && *last == MANGLE(addr))
			return 0;
		skipped_before = copy_running(event, 0) && (copy < 2 || copy_running(event, 1));
	}
	int idx = event * FREE_COPIES + copy;
	u32 *me = free_running.lookup(&idx);
	if (me)
		*me = 1;
	int freed = forget(SPACE_SLAB, addr);
	/* copy 0's miss is covered when it was seen mid-run, or when this copy
	 * still found the object recorded (copy 0 would have dropped it) */
	if (copy > 0 && (skipped_before || freed)) {
		u64 *covered = free_covered.lookup(&event);
		if (covered)
			*covered += 1;
	}
	if (last)
		*last = MANGLE(addr);
	if (me)
		*me = 0;
	return 0;
}

/* free_<event>_<n>: copy n of event's free program */
#define SLAB_FREE_COPY(event, idx, n)                                          \
	int free_##event##_##n(struct bpf_raw_tracepoint_args *ctx)           \
	{                                                                      \
		return free_copy(idx, n, ARG(event, ptr));                     \
	}
#define SLAB_FREE_COPIES(event, idx)                                           \
	SLAB_FREE_COPY(event, idx, 0)                                          \
	SLAB_FREE_COPY(event, idx, 1)                                          \
	SLAB_FREE_COPY(event, idx, 2)
#if FREE_COPIES != 3
#error "SLAB_FREE_COPIES writes out FREE_COPIES copies"
#endif

SLAB_FREE_COPIES(kfree, FREE_EV_KFREE)
SLAB_FREE_COPIES(kmem_cache_free, FREE_EV_KMEM_CACHE_FREE)

/*
 * ---- bulk frees, kprobe (attached only where the kernel has kprobes) ---------
 * kmem_cache_free_bulk(s, size, p) frees p[0..size) with no per-object event;
 * kfree_bulk() is an inline call to it, and that is how batched kfree_rcu()
 * frees (kfree_rcu_work, 5.x to 6.x). Without this, every kfree_rcu'd object
 * is a phantom leak. KVFREE_BULK_MAX_ENTR is about 510 on 4 KiB pages; other
 * callers pass fewer.
 */
#define BULK_MAX 512

/* argument ``i`` (from 0) of a kprobed function */
static __always_inline u64 parm(struct pt_regs *ctx, int i)
{
	switch (i) {
	case 0: return PT_REGS_PARM1(ctx);
	case 1: return PT_REGS_PARM2(ctx);
	case 2: return PT_REGS_PARM3(ctx);
	case 3: return PT_REGS_PARM4(ctx);
	default: return PT_REGS_PARM5(ctx);
	}
}

#ifdef ARG_kmem_cache_free_bulk_p
int free_bulk(struct pt_regs *ctx)
{
	u64 size = parm(ctx, ARG_kmem_cache_free_bulk_size);
	void **p = (void **)parm(ctx, ARG_kmem_cache_free_bulk_p);

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
#endif

/*
 * kfree_rcu(obj) / kvfree_rcu(obj) enter kvfree_call_rcu(): from that call
 * the object is dead to its owner, whatever happens next (6.1-6.x batch it
 * into kfree_bulk, 6.18+ into a slab sheaf that returns whole to the barn:
 * neither fires a per-object free). It is retired here, at once: its memory
 * is reused only after a grace period, and the minimum age hides the few
 * milliseconds of that. Before 6.3 the function took (head, func), func
 * being the rcu_head's offset in the object, or the object itself for a
 * kvfree_rcu() without a head; from 6.3 (head, ptr).
 */
#ifdef ARG_kvfree_call_rcu_head
int free_rcu(struct pt_regs *ctx)
{
#ifdef ARG_kvfree_call_rcu_ptr
	u64 ptr = parm(ctx, ARG_kvfree_call_rcu_ptr);
#else
	u64 head = parm(ctx, ARG_kvfree_call_rcu_head), func = parm(ctx, ARG_kvfree_call_rcu_func);
	u64 ptr = head ? head - func : func;
#endif
	if (forget(SPACE_SLAB, ptr))
		count(CNT_FREED_BY_RCU);
	return 0;
}
#endif

#endif /* TRACK_ALLOCS */

/*
 * ---- interrupt context, for the target filter --------------------------------
 * One program per event: a program shared by two events would skip the inner
 * one when a hardirq arrives while it runs for a softirq.
 */
static __always_inline int irq_set(u32 bit, u32 on)
{
	int zero = 0;
	u32 *state = irq_state.lookup(&zero);
	/* not atomic, and need not be: a hardirq that interrupts this leaves its
	 * own bit as it found it */
	if (state)
		*state = on ? (*state | bit) : (*state & ~bit);
	return 0;
}

int irq_softirq_entry(struct bpf_raw_tracepoint_args *ctx) { return irq_set(IRQ_SOFT, 1); }
int irq_softirq_exit(struct bpf_raw_tracepoint_args *ctx) { return irq_set(IRQ_SOFT, 0); }
int irq_irq_handler_entry(struct bpf_raw_tracepoint_args *ctx) { return irq_set(IRQ_HARD, 1); }
int irq_irq_handler_exit(struct bpf_raw_tracepoint_args *ctx) { return irq_set(IRQ_HARD, 0); }

#ifdef TRACK_REFS
/*
 * ---- reference counts: path_get / path_put, fentry or kprobes --------------
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
 * recorded; they are recognised by the caller's return address falling in
 * those functions (IGNORE_CALLER_{START,END}_n from /proc/kallsyms).
 */
static __always_inline int ignored_caller(u64 ret)
{
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

static __always_inline void path_get_seen(void *ctx, u64 p, u32 skip)
{
	struct path_get_rec rec = {};

	u64 mnt = 0, dentry = 0;
	read_path(p, &mnt, &dentry);
	rec.mnt = MANGLE(mnt);
	rec.dentry = MANGLE(dentry);
	struct path_get_rec *old = path_gets.lookup(&p);
	if (old && old->dentry == rec.dentry && old->mnt == rec.mnt) {
		__sync_fetch_and_add(&old->count, 1);
		return;
	}
	rec.ts_ns = bpf_ktime_get_ns();
	rec.tgid = bpf_get_current_pid_tgid() >> 32;
	rec.count = 1;
	rec.stack_id = stack_of(ctx, skip, 1);	/* a colliding stack: one without its first frame */
	bpf_get_current_comm(&rec.comm, sizeof(rec.comm));
	dentry_name(dentry, rec.dentry_name);
	mount_name(mnt, rec.mnt_name);
	path_gets.update(&p, &rec);
}

static __always_inline void leak_ref(struct path_get_rec *rec, u32 type, u64 object,
				     const char *name, s32 put_stack)
{
	struct ref_leak_key key = {.object = object, .type = type, .get_stack = rec->stack_id,
				   .tgid = rec->tgid, .why = WHY_PUT_CLEARED};
	struct ref_leak zero = {};
	struct ref_leak *leak;

	if (object == MANGLE(0))
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

/*
 * fentry: the program runs from a BPF trampoline, so a stack taken there
 * starts with the program's and the trampoline's frames (two on 6.1) before
 * the traced function's. A short scan finds the traced function: the frame
 * after it is its caller, and the frames before it are skipped in the stacks
 * kept (kprobe stacks start in the traced function: no scan). The fentry
 * programs are built where the kernel has BTF and trampolines
 * (REFS_FENTRY); the tracer attaches them and falls back to the kprobes
 * below if the kernel refuses.
 */
#define FENTRY_SCAN 8
static __always_inline u32 fentry_frames(void *ctx, u64 start, u64 end, u64 *caller)
{
	u64 ips[FENTRY_SCAN] = {};

	*caller = 0;
	bpf_get_stack(ctx, ips, sizeof(ips), 0);
#pragma unroll
	for (int i = 0; i < FENTRY_SCAN - 1; i++) {
		if (ips[i] >= start && ips[i] < end) {
			*caller = ips[i + 1];
			return i;
		}
	}
	return 0;
}

static __always_inline void path_put_seen(void *ctx, u64 p, int fentry)
{
	u64 mnt = 0, dentry = 0, caller;
	struct path_get_rec *rec = path_gets.lookup(&p);

	if (!rec)
		return;
	read_path(p, &mnt, &dentry);
	if (MANGLE(mnt) != rec->mnt || MANGLE(dentry) != rec->dentry) {
		/* this put drops nothing of what path_get took: those references leak */
		u32 skip = fentry ? fentry_frames(ctx, PATH_PUT_START, PATH_PUT_END, &caller) : 0;
		s32 put_stack = stack_of(ctx, skip, 1);
		leak_ref(rec, REF_DENTRY, rec->dentry, rec->dentry_name, put_stack);
		leak_ref(rec, REF_VFSMOUNT, rec->mnt, rec->mnt_name, put_stack);
	}
	if (rec->count <= 1)
		path_gets.delete(&p);
	else
		__sync_fetch_and_add(&rec->count, -1);
}

/* kprobes: at function entry the stack pointer points at the return address */
int ref_path_get(struct pt_regs *ctx)
{
	u64 ret = 0;

	if (!wanted(ctx))
		return 0;
	bpf_probe_read_kernel(&ret, sizeof(ret), (void *)PT_REGS_SP(ctx));
	if (!ignored_caller(ret))
		path_get_seen(ctx, PT_REGS_PARM1(ctx), 0);
	return 0;
}

int ref_path_put(struct pt_regs *ctx)
{
	path_put_seen(ctx, PT_REGS_PARM1(ctx), 0);
	return 0;
}

#ifdef REFS_FENTRY
KFUNC_PROBE(path_get, void *p)
{
	u64 caller;
	u32 skip;

	if (!wanted(ctx))
		return 0;
	skip = fentry_frames(ctx, PATH_GET_START, PATH_GET_END, &caller);
	if (!ignored_caller(caller))
		path_get_seen(ctx, (u64)p, skip);
	return 0;
}

KFUNC_PROBE(path_put, void *p)
{
	path_put_seen(ctx, (u64)p, 1);
	return 0;
}
#endif
#endif
