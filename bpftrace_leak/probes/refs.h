/*
 * Reference counts: path_get / path_put through fentry or kprobes.
 * Part of probes.c (one compile unit: tracer/bcc.py source() writes it in place).
 */
#ifdef TRACK_REFS
/*
 * ---- reference counts: path_get / path_put, fentry or kprobes --------------
 * dget() is inline (its lockref_get is not even traceable on 6.1) and the
 * dcache takes most references with bare increments, so per-object deltas of
 * dput() cannot tell a module's unbalanced get from the dcache's own. A
 * struct path is different: the code that path_get()s one path_put()s the
 * same struct. Records are keyed by its address; a path_put() that finds the
 * fields cleared or changed (the field case: close() NULLed f_path on 3.x
 * kernels, the module's path_put then dropped nothing) leaks the references
 * that path_get() took. Offsets come from the running kernel's BTF:
 * PATH_MNT_OFF, PATH_DENTRY_OFF, DENTRY_NAME_OFF (d_name.name),
 * MOUNT_MNT_OFF (struct mount.mnt), MOUNT_MOUNTPOINT_OFF.
 */
BPF_HASH(path_gets, u64, struct path_get_rec, MAX_REFS);
BPF_HASH(ref_leaks, struct ref_leak_key, struct ref_leak, MAX_REFS);

static __always_inline void read_path(u64 p, u64 *mnt, u64 *dentry)
{
	bpf_probe_read_kernel(mnt, sizeof(*mnt), (void *)(p + PATH_MNT_OFF));
	bpf_probe_read_kernel(dentry, sizeof(*dentry), (void *)(p + PATH_DENTRY_OFF));
}

static __always_inline void dentry_name(u64 dentry, char *buf)
{
	u64 name = 0;
	if (!dentry)
		return;
	bpf_probe_read_kernel(&name, sizeof(name), (void *)(dentry + DENTRY_NAME_OFF));
	if (name)
		bpf_probe_read_kernel_str(buf, REF_NAME_LEN, (void *)name);
}

/* a vfsmount is embedded in a struct mount; name it by its mount point */
static __always_inline void mount_name(u64 mnt, char *buf)
{
	u64 mountpoint = 0;
	if (!mnt)
		return;
	bpf_probe_read_kernel(&mountpoint, sizeof(mountpoint),
			      (void *)(mnt - MOUNT_MNT_OFF + MOUNT_MOUNTPOINT_OFF));
	dentry_name(mountpoint, buf);
}

/*
 * A struct file's own reference: do_dentry_open() path_get()s f_path, and
 * __fput() drops it with dput()+mntput(), never path_put(). Such gets are not
 * recorded; they are recognised by the caller's return address falling in
 * those functions (IGNORE_CALLER_{START,END}_n from /proc/kallsyms).
 */
static __always_inline int ignored_caller(u64 ret)
{
#ifdef IGNORE_CALLER_START_0
	if (ret >= IGNORE_CALLER_START_0 && ret < IGNORE_CALLER_END_0)
		return 1;
#endif
#ifdef IGNORE_CALLER_START_1
	if (ret >= IGNORE_CALLER_START_1 && ret < IGNORE_CALLER_END_1)
		return 1;
#endif
#ifdef IGNORE_CALLER_START_2
	if (ret >= IGNORE_CALLER_START_2 && ret < IGNORE_CALLER_END_2)
		return 1;
#endif
	return 0;
}

static __always_inline void path_get_seen(void *ctx, u64 p, u32 skip)
{
	struct path_get_rec rec = {};

	u64 mnt = 0, dentry = 0;
	read_path(p, &mnt, &dentry);
	rec.mnt = MANGLE(mnt);
	rec.dentry = MANGLE(dentry);
	struct path_get_rec *old = path_gets.lookup(&p);
	if (old && old->dentry == rec.dentry && old->mnt == rec.mnt) {
		__sync_fetch_and_add(&old->count, 1);
		return;
	}
	rec.ts_ns = bpf_ktime_get_ns();
	rec.tgid = bpf_get_current_pid_tgid() >> 32;
	rec.count = 1;
	rec.stack_id = stack_of(ctx, skip, 1);	/* a colliding stack: one without its first frame */
	bpf_get_current_comm(&rec.comm, sizeof(rec.comm));
	dentry_name(dentry, rec.dentry_name);
	mount_name(mnt, rec.mnt_name);
	path_gets.update(&p, &rec);
}

