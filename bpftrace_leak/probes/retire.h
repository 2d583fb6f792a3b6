/*
 * Slab pages that go back to the page allocator retire what was recorded
 * in them (layout.h: page_calib, retire_state).
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
#endif /* TRACK_ALLOCS */
