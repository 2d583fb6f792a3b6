/*
 * Recording an outstanding object and forgetting it: slots and the live
 * hash, sampling, call sites and their stacks (record(), forget()).
 * Part of probes.c (one compile unit: tracer/bcc.py source() writes it in place).
 */
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

static __always_inline u32 slot_index(struct live_key *key)
{
	if (key->space == SPACE_PAGE)
		return (key->addr >> 6) & (PAGE_SLOT_COUNT - 1);	/* struct page: 64 bytes */
	return (slot_window(key->addr) + ((key->addr >> 4) & 255)) & (SLOT_COUNT - 1);
}

/* the head of ``key``'s slot, and its index in *idx (for slot_obj) */
static __always_inline struct slot_head *slot_of(struct live_key *key, u32 *idx)
{
	*idx = slot_index(key);
	return key->space == SPACE_PAGE ? page_slots.lookup(idx) : slots.lookup(idx);
}

/* the record of slot ``idx`` of ``space``'s table */
static __always_inline struct live_obj *slot_obj(u32 space, u32 *idx)
{
	return space == SPACE_PAGE ? page_objs.lookup(idx) : slot_objs.lookup(idx);
}

/* ``key`` as the live hash keeps it: its address mangled */
static __always_inline struct live_key hash_key(struct live_key *key)
{
	struct live_key k = {.addr = MANGLE(key->addr), .space = key->space};
	return k;
}

#ifdef FRAME_COUNTS
/*
 * Sampled (--sample-bytes, serve's default): few slab objects are recorded,
 * yet every free read its address's slot head, a line of its own for any
 * object of 64 bytes or more, and on real work a cache miss: a slab free
 * took 152-156 ns/run on the untar under serve, 58-94 on the storm
 * (docs/overhead.md). frame_counts holds a u32 per 4 KiB of addresses
 * (modulo FRAME_COUNTS, two to a u64: 16 frames, 64 KiB of slab, to a
 * line): how many slab records have their address there, never fewer than
 * there are (one is added before a record is stored and taken off after
 * one is removed; a path that removes one without it leaves the frame
 * looked up, as before). A free in a frame counted 0 has nothing to look
 * up. Unsampled, every allocation would pay a locked add for it: off.
 */
BPF_ARRAY(frame_counts, u64, FRAME_COUNTS / 2);

static __always_inline u64 *frame_word(u64 addr, u32 *shift)
{
	u32 f = (addr >> 12) & (FRAME_COUNTS - 1), i = f / 2;
	*shift = (f & 1) * 32;
	return frame_counts.lookup(&i);
}

/* no slab record has its address in ``key``'s frame */
static __always_inline int frame_empty(struct live_key *key)
{
	u32 shift = 0;
	u64 *w = key->space == SPACE_SLAB ? frame_word(key->addr, &shift) : NULL;
	return w && !((*w >> shift) & 0xffffffffULL);
}

/* ``n`` (1 or -1) slab records more at ``key``'s frame */
static __always_inline void frame_add(struct live_key *key, s64 n)
{
	u32 shift = 0;
	u64 *w = key->space == SPACE_SLAB ? frame_word(key->addr, &shift) : NULL;
	if (w)
		__sync_fetch_and_add(w, (u64)n << shift);	/* -1: the u32 less one, no borrow (it is >= 1) */
}
#else
#define frame_empty(key) 0
#define frame_add(key, n) do { } while (0)
#endif

/* Delete ``key`` from the hash, where its slot said it may be. */
static __always_inline int unspill(struct slot_head *slot, struct live_key *key)
{
	struct live_key k = hash_key(key);
	if (!slot->spilled || live.delete(&k) != 0)
		return 0;
	__sync_fetch_and_add(&slot->spilled, -1);
	frame_add(key, -1);
	return 1;
}

/* Delete a record of ``key`` wherever it is; 1 when there was one. */
static __always_inline int drop_record(struct live_key *key)
{
	if (key->addr <= SLOT_BUSY || frame_empty(key))
		return 0;	/* kfree(NULL) fires the event too, and 0 marks a free slot */
	if (in_slots(key->space)) {
		u32 idx = 0;
		struct slot_head *slot = slot_of(key, &idx);
		if (!slot)
			return 0;
		if (slot->addr == key->addr &&
		    __sync_val_compare_and_swap(&slot->addr, key->addr, 0) == key->addr) {
			frame_add(key, -1);
			return 1;
		}
		return unspill(slot, key);
	}
	struct live_key k = hash_key(key);
	return live.delete(&k) == 0;
}

/*
 * drop_record() of a slab or page record (a space kept in slots) made at or
 * before jiffy ``max_ts`` only: a census that read the records a moment ago
 * must not retire one made since at the same address. It reads the record,
 * which a free never does: for the census (census.h), not the free programs.
 */
