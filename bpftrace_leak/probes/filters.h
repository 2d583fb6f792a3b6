/*
 * Who is traced: the target bitmap, --cgroup, interrupt context
 * (wanted()), and each allocation's task: its tgid, system call and
 * cgroup (task_tgid(), task_syscall(), task_cgroup()).
 * Part of probes.c (one compile unit: tracer/bcc.py source() writes it in place).
 */
/*
 * ---- the current task ---------------------------------------------------------
 * An allocation program reads the current task once (bpf_get_current_task_btf,
 * a BTF-typed pointer) and passes it on: its tgid and pid are then loads the
 * verifier checks against the kernel's BTF and makes fault-safe, not helper
 * calls. A helper call costs 6 to 9 ns here (bench/micro.py, 2026-12-06:
 * empty 55-56, pid_tgid 61-62, task 64, task_btf 62 ns/run with the stats),
 * and an allocation under -p made five: the tgid twice (filter, record),
 * the task twice (system call, cgroup), its saved registers once. The pid,
 * tgid and registers from one task read: 78 ns/run, against 94-97 for the
 * three helpers (context_one_task, context_helpers).
 */
#define TASK_U32(t, off) (*(volatile u32 *)((char *)(t) + (off)))

static __always_inline u32 task_tgid(struct task_struct *t)
{
	return TASK_U32(t, TASK_TGID_OFF);
}

/*
 * The task's system call number (pt_regs->orig_ax; in interrupt context the
 * interrupted task's). A call site's paths from different system calls get
 * their own first stack by it (docs/stacks.md). Where the kernel has
 * bpf_rdonly_cast (6.2+): loads only, regs_offset, task->stack and the
 * registers near its top, and no call: bench/ablation.py --base affc7d9
 * (2026-12-07), alloc_kmem_cache 232 -> 187 ns/run, and "no syscall
 * number" 183, i.e. the number now costs nothing measurable. Before (and
 * on 6.1, the lab's bookworm): the helper bpf_task_pt_regs, the registers'
 * BTF type coming only from it, 15 to 27 ns of an allocation (pt_regs_only
 * 80 against task_btf 62 ns/run in bench/micro.py, 2026-12-06), nearly all
 * the call (this host's AMD EPYC returns through SRSO's safe RET); a
 * bpf_probe_read_kernel cost 39 ns more.
 */
#ifdef PT_REGS_BTF_ID
/*
 * bpf_rdonly_cast(obj, btf_id): ``obj`` typed as BTF type ``btf_id``, for
 * reading only. The verifier turns the call into a move and the loads
 * through its result into fault-safe loads (BPF_PROBE_MEM): no call is
 * left. Called as a helper of number KFUNC_RDONLY_CAST (layout.h says why).
 */
static void *(*rdonly_cast)(void *obj, u32 btf_id) = (void *)KFUNC_RDONLY_CAST;

/* where a task's registers are, from its stack: regs_at's finding, 0 until it found it */
BPF_ARRAY(regs_offset, u64, 1);

/*
 * Where the kernel's task_pt_regs() puts the current task's registers, as
 * an offset from its stack, among the layouts x86-64 has: four or eight
 * pages of stack (KASAN doubles it), 0 or 16 bytes above the registers
 * (the lab, 2026-12-07: 6.1 to this host's 6.18 keep none, Debian's 7.2
 * keeps 16). Left in regs_offset; tracer/session.py runs it once, before
 * anything is attached; none found: the allocations use the helper.
 * Compared, not subtracted: 6.12's verifier refuses arithmetic on the
 * registers' pointer (7.2's allows it).
 */
#define REGS_AT(pages, pad) ((pages) * PAGE_BYTES - (pad) - PT_REGS_SIZE)

int regs_at(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *t = bpf_get_current_task_btf();
	u64 stack = *(volatile u64 *)((char *)t + TASK_STACK_OFF);
	u64 regs = (u64)bpf_task_pt_regs(t), found = 0;
	if (regs == stack + REGS_AT(4, 0))
		found = REGS_AT(4, 0);
	else if (regs == stack + REGS_AT(4, 16))
		found = REGS_AT(4, 16);
	else if (regs == stack + REGS_AT(8, 0))
		found = REGS_AT(8, 0);
	else if (regs == stack + REGS_AT(8, 16))
		found = REGS_AT(8, 16);
	int zero = 0;
	u64 *at = regs_offset.lookup(&zero);
	if (at)
		*at = found;
	return found;
}
#endif

