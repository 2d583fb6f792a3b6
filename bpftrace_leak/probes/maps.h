/*
 * The maps every part shares: outstanding objects (slots, page_slots, live),
 * stacks and call sites, counters, the target bitmap, exited processes'
 * names, interrupt state; and the counting helpers.
 * Part of probes.c (one compile unit: tracer/bcc.py source() writes it in place).
 */
/*
 * Slab objects live in `slots`, pages in `page_slots`, arrays indexed by the address:
 * claiming and releasing a slot is one compare-and-swap, with no bucket lock
 * and no allocation, and most slab objects live for microseconds. An object
 * whose slot is taken goes to the `live` hash, which also holds every other
 * address space; the slot counts such objects (spilled), so that while it
 * holds none no event for its addresses touches the hash at all. A slot's
 * head (address, spilled) and its record (`slot_objs`, `page_objs`, at the
 * same index) are apart: a free reads the dense heads only (layout.h:
 * slot_head). All four are mmap()ed by user space (tracer/records.py), which
 * reads them without a system call per entry.
 */
BPF_F_TABLE("array", u32, struct slot_head, slots, SLOT_COUNT, BPF_F_MMAPABLE);
BPF_F_TABLE("array", u32, struct live_obj, slot_objs, SLOT_COUNT, BPF_F_MMAPABLE);
/* Small: every page-cache page comes and goes through it, and only kernel
 * pages stay; a table that stays in cache keeps those visits cheap. */
BPF_F_TABLE("array", u32, struct slot_head, page_slots, PAGE_SLOT_COUNT, BPF_F_MMAPABLE);
BPF_F_TABLE("array", u32, struct live_obj, page_objs, PAGE_SLOT_COUNT, BPF_F_MMAPABLE);
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
