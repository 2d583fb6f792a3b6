/*
 * The holder scan's programs (tracer/scan.py drives them; layout.h: SCAN_*).
 * Run on demand (BPF_PROG_TEST_RUN), never on an event: they only read
 * kernel memory, a batch of pages at a time, into arrays user space has
 * mmap()ed, where numpy looks for words that point into outstanding objects.
 * The census's programs (census_peek, census_cpu) read the rest.
 */
#ifdef HOLDER_SCAN
BPF_F_TABLE("array", u32, u64, scan_in, SCAN_BATCH, BPF_F_MMAPABLE);	/* addresses of the pages to read */
BPF_F_TABLE("array", u32, struct scan_page, scan_buf, SCAN_BATCH, BPF_F_MMAPABLE);
BPF_F_TABLE("array", u32, u64, scan_ok, SCAN_BATCH, BPF_F_MMAPABLE);	/* 1: scan_buf[i] was read */
BPF_ARRAY(scan_self, u64, 1);	/* the task that ran scan_task */
/* slab objects whose freeness user space asks about: the census's freelist
 * walks set an entry to 1 when they meet its object (probes.c: found_free) */
BPF_HASH(scan_query, u64, u8, 65536);

/* args: n: read the pages at scan_in[0..n) into scan_buf[0..n) */
int scan_read(struct bpf_raw_tracepoint_args *ctx)
{
	u32 n = ctx->args[0];
	/* the index goes to the lookups through a copy: clang kept the loop's own
	 * counter on the stack only, and the verifier, seeing no difference
	 * between two iterations' states, called the loop infinite */
#pragma clang loop unroll(disable)
	for (u32 i = 0; i < SCAN_BATCH && i < n; i++) {
		u32 idx = i;
		u64 *at = scan_in.lookup(&idx);
		struct scan_page *page = scan_buf.lookup(&idx);
		u64 *ok = scan_ok.lookup(&idx);
		if (!at || !page || !ok)
			break;
		*ok = bpf_probe_read_kernel(page->data, SCAN_PAGE_BYTES, (void *)*at) == 0;
	}
	return 0;
}

/* the current task: user space follows its mm to the kernel's page tables */
int scan_task(struct bpf_raw_tracepoint_args *ctx)
{
	int zero = 0;
	u64 *out = scan_self.lookup(&zero);
	if (!out)
		return 1;
	*out = bpf_get_current_task();
	return 0;
}

static __always_inline void scan_mark_free(u64 addr)
{
	u8 *q = scan_query.lookup(&addr);
	if (q)
		*q = 1;
}
#else
static __always_inline void scan_mark_free(u64 addr) {}
#endif
