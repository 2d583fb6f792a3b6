/*
 * The slab census's programs, run on demand (tracer/census.py).
 * Part of probes.c (one compile unit: tracer/bcc.py source() writes it in place).
 */
#ifdef TRACK_ALLOCS
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

#ifdef PAGE_BUDDY_MASK
/*
 * A page free the kernel skipped (mm_page_free in a softirq on top of a
 * running free_page: the lab's 7.2 guest kept 5 order-1 pgd_alloc pages of
 * exited processes so, 1 run in 3 beside CI's load) leaves a record no slab
 * list can retire. The buddy allocator's own books can: a free block's
 * first struct page has the buddy type, its order in `private`. Free blocks
 * are aligned to their order and never overlap, so the first page with the
 * buddy type at or below a frame on a 2^o boundary (o = 0, 1, ...) decides:
 * the frame is free when that block's order reaches it, else in no block.
 * A page on a CPU's pcp list is in no block: kept until it is (sound, if
 * late). args: the struct page of a record, the jiffy aged records are at
 * or before: a page allocated since user space read the records has a newer
 * record, kept (tracer/census_pages.py).
 */
int census_page(struct bpf_raw_tracepoint_args *ctx)
{
	u64 page = ctx->args[0];
	for (u32 o = 0; o <= PAGE_MAX_ORDER; o++) {
		u64 head = page & ~(((PAGE_BYTES / PAGE_RATIO) << o) - 1);
		if ((kread32(head + PAGE_TYPE_OFF) & PAGE_BUDDY_MASK) != PAGE_BUDDY_VALUE)
			continue;
		if (kread(head + PAGE_PRIVATE_OFF) < o)
			return 1;	/* a smaller free block below it */
		struct live_key key = {.addr = page, .space = SPACE_PAGE};
		if (!drop_aged(&key, ctx->args[1]))
			return 2;	/* no aged record of it */
		count(CNT_FOUND_FREE);
		return 0;
	}
	return 1;
}
#endif

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
#ifdef KMEM_CACHE_OO_OFF
	/*
	 * A slab whose counters word reads 0 (seen on 6.18: maple_node slabs
	 * with a freelist: 2 process-churn test runs in 24 kept some)
	 * gave an empty range, its freelist went unwalked and its free objects'
	 * stale records stayed: whole pages of 16 phantom maple_nodes. Such a
	 * slab has the cache's objects per slab (s->oo: order << 16 | objects;
	 * a slab of the smaller fallback order, s->min, holds fewer, and its
	 * freelist never points past them).
	 */
	if (!objects)
		objects = kread32(s + KMEM_CACHE_OO_OFF) & 0xffff;
#endif
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

/*
 * args: a struct page in a slab: its slab's freelist. With args[3] set, a
 * page of recorded objects (tracer/census.py), whose records' cache is
 * args[1] (kmem_cache_alloc's) or their size args[2] (kmalloc's), when they
 * all agree: for a page that is no slab any more, or a slab of another
 * cache, it returns 3 and census_retire retires its records. It was freed
 * since with objects whose frees no event showed (skipped, bulk, RCU
 * batches): their records are retired once a report is due, not at each
 * page free (retire.h).
 */
int census_slab(struct bpf_raw_tracepoint_args *ctx)
{
	u64 page = page_head(ctx->args[0]), base, end;
	u64 s = kread(page + SLAB_CACHE_OFF);
	int slab = census_known.lookup(&s) != NULL;	/* a slab, of a cache we know */
	if (ctx->args[3] && !(slab && (ctx->args[1] ? ctx->args[1] == s :
				       ctx->args[2] == kread32(s + KMEM_CACHE_SIZE_OFF))))
		return 3;
	if (!slab)
		return 1;	/* not a slab (any more), or a cache we do not know */
	u8 one = 1;
	census_seen.update(&s, &one);
	if (!slab_range(page, s, &base, &end))
		return 2;
	walk_freelist(kread(page + SLAB_FREELIST_OFF), s, base, end);
	return 0;
}

/* args: a struct page census_slab returned 3 for: retire its records that
 * stand for no object of the slab it is now (if any) */
int census_retire(struct bpf_raw_tracepoint_args *ctx)
{
	u64 page = ctx->args[0], va = page_va(page);
	u64 s = kread(page_head(page) + SLAB_CACHE_OFF);
	if (!va)
		return 1;
	if (!census_known.lookup(&s))
		s = 0;
	retire_records(va, RETIRE_STALE, s, s ? kread32(s + KMEM_CACHE_SIZE_OFF) : 0, 0);
	return 0;
}

#ifdef PAGE_FREED_COUNT
/* args: a struct page whose frame was freed after a record in it was made
 * (tracer/records.py: slab_pages): retire the records made before that free */
int census_freed(struct bpf_raw_tracepoint_args *ctx)
{
	u64 page = ctx->args[0], va = page_va(page);
	u32 f = frame_of(page), entry = f / 2;
	u64 *e = page_freed.lookup(&entry);
	u32 freed = e ? ((u32 *)e)[f & 1] : 0;
	if (!va || !freed)
		return 1;
	retire_records(va, RETIRE_BEFORE, 0, 0, freed);
	return 0;
}
#endif

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
#endif /* TRACK_ALLOCS */
