/*
 * The reference census's programs and the task iterators (tracer/pins.py);
 * the task iterator also lists kernel stacks for the holder scan and for the
 * slab census's recycled stacks (CENSUS_TASKS, tracer/census.py).
 * Part of probes.c (one compile unit: tracer/bcc.py source() writes it in place).
 */
#ifdef TRACK_ALLOCS
#if defined(PIN_CENSUS) || defined(HOLDER_SCAN) || defined(CENSUS_TASKS)
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

/* The allocation time (jiffies) of the record of slab object ``addr``; 0: none. */
static __always_inline u64 record_ts(u64 addr)
{
	struct live_key key = {.addr = addr, .space = SPACE_SLAB};
	u32 idx = 0;
	struct slot_head *slot = slot_of(&key, &idx);
	if (!slot)
		return 0;
	if (slot->addr == addr) {
		struct live_obj *rec = slot_obj(key.space, &idx);
		return rec ? rec->ts : 0;
	}
	if (!slot->spilled)
		return 0;
	struct live_key k = hash_key(&key);
	struct live_obj *obj = live.lookup(&k);
	return obj ? obj->ts : 0;
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

#if defined(PIN_CENSUS) || defined(HOLDER_SCAN) || defined(CENSUS_TASKS)
/* every task's fs_struct (pwd, root), executable and mount namespace (the
 * reference census), and its kernel stack (the holder scan names it, the
 * slab census finds the cached stacks fork handed on) */
int bpf_iter__task(struct pins_iter_task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	u64 task = (u64)ctx->task;
	if (!task)
		return 0;
#if defined(HOLDER_SCAN) || defined(CENSUS_TASKS)
	/* mnt: the saved stack pointer of a task not on a CPU (its frames
	 * below it are dead); 0 when the whole stack is to be read */
	struct pin_holder st = {.holder = kread(task + TASK_STACK_OFF), .dentry = task, .kind = PIN_STACK,
				.tgid = kread32(task + TASK_TGID_OFF)};
#ifdef TASK_SP_OFF
	if (!kread32(task + TASK_ON_CPU_OFF))
		st.mnt = kread(task + TASK_SP_OFF);
#endif
	/* kleaktrace's own threads (this iterator runs in one): their stacks
	 * hold what its programs handled (the census's and the scan's runs
	 * leave record addresses 3-4 KiB deep, 2-5 of them after each scan on
	 * this host) and its user registers; none of it is the kernel's
	 * holding. Read whole, a stale word there made a planted orphan
	 * "held" for /proc/kcore's read and not BPF's (trixie, 2026-12-05). */
	if (st.tgid == (u32)(bpf_get_current_pid_tgid() >> 32))
		st.mnt = st.holder + KSTACK_SIZE;
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
#endif /* TRACK_ALLOCS */
