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

/*
 * args: from, n: read the pages at scan_in[from..from+n) into scan_buf
 * (n <= SCAN_RUN). Unrolled, not a loop: a bounded loop over the whole
 * batch passed 6.18's verifier, but 6.1 verified it (180,000 instructions)
 * and then refused to load it (EFAULT); user space runs this for each
 * SCAN_RUN pages instead, a system call per 64 KiB.
 */
int scan_read(struct bpf_raw_tracepoint_args *ctx)
{
	u32 from = ctx->args[0], n = ctx->args[1];
#pragma unroll
	for (u32 k = 0; k < SCAN_RUN; k++) {
		u32 idx = from + k;
		if (k >= n)
			break;
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
	/* MANGLEd: a hash map's freed elements keep their keys, and the asked
	 * about objects (orphans to confirm) would be found held by them */
	u64 key = MANGLE(addr);
	u8 *q = scan_query.lookup(&key);
	if (q)
		*q = 1;
}
#else
static __always_inline void scan_mark_free(u64 addr) {}
#endif
