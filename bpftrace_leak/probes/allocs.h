/*
 * The allocation programs (kmalloc, kmem_cache_alloc, pages, percpu,
 * vmalloc) and the free programs of pages, percpu and vmalloc.
 * Part of probes.c (one compile unit: tracer/bcc.py source() writes it in place).
 */
#ifdef TRACK_ALLOCS
/* ---- slab: kmalloc and kmem_cache_alloc --------------------------------------- */

int alloc_kmalloc(struct bpf_raw_tracepoint_args *ctx)
{
	struct live_key key = {.addr = ARG(kmalloc, ptr), .space = SPACE_SLAB};
#ifdef PAGE_RETIRE
	if (ARG(kmalloc, bytes_alloc) > KMALLOC_MAX_CACHE && !failed_ptr(key.addr))
		calibrate(key.addr);	/* a large kmalloc: its pages were allocated just before */
#endif
	struct task_struct *task = bpf_get_current_task_btf();
	if (!admit(task, &key, failed_ptr(key.addr)) || !KEEP(ARG(kmalloc, bytes_alloc)))
		return 0;
	struct live_obj obj = {.kind = KIND_KMALLOC};
	obj.bytes = ARG(kmalloc, bytes_alloc);
	obj.call_site = ARG(kmalloc, call_site);
	struct site_key sk = {.call_site = obj.call_site, .kind = KIND_KMALLOC};
	record(ctx, task, &key, &obj, &sk, 0);
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
	struct task_struct *task = bpf_get_current_task_btf();
	if (!admit(task, &key, failed_ptr(key.addr)))
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
	record(ctx, task, &key, &obj, &sk, s);
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
	struct task_struct *task = bpf_get_current_task_btf();
	if (!admit(task, &key, key.addr == 0) || !KEEP((u64)PAGE_BYTES << (u32)ARG(mm_page_alloc, order)))
		return 0;
	struct live_obj obj = {.kind = kind};
	obj.bytes = (u64)PAGE_BYTES << (u32)ARG(mm_page_alloc, order);
	/* No call site in this event: the gfp flags and order stand for one, in
	 * `cache` (layout.h: page_site), so that a site's first page takes the
	 * stack its others share until it grows (tracer/sites.py), as slab call
	 * sites do. A stack for every page cost 3 to 4 us, a tenth of the
	 * tracer's time on the allocation storm (bench/overhead.py). */
	obj.cache = page_site(ARG(mm_page_alloc, gfp_flags), ARG(mm_page_alloc, order));
	struct site_key sk = {.cache = obj.cache, .kind = kind};
	record(ctx, task, &key, &obj, &sk, 0);
	return 0;
}
#endif

#ifdef EVENT_mm_page_free
int free_page(struct bpf_raw_tracepoint_args *ctx)
{
	u64 page = ARG(mm_page_free, page);
	u32 order = ARG(mm_page_free, order);
	forget(SPACE_PAGE, page);
#ifdef PAGE_FREED_COUNT
	note_freed(page, order);
	if (order >= 2)		/* a page-backed kmalloc is above 2 pages */
		retire_first(page);
#elif defined(PAGE_RETIRE)
	retire_first(page);
#endif
#ifdef RETIRE_ON_FREE
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
#ifdef PAGE_FREED_COUNT
	note_freed(page, 0);	/* order 0: free_unref_page_list's pages */
#elif defined(PAGE_RETIRE)
	retire_first(page);
#endif
#ifdef RETIRE_ON_FREE
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
	struct task_struct *task = bpf_get_current_task_btf();
	if (!admit(task, &key, failed_ptr(key.addr)) || !KEEP(size))
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
	record(ctx, task, &key, &obj, &sk, 0);
#else
	record(ctx, task, &key, &obj, NULL, 0);
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
	struct task_struct *task = bpf_get_current_task_btf();
	if (!admit(task, &key, (int)ARG(alloc_vmap_area, failed) || key.addr == 0) ||
	    !KEEP(ARG(alloc_vmap_area, size)))
		return 0;
	struct live_obj obj = {.kind = KIND_VMALLOC};
	obj.bytes = ARG(alloc_vmap_area, size);
	record(ctx, task, &key, &obj, NULL, 0);
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