static __always_inline int drop_aged(struct live_key *key, u64 max_ts)
{
	u32 idx = 0;
	struct slot_head *slot = slot_of(key, &idx);
	if (!slot)
		return 0;
	struct live_obj *rec = slot->addr == key->addr ? slot_obj(key->space, &idx) : NULL;
	if (rec && rec->ts <= max_ts &&
	    __sync_val_compare_and_swap(&slot->addr, key->addr, 0) == key->addr) {
		frame_add(key, -1);
		return 1;
	}
	struct live_key k = hash_key(key);	/* or spilled to the hash */
	rec = slot->spilled ? live.lookup(&k) : NULL;
	if (rec && rec->ts <= max_ts && live.delete(&k) == 0) {
		__sync_fetch_and_add(&slot->spilled, -1);
		frame_add(key, -1);
		return 1;
	}
	return 0;
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
static __always_inline int admit(struct task_struct *task, struct live_key *key, int failed)
{
	if (failed) {
		count(CNT_FAILED_ALLOCS);
		return 0;
	}
	if (!wanted(task)) {
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
 * Keep an object in slot ``idx``, whose head is ``slot``; 0 when another
 * object holds the slot. The slot is claimed as SLOT_BUSY and gets its
 * address only once the record is written, so a reader never sees an
 * address with a previous object's record. The record's line is written,
 * never read here: the stores do not wait for it.
 */
static __always_inline int store_slot(struct slot_head *slot, u32 idx, struct live_key *key,
				      struct live_obj *obj)
{
	u64 old = __sync_val_compare_and_swap(&slot->addr, 0, SLOT_BUSY);
	if (old == key->addr) {
		count(CNT_MISSED_FREES);	/* still held: its free was not seen */
		frame_add(key, -1);		/* replaced, not added */
	} else if (old != 0) {
		return 0;
	} else if (unspill(slot, key)) {
		count(CNT_MISSED_FREES);	/* a stale record of it had spilled */
	}
	struct live_obj *rec = slot_obj(key->space, &idx);
	if (!rec) {
		slot->addr = 0;		/* cannot happen (idx is masked): spill */
		return 0;
	}
	__builtin_memcpy(rec, obj, sizeof(*obj));
	asm volatile("" ::: "memory");	/* the record before the address (x86 keeps store order) */
	slot->addr = key->addr;
	return 1;
}

#ifdef PAGE_RETIRE
BPF_ARRAY(page_calib, struct page_calib, 1);
BPF_PERCPU_ARRAY(last_page, struct last_page, 1);
#endif

#ifdef RETIRE_ON_FREE
/*
 * Without the slab census only (plan.py: _page_retire): page_marks, a bit
 * per page frame (modulo PAGE_MARKS): a slab object was recorded in that
 * page since it was last scanned, so a page free without its mark costs no
 * scan. A bit each, not a byte (array elements take 8 bytes: a byte each
 * took 128 MiB for this host's 24 GiB); set and cleared without atomics
 * (BCC's BPF has no atomic OR here): a race loses a mark, which only leaves
 * that page's objects to reuse.
 */
BPF_ARRAY(page_marks, u64, PAGE_MARKS / 64);

static __always_inline void mark_page(u64 addr)
{
	u32 i = ((addr >> 12) & (PAGE_MARKS - 1)) / 64;
	u64 bit = 1ULL << ((addr >> 12) & 63), *w = page_marks.lookup(&i);
	if (w && !(*w & bit))
		*w |= bit;
}
#endif

/*
 * An allocation's time is the tick's count, bpf_jiffies64(): a memory read,
 * where bpf_ktime_get_ns() reads the clock source, 50 ns a call on this
 * project's host (bench/overhead.py), a third of what an allocation cost.
 * Ages are in seconds (the minimum age, kmemleak's, is one): a tick (4 ms
 * at HZ=250) is precision enough. clock_now gives user space one instant
 * on both clocks (tracer/clock.py).
 */
BPF_ARRAY(clock_pairs, struct clock_pair, 1);

int clock_now(struct bpf_raw_tracepoint_args *ctx)
{
	int zero = 0;
	struct clock_pair *c = clock_pairs.lookup(&zero);
	if (!c)
		return 1;
	c->jiffies = bpf_jiffies64();
	c->ktime_ns = bpf_ktime_get_ns();
	return 0;
}

/* Keep ``obj`` at ``key``, made by ``task`` (the current one: filters.h). */
static __always_inline void record(void *ctx, struct task_struct *task, struct live_key *key,
				   struct live_obj *obj, struct site_key *sk, u64 s)
{
	obj->ts = bpf_jiffies64();
	obj->tgid = task_tgid(task);
	if (sk)
		obj->syscall = sk->syscall = task_syscall(task);
#ifdef TRACK_CGROUPS
	obj->cgroup = task_cgroup(task);
#endif
	take_stack(ctx, sk, s, obj);
#ifdef RETIRE_ON_FREE
	if (key->space == SPACE_SLAB)
		mark_page(key->addr);
#endif

	struct slot_head *slot = NULL;
	if (in_slots(key->space)) {
		u32 idx = 0;
		slot = slot_of(key, &idx);
		if (!slot)
			return;
		frame_add(key, 1);	/* before the record: a free of it looks */
		if (store_slot(slot, idx, key, obj)) {
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
		frame_add(key, -1);
	} else if (ret != 0) {
		count(CNT_DROPPED);
		if (slot)
			__sync_fetch_and_add(&slot->spilled, -1);
		frame_add(key, -1);
		return;
	}
	count_hot(CNT_ALLOCS);
}

/*
 * The object at ``addr`` is being freed: forget its record. A slot that
 * holds it is cleared with a plain store, not a compare-and-swap (the
 * locked instruction was a third of a free's cost): nothing else can change
 * a slot that holds a live object's address. Another allocation claims the
 * slot only once it is 0; the object's address is not handed out again
 * before this free; its slab page is not freed and the census does not find
 * it on a freelist before this free completes (the tracepoint fires first).
 */
static __always_inline int forget(u32 space, u64 addr)
{
	struct live_key key = {.addr = addr, .space = space};
	if (frame_empty(&key))
		return 0;
	if (addr > SLOT_BUSY && in_slots(space)) {
		u32 idx = 0;
		struct slot_head *slot = slot_of(&key, &idx);
		if (slot && slot->addr == addr) {
			slot->addr = 0;
			frame_add(&key, -1);
			count_hot(CNT_FREES);
			return 1;
		}
	}
	if (drop_record(&key)) {
		count_hot(CNT_FREES);
		return 1;
	}
	return 0;
}
