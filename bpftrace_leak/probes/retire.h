/*
 * Slab pages that go back to the page allocator retire what was recorded
 * in them (layout.h: page_calib, retire_state): at the next census
 * (census.h: census_slab) or, without one, at once.
 * Part of probes.c (one compile unit: tracer/bcc.py source() writes it in place).
 */
#ifdef TRACK_ALLOCS
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

/* the address of the memory of struct page ``page``; 0 before page_calib is learned */
static __always_inline u64 page_va(u64 page)
{
	int zero = 0;
	struct page_calib *c = page_calib.lookup(&zero);
	return c && c->ready ? page * PAGE_RATIO + c->offset : 0;
}

/*
 * A freed page's first address: a page-backed kmalloc (above
 * KMALLOC_MAX_CACHE) whose kfree no program saw is retired with its pages;
 * for a slab page, a record there is as stale. One lookup per page free.
 */
static __always_inline void retire_first(u64 page)
{
	struct live_key key = {.addr = page_va(page), .space = SPACE_SLAB};
	if (key.addr && drop_record(&key))
		count(CNT_FREED_WITH_SLAB);
}

#ifdef PAGE_FREED_COUNT
/*
 * ---- when each page frame was last freed (tracer/records.py reads it) ---------
 * page_freed holds, per page frame, (u32)jiffies | 1 of its last free (0:
 * not freed this session), two frames to an 8-byte entry (an array's
 * entries are 8-byte aligned: u32 values would take 8 bytes each). A record
 * made before its frame's last free stands for an object that is gone,
 * wherever in the page it sat: the census retires it (census.h:
 * census_freed), so a page free costs a store per 4 KiB, where retiring
 * the first record of every freed page at once (retire_first, now only for
 * page-backed kmallocs, order 2 and up) cost a slot lookup: 330-424 ns a
 * page free on the untar. The frame is the struct page's index modulo
 * PAGE_FREED_COUNT, a power of two above the highest frame: a bijection,
 * whatever the vmemmap base. The same in Python: records.py freed_index.
 */
BPF_F_TABLE("array", u32, u64, page_freed, PAGE_FREED_COUNT / 2, BPF_F_MMAPABLE);

static __always_inline u32 frame_of(u64 page)
{
	return (page / (PAGE_BYTES / PAGE_RATIO)) & (PAGE_FREED_COUNT - 1);
}

/*
 * The 2^order frames from struct page ``page`` were freed (slab pages are
 * order 3 at most, SLUB's slub_max_order: a larger page notes its first 8).
 * Eight stores whatever the order, iteration i >= n storing frame 0 again:
 * a loop with a branch on the order in it made free_page too large for the
 * 6.12 and 7.2 verifiers (E2BIG), 6.1's and 6.18's took it.
 */
static __always_inline void note_freed(u64 page, u32 order)
{
	u32 now = (u32)bpf_jiffies64() | 1, frame = frame_of(page), n = 1u << (order > 3 ? 3 : order);
	for (u32 i = 0; i < 8; i++) {
		u32 d = i & (u32)((s32)(i - n) >> 31);	/* i while i < n, else 0 */
		u32 f = (frame + d) & (PAGE_FREED_COUNT - 1), entry = f / 2;
		u64 *e = page_freed.lookup(&entry);
		if (e)
			((u32 *)e)[f & 1] = now;
	}
}

/* Whether a record made at jiffies ``ts`` predates ``freed`` (a page_freed
 * value, not 0): the same jiffy counts as after (records.py:
 * made_before_free). Branchless: a branch here, in retire_records' loop of
 * 256, made census_freed too complex for 6.18's verifier (1M insns). */
static __always_inline int made_before_free(u64 ts, u32 freed)
{
	return (((u32)ts | 1) - freed) >> 31;
}
#endif

/*
 * Whether the record ``obj`` of an object in a slab page stands for no
 * object any more, the page being of cache ``s`` (object size ``size``; 0:
 * no slab any more): a slab object of another cache, a kmalloc of another
 * size. Page-backed kmallocs are not in a slab (retire_first's).
 */
