/*
 * Process and cgroup events: exits (names kept, targets counted out,
 * exited tasks until freed), cgroups made, removed and joined, forks, and
 * interrupt context for the target filter.
 * Part of probes.c (one compile unit: tracer/bcc.py source() writes it in place).
 */
/* ---- exits: keep the comm of a process that goes ------------------------------ */

/*
 * Whether the exiting task is its process's last thread. 6.16 gave the
 * tracepoint a group_dead argument; before it, do_exit() has already done
 * atomic_dec_and_test(&tsk->signal->live) when the tracepoint fires, so a
 * live count of 0 says the same (offsets from BTF).
 */
static __always_inline int group_dead(struct bpf_raw_tracepoint_args *ctx)
{
#ifdef ARG_sched_process_exit_group_dead
	return (u8)ARG(sched_process_exit, group_dead);
#elif defined(TASK_SIGNAL_OFF) && defined(SIGNAL_LIVE_OFF)
	u64 signal = 0;
	s32 live = 1;
	bpf_probe_read_kernel(&signal, sizeof(signal), (void *)(ARG(sched_process_exit, p) + TASK_SIGNAL_OFF));
	if (signal)
		bpf_probe_read_kernel(&live, sizeof(live), (void *)(signal + SIGNAL_LIVE_OFF));
	return live == 0;
#else
	u64 id = bpf_get_current_pid_tgid();
	return (u32)id == id >> 32;	/* the leader: no better guess */
#endif
}

#ifdef FILTER_TARGETS
/*
 * Tasks of targets that exited and are not freed yet. An exited task keeps
 * its task_struct, signal_struct, sighand and pid until it is reaped (its
 * parent's wait), and sched_process_free fires an RCU grace period after
 * that, when they go: a report made at the last exit showed 500 of each
 * for 500 exited children (kleaktrace -c 'python3 fork500.py' --children).
 * User space waits for exits_unfreed to reach 0 before the final report.
 */
BPF_HASH(exited_tasks, u64, u8, 65536);
BPF_ARRAY(exits_unfreed, s64, 1);

int task_freed(struct bpf_raw_tracepoint_args *ctx)
{
	u64 task = MANGLE(ARG(sched_process_free, p));
	int zero = 0;
	s64 *n = exits_unfreed.lookup(&zero);
	if (exited_tasks.delete(&task) == 0 && n)
		__sync_fetch_and_add(n, -1);
	return 0;
}
#endif

int task_exit(struct bpf_raw_tracepoint_args *ctx)
{
#ifdef TRACK_CGROUPS
	cgroups_changed();	/* its task_struct may be someone else's next */
#endif
	u64 id = bpf_get_current_pid_tgid();
	u32 tgid = id >> 32;
	if ((u32)id == tgid) {	/* the process, not one of its threads */
		struct exited_comm c = {.exited_ns = bpf_ktime_get_ns()};
		bpf_get_current_comm(&c.comm, sizeof(c.comm));
		exited_comms.update(&tgid, &c);
	}
#ifdef FILTER_TARGETS
	if (is_target(tgid)) {
		u64 task = MANGLE(bpf_get_current_task());
		u8 one = 1;
		int zero = 0;
		s64 *n = exits_unfreed.lookup(&zero);
		if (exited_tasks.insert(&task, &one) == 0 && n)
			__sync_fetch_and_add(n, 1);
	}
#endif
#if defined(FILTER_TARGETS) || defined(EXCLUDE_SET)
	if (is_target(tgid) && group_dead(ctx)) {
		u32 word = tgid / 64, zero = 0;
		u64 bit = 1ULL << (tgid % 64), *w = targets.lookup(&word);
		s64 *n = target_count.lookup(&zero);
		/* a subtract clears the bit atomically: it is set, and only this
		 * process's last thread gets here */
		if (w && (*w & bit)) {
			__sync_fetch_and_add(w, -bit);
			if (n)
				__sync_fetch_and_add(n, -1);
		}
	}
#endif
	return 0;
}

#ifdef TRACK_CGROUPS
/* cgroup:cgroup_mkdir(cgrp, path), in the hierarchy traced: remember its
 * path; its struct mem_cgroup, allocated by the mkdir's caller, is the new
 * cgroup's own and kept while the cgroup dies: it is charged to it. With
 * --cgroup, a child of a traced cgroup is traced. */