static __always_inline void leak_ref(struct path_get_rec *rec, u32 type, u64 object,
				     const char *name, s32 put_stack)
{
	struct ref_leak_key key = {.object = object, .type = type, .get_stack = rec->stack_id,
				   .tgid = rec->tgid, .why = WHY_PUT_CLEARED};
	struct ref_leak zero = {};
	struct ref_leak *leak;

	if (object == MANGLE(0))
		return;
	leak = ref_leaks.lookup_or_try_init(&key, &zero);
	if (!leak)
		return;
	if (leak->refs == 0) {
		leak->ts_ns = rec->ts_ns;
		leak->put_stack = put_stack;
		__builtin_memcpy(leak->comm, rec->comm, sizeof(leak->comm));
		bpf_probe_read_kernel_str(leak->name, sizeof(leak->name), name);
	}
	__sync_fetch_and_add(&leak->refs, 1);
}

/*
 * fentry: the program runs from a BPF trampoline, so a stack taken there
 * starts with the program's and the trampoline's frames (two on 6.1) before
 * the traced function's. A short scan finds the traced function: the frame
 * after it is its caller, and the frames before it are skipped in the stacks
 * kept (kprobe stacks start in the traced function: no scan). The fentry
 * programs are built where the kernel has BTF and trampolines
 * (REFS_FENTRY); the tracer attaches them and falls back to the kprobes
 * below if the kernel refuses.
 */
#define FENTRY_SCAN 8
static __always_inline u32 fentry_frames(void *ctx, u64 start, u64 end, u64 *caller)
{
	u64 ips[FENTRY_SCAN] = {};

	*caller = 0;
	bpf_get_stack(ctx, ips, sizeof(ips), 0);
#pragma unroll
	for (int i = 0; i < FENTRY_SCAN - 1; i++) {
		if (ips[i] >= start && ips[i] < end) {
			*caller = ips[i + 1];
			return i;
		}
	}
	return 0;
}

static __always_inline void path_put_seen(void *ctx, u64 p, int fentry)
{
	u64 mnt = 0, dentry = 0, caller;
	struct path_get_rec *rec = path_gets.lookup(&p);

	if (!rec)
		return;
	read_path(p, &mnt, &dentry);
	if (MANGLE(mnt) != rec->mnt || MANGLE(dentry) != rec->dentry) {
		/* this put drops nothing of what path_get took: those references leak */
		u32 skip = fentry ? fentry_frames(ctx, PATH_PUT_START, PATH_PUT_END, &caller) : 0;
		s32 put_stack = stack_of(ctx, skip, 1);
		leak_ref(rec, REF_DENTRY, rec->dentry, rec->dentry_name, put_stack);
		leak_ref(rec, REF_VFSMOUNT, rec->mnt, rec->mnt_name, put_stack);
	}
	if (rec->count <= 1)
		path_gets.delete(&p);
	else
		__sync_fetch_and_add(&rec->count, -1);
}

/* kprobes: at function entry the stack pointer points at the return address */
int ref_path_get(struct pt_regs *ctx)
{
	u64 ret = 0;

	if (!wanted(bpf_get_current_task_btf()))
		return 0;
	bpf_probe_read_kernel(&ret, sizeof(ret), (void *)PT_REGS_SP(ctx));
	if (!ignored_caller(ret))
		path_get_seen(ctx, PT_REGS_PARM1(ctx), 0);
	return 0;
}

int ref_path_put(struct pt_regs *ctx)
{
	path_put_seen(ctx, PT_REGS_PARM1(ctx), 0);
	return 0;
}

#ifdef REFS_FENTRY
KFUNC_PROBE(path_get, void *p)
{
	u64 caller;
	u32 skip;

	if (!wanted(bpf_get_current_task_btf()))
		return 0;
	skip = fentry_frames(ctx, PATH_GET_START, PATH_GET_END, &caller);
	if (!ignored_caller(caller))
		path_get_seen(ctx, (u64)p, skip);
	return 0;
}

KFUNC_PROBE(path_put, void *p)
{
	path_put_seen(ctx, (u64)p, 1);
	return 0;
}
#endif
#endif
