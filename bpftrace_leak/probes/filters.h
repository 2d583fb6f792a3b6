/*
 * Who is traced: the target bitmap, --cgroup, interrupt context
 * (wanted()), and each allocation's cgroup (current_cgroup()).
 * Part of probes.c (one compile unit: tracer/bcc.py source() writes it in place).
 */
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

static __always_inline u32 current_cgroup(void)
{
#ifdef CGROUP_V1_SUBSYS
	int zero = 0;
	u64 task = bpf_get_current_task();
	u64 *gen = cgroup_gen.lookup(&zero);
	struct cgroup_memo *m = cgroup_memo.lookup(&zero);
	if (!gen || !m)
		return 0;
	if (m->task == MANGLE(task) && m->gen == *gen)
		return m->id;
	u64 css = kread(kread(task + TASK_CGROUPS_OFF) + CSS_SET_SUBSYS_OFF + 8 * CGROUP_V1_SUBSYS);
	m->task = MANGLE(task);
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
static __always_inline int wanted(void *args)
{
#ifdef FILTER_TARGETS
	int zero = 0;
	u32 *irq = irq_state.lookup(&zero);
	if (irq && *irq) {
		count(CNT_IRQ_SKIPPED);
		return 0;
	}
	return is_target(bpf_get_current_pid_tgid() >> 32);
#elif defined(FILTER_CGROUPS)
	int zero = 0;
	u32 *irq = irq_state.lookup(&zero);
	if (irq && *irq) {
		count(CNT_IRQ_SKIPPED);
		return 0;
	}
	u64 id = current_cgroup();
	return cgroup_filter.lookup(&id) != NULL;
#elif defined(EXCLUDE_SET)
	return !is_target(bpf_get_current_pid_tgid() >> 32);
#else
	return 1;
#endif
}