int cgroup_made(struct bpf_raw_tracepoint_args *ctx)
{
	u64 cgrp = ARG(cgroup_mkdir, cgrp);
	if (kread32(kread(cgrp + CGROUP_ROOT_OFF) + CGROUP_ROOT_HIERARCHY_OFF) != CGROUP_HIERARCHY)
		return 0;
	u64 id = cgroup_id(cgrp);
	struct cgroup_name name = {};
	bpf_probe_read_kernel_str(name.path, sizeof(name.path), (void *)ARG(cgroup_mkdir, path));
#ifdef CGROUP_MEMORY_SUBSYS
	u64 memcg = kread(cgrp + CGROUP_SUBSYS_OFF + 8 * CGROUP_MEMORY_SUBSYS);
	struct live_key key = {.addr = memcg, .space = SPACE_SLAB};
	u32 idx = 0;
	struct slot_head *slot = memcg ? slot_of(&key, &idx) : NULL;
	struct live_obj *rec = slot && slot->addr == key.addr ? slot_obj(key.space, &idx) : NULL;
	if (rec) {
		rec->cgroup = id;
	} else if (slot && slot->spilled) {
		/* a record that found its slot taken is in the live hash: left
		 * to its parent, a removed child's memcg was charged to a live
		 * cgroup (test_cgroups's dying-cgroup count, a flake in CI) */
		struct live_key hk = hash_key(&key);
		struct live_obj *o = live.lookup(&hk);
		if (o)
			o->cgroup = id;
	}
	name.mem_cgroup = MANGLE(memcg);
#endif
	cgroup_names.update(&id, &name);
#ifdef FILTER_CGROUPS
	u64 parent = cgroup_id(kread(kread(cgrp + CGROUP_SELF_OFF + CSS_PARENT_OFF) + CSS_CGROUP_OFF));
	u8 one = 1;
	if (cgroup_filter.lookup(&parent))
		cgroup_filter.update(&id, &one);
#endif
	return 0;
}

/* cgroup:cgroup_rmdir(cgrp, path): when it went, and its name if it was
 * made before the session */
int cgroup_removed(struct bpf_raw_tracepoint_args *ctx)
{
	u64 cgrp = ARG(cgroup_rmdir, cgrp);
	if (kread32(kread(cgrp + CGROUP_ROOT_OFF) + CGROUP_ROOT_HIERARCHY_OFF) != CGROUP_HIERARCHY)
		return 0;
	u64 id = cgroup_id(cgrp);
	struct cgroup_name *known = cgroup_names.lookup(&id);
	if (known) {
		known->removed_ns = bpf_ktime_get_ns();
		return 0;
	}
	struct cgroup_name name = {.removed_ns = bpf_ktime_get_ns()};
	bpf_probe_read_kernel_str(name.path, sizeof(name.path), (void *)ARG(cgroup_rmdir, path));
#ifdef CGROUP_MEMORY_SUBSYS
	name.mem_cgroup = MANGLE(kread(cgrp + CGROUP_SUBSYS_OFF + 8 * CGROUP_MEMORY_SUBSYS));
#endif
	cgroup_names.update(&id, &name);
	return 0;
}

/* cgroup:cgroup_attach_task: a task changed cgroups; memos are stale */
int cgroup_moved(struct bpf_raw_tracepoint_args *ctx)
{
	cgroups_changed();
	return 0;
}
#endif

/* ---- children ------------------------------------------------------------- */

#if defined(TRACE_CHILDREN) || defined(EXCLUDE_SET)
/*
 * sched_process_fork(parent, child) fires in the forking task for new
 * processes and new threads alike: a thread (same tgid as its parent) is
 * already covered by its process's bit. TASK_{PID,TGID}_OFF come from BTF.
 * A target's children are targets (--children); an excluded process's
 * children are excluded (EXCLUDE_SET).
 */
int task_fork(struct bpf_raw_tracepoint_args *ctx)
{
	u32 parent = bpf_get_current_pid_tgid() >> 32;
	if (!is_target(parent))
		return 0;
	u64 task = ARG(sched_process_fork, child);
	u32 child = 0, child_tgid = 0;
	bpf_probe_read_kernel(&child, sizeof(child), (void *)(task + TASK_PID_OFF));
	bpf_probe_read_kernel(&child_tgid, sizeof(child_tgid), (void *)(task + TASK_TGID_OFF));
	if (child != child_tgid)
		return 0;
	u32 word = child / 64, zero = 0;
	u64 bit = 1ULL << (child % 64), *w = targets.lookup(&word);
	s64 *n = target_count.lookup(&zero);
	/* an add sets the bit atomically: it is clear, and forks on other
	 * CPUs set other bits */
	if (w && !(*w & bit)) {
		__sync_fetch_and_add(w, bit);
		if (n)
			__sync_fetch_and_add(n, 1);
	}
	return 0;
}
#endif

/*
 * ---- interrupt context, for the target filter --------------------------------
 * One program per event: a program shared by two events would skip the inner
 * one when a hardirq arrives while it runs for a softirq.
 */
static __always_inline int irq_set(u32 bit, u32 on)
{
	int zero = 0;
	u32 *state = irq_state.lookup(&zero);
	/* not atomic, and need not be: a hardirq that interrupts this leaves its
	 * own bit as it found it */
	if (state)
		*state = on ? (*state | bit) : (*state & ~bit);
	return 0;
}

int irq_softirq_entry(struct bpf_raw_tracepoint_args *ctx) { return irq_set(IRQ_SOFT, 1); }
int irq_softirq_exit(struct bpf_raw_tracepoint_args *ctx) { return irq_set(IRQ_SOFT, 0); }
int irq_irq_handler_entry(struct bpf_raw_tracepoint_args *ctx) { return irq_set(IRQ_HARD, 1); }
int irq_irq_handler_exit(struct bpf_raw_tracepoint_args *ctx) { return irq_set(IRQ_HARD, 0); }