static __always_inline u32 task_syscall(struct task_struct *t)
{
#ifdef PT_REGS_BTF_ID
	/* the registers at task->stack + regs_offset, typed by bpf_rdonly_cast:
	 * an array load and two loads, no call */
	int zero = 0;
	u64 *at = regs_offset.lookup(&zero);
	if (at && *at) {
		u64 stack = *(volatile u64 *)((char *)t + TASK_STACK_OFF);
		char *regs = rdonly_cast((void *)(stack + *at), PT_REGS_BTF_ID);
		return *(volatile u64 *)(regs + PT_REGS_ORIG_AX_OFF);
	}
#endif
#ifdef PT_REGS_ORIG_AX_OFF
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(t);
	return *(volatile u64 *)((char *)regs + PT_REGS_ORIG_AX_OFF);
#else
	return -1;	/* no BTF for struct pt_regs: call sites are not split by system call */
#endif
}

#ifdef TRACK_CGROUPS
/*
 * ---- cgroups ---------------------------------------------------------------
 * Each allocation records its task's cgroup in one hierarchy: the memory
 * controller's (v1, where it is mounted so, as on this project's host) or
 * the unified one (v2). A cgroup is named by its kernfs id, the inode number
 * of its folder in cgroupfs, so user space finds paths by listing folders;
 * cgroups made or removed while traced are named by their events
 * (cgroup_names). The v1 lookup follows four pointers, so it is kept per CPU
 * for the current task until any task migrates or exits (cgroup_gen): a
 * task's cgroup changes only by migrating.
 */
BPF_HASH(cgroup_names, u64, struct cgroup_name, 4096);
BPF_ARRAY(cgroup_gen, u64, 1);
BPF_PERCPU_ARRAY(cgroup_memo, struct cgroup_memo, 1);
#ifdef FILTER_CGROUPS
BPF_HASH(cgroup_filter, u64, u8, 4096);	/* --cgroup: those and their descendants */
#endif

static __always_inline u64 cgroup_id(u64 cgrp)
{
	return kread(kread(cgrp + CGROUP_KN_OFF) + KERNFS_ID_OFF);
}

/*
 * The memo is keyed by the task's pid, a load from ``t``, where the task's
 * address took a helper call (and is an address, to be MANGLEd): a pid
 * used again belongs to a task made after the last one's exit, which
 * bumped cgroup_gen.
 */
static __always_inline u32 task_cgroup(struct task_struct *t)
{
#ifdef CGROUP_V1_SUBSYS
	int zero = 0;
	u32 pid = TASK_U32(t, TASK_PID_OFF);
	u64 *gen = cgroup_gen.lookup(&zero);
	struct cgroup_memo *m = cgroup_memo.lookup(&zero);
	if (!gen || !m)
		return 0;
	if (m->pid == pid && m->gen == *gen)
		return m->id;
	u64 task = bpf_get_current_task();
	u64 css = kread(kread(task + TASK_CGROUPS_OFF) + CSS_SET_SUBSYS_OFF + 8 * CGROUP_V1_SUBSYS);
	m->pid = pid;
	m->gen = *gen;
	m->id = cgroup_id(kread(css + CSS_CGROUP_OFF));
	return m->id;
#else
	return bpf_get_current_cgroup_id();
#endif
}

static __always_inline void cgroups_changed(void)
{
	int zero = 0;
	u64 *gen = cgroup_gen.lookup(&zero);
	if (gen)
		__sync_fetch_and_add(gen, 1);
}
#endif

/*
 * Decide whether the current allocation belongs to a target. Allocations
 * made in interrupt context run on behalf of nobody in particular, so with a
 * target filter they are not charged to whatever task they interrupted.
 */
static __always_inline int wanted(struct task_struct *t)
{
#ifdef FILTER_TARGETS
	int zero = 0;
	u32 *irq = irq_state.lookup(&zero);
	if (irq && *irq) {
		count(CNT_IRQ_SKIPPED);
		return 0;
	}
	return is_target(task_tgid(t));
#elif defined(FILTER_CGROUPS)
	int zero = 0;
	u32 *irq = irq_state.lookup(&zero);
	if (irq && *irq) {
		count(CNT_IRQ_SKIPPED);
		return 0;
	}
	u64 id = task_cgroup(t);
	return cgroup_filter.lookup(&id) != NULL;
#elif defined(EXCLUDE_SET)
	return !is_target(task_tgid(t));
#else
	return 1;
#endif
}