static __always_inline int stale_in(struct live_obj *obj, u64 s, u32 size)
{
	if (obj->kind == KIND_KMALLOC && obj->bytes > KMALLOC_MAX_CACHE)
		return 0;
	if (!s)
		return 1;
	if (obj->kind == KIND_SLAB)
		return obj->cache != s;
	return obj->kind == KIND_KMALLOC && obj->bytes != size;
}

/* which records retire_records retires; a constant at each call, so the
 * verifier follows one kind of loop */
#define RETIRE_ALL 0		/* every one */
#define RETIRE_STALE 1		/* stale_in(obj, s, size) */
#define RETIRE_BEFORE 2		/* made_before_free(obj->ts, freed) */

static __always_inline int retire_this(struct live_obj *obj, int how, u64 s, u32 size, u32 freed)
{
	if (how == RETIRE_ALL)
		return 1;
#ifdef PAGE_FREED_COUNT
	if (how == RETIRE_BEFORE)
		return made_before_free(obj->ts, freed);
#endif
	return stale_in(obj, s, size);
}

/*
 * Retire the objects recorded in the 4 KiB at ``base`` that ``how`` names
 * (s, size, freed: what it compares with): they sit in the window of 256
 * slots slot_of() gives that page, the object at offset o in slot window +
 * o / 16; one that spilled to the hash is at base + 16k or, for 8-byte
 * objects, base + 16k + 8.
 */
static __always_inline void retire_records(u64 base, int how, u64 s, u32 size, u32 freed)
{
	struct live_key key = {.space = SPACE_SLAB};
	u32 window = slot_window(base);
	for (u32 k = 0; k < 256; k++) {
		u32 idx = (window + k) & (SLOT_COUNT - 1);
		struct slot_head *slot = slots.lookup(&idx);
		if (!slot)
			continue;
		u64 a = slot->addr;
		struct live_obj *rec = a > SLOT_BUSY && (a >> 12) == (base >> 12) ? slot_obj(SPACE_SLAB, &idx) : NULL;
		if (rec && retire_this(rec, how, s, size, freed) &&
		    __sync_val_compare_and_swap(&slot->addr, a, 0) == a) {
			key.addr = a;
			frame_add(&key, -1);
			count(CNT_FREED_WITH_SLAB);
		}
		if (!slot->spilled)
			continue;
		key.addr = base + 16 * k;
		if (how == RETIRE_ALL) {
			if (unspill(slot, &key))
				count(CNT_FREED_WITH_SLAB);
			key.addr += 8;
			if (unspill(slot, &key))
				count(CNT_FREED_WITH_SLAB);
			continue;
		}
#pragma unroll
		for (int half = 0; half < 2; half++) {
			struct live_key hk = hash_key(&key);
			struct live_obj *o = live.lookup(&hk);
			if (o && retire_this(o, how, s, size, freed) && live.delete(&hk) == 0) {
				__sync_fetch_and_add(&slot->spilled, -1);
				frame_add(&key, -1);
				count(CNT_FREED_WITH_SLAB);
			}
			key.addr += 8;
		}
	}
}

#ifdef RETIRE_ON_FREE
/*
 * Without the slab census only (plan.py: _page_retire), at each page free:
 * a page whose mark says a slab object was recorded in it retires them.
 */
static __always_inline void retire_window(u64 base)
{
	u32 i = ((base >> 12) & (PAGE_MARKS - 1)) / 64;
	u64 bit = 1ULL << ((base >> 12) & 63), *w = page_marks.lookup(&i);
	if (!w || !(*w & bit))
		return;
	*w &= ~bit;
	retire_records(base, RETIRE_ALL, 0, 0, 0);
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
	u64 va = page_va(page);
	if (!va || order > 3)
		return;
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
#endif
#endif /* TRACK_ALLOCS */
