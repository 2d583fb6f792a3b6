/*
 * The slab free programs (several copies per event) and, where kprobes
 * exist, bulk frees and kfree_rcu.
 * Part of probes.c (one compile unit: tracer/bcc.py source() writes it in place).
 */
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
