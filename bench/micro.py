#!/usr/bin/env python3
"""What the building blocks of a probe cost: one tiny BPF program per variant
on kmem_cache_alloc, the allocation storm (bench/storm.c) run under it on one
core, ns per run from kernel.bpf_stats_enabled. The "empty" row is the floor
of the measurement itself (the stats add two clock reads a run); read the
others against it. The slot rows touch a random line of a slot array of
1 M entries, as the tracer's do: what they cost is mostly the line. slot_*:
64-byte slots, address and record together (the layout before 2026-12-06);
pair_*: a 16-byte head (address, spilled count) and a 48-byte record in two
arrays (layout.h's struct slot_head: the layout now); dense_*: an 8-byte
head. task*, tgid_*, pt_regs_*, context_*: what
reading the current task's tgid, registers and system call costs, by
helper calls or by loads from one BTF-typed task pointer (probes/filters.h).

    sudo .venv/bin/python bench/micro.py [VARIANT ...]
"""

import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from bpftrace_leak.kernel.btf import Btf  # noqa: E402
from bpftrace_leak.kernel.headers import find_headers  # noqa: E402
from overhead import build_storm  # noqa: E402

SLOT = "u64 a = ctx->args[1]; u32 i = ((a >> 12) * 0x9E3779B97F4A7C15ULL >> 44) + ((a >> 4) & 255); " \
       "i &= (1 << 20) - 1; struct slot *s = slots.lookup(&i); if (!s) return 0; "
DENSE = "u64 a = ctx->args[1]; u32 i = ((a >> 12) * 0x9E3779B97F4A7C15ULL >> 44) + ((a >> 4) & 255); " \
        "i &= (1 << 20) - 1; u64 *d = dense.lookup(&i); if (!d) return 0; "
PAIR = "u64 a = ctx->args[1]; u32 i = ((a >> 12) * 0x9E3779B97F4A7C15ULL >> 44) + ((a >> 4) & 255); " \
        "i &= (1 << 20) - 1; struct pair *d = pairs.lookup(&i); if (!d) return 0; "
#: a record's six words written after the claim (ts and five more: struct live_obj is 48 bytes)
WRITE = "s->ts = a; s->pad[0] = a; s->pad[1] = a; s->pad[2] = a; s->pad[3] = a; s->pad[4] = a; "
PAIR_CLAIM = "if (__sync_val_compare_and_swap(&d->addr, 0, 1) == 0) { if (d->spilled) sink(a); " + WRITE + "d->addr = 0; }"
VARIANTS = {
    "empty": "",
    "ktime": "sink(bpf_ktime_get_ns());",
    "jiffies": "sink(bpf_jiffies64());",
    "pid_tgid": "sink(bpf_get_current_pid_tgid());",
    "cgroup_id": "sink(bpf_get_current_cgroup_id());",
    "syscall_probe_read": "struct pt_regs *r = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf()); "
                          "u64 nr = 0; bpf_probe_read_kernel(&nr, 8, &r->orig_ax); sink(nr);",
    "syscall_btf_load": "struct pt_regs *r = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf()); "
                        "sink(r->orig_ax);",
    "slot_read": SLOT + "sink(s->addr);",
    "slot_store": SLOT + "s->ts = a;",
    "slot_cas": SLOT + "u64 old = s->addr; __sync_val_compare_and_swap(&s->addr, old, old);",
    "slot_claim_write": SLOT + "if (__sync_val_compare_and_swap(&s->addr, 0, 1) == 0) { " + WRITE + "s->addr = 0; }",
    "dense_read": DENSE + "sink(*d);",
    "dense_cas": DENSE + "u64 old = *d; __sync_val_compare_and_swap(d, old, old);",
    "dense_claim_write": DENSE + "struct slot *s = slots.lookup(&i); if (!s) return 0; "
                         "if (__sync_val_compare_and_swap(d, 0, 1) == 0) { " + WRITE + "*d = 0; }",
    "pair_read": PAIR + "sink(d->addr);",
    "pair_claim_write": PAIR + "struct rec *s = recs.lookup(&i); if (!s) return 0; " + PAIR_CLAIM,
    "pair_claim_write64": PAIR + "struct slot *s = slots.lookup(&i); if (!s) return 0; " + PAIR_CLAIM,
    "dense_claim_write48": DENSE + "struct rec *s = recs.lookup(&i); if (!s) return 0; "
                           "if (__sync_val_compare_and_swap(d, 0, 1) == 0) { " + WRITE + "*d = 0; }",
    "hash_update": "u64 a = ctx->args[1]; live.update(&a, &a);",
    # the current task's context: a helper call costs 6-9 ns here, bpf_task_pt_regs ~20 (2026-12-06)
    "task": "sink(bpf_get_current_task());",
    "task_btf": "sink((u64)bpf_get_current_task_btf());",
    "tgid_btf_load": "char *t = (char *)bpf_get_current_task_btf(); sink(*(volatile u32 *)(t + TASK_TGID_OFF));",
    "context_helpers": "u64 id = bpf_get_current_pid_tgid(); u64 t = bpf_get_current_task(); "
                       "struct pt_regs *r = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf()); "
                       "sink(r->orig_ax + id + t);",
    "pt_regs_noload": "struct pt_regs *r = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf()); "
                      "sink(r != 0);",
    "pt_regs_only": "struct pt_regs *r = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf()); "
                    "sink((u64)r->ip != 0);",
    "context_one_task": "struct task_struct *t = bpf_get_current_task_btf(); "
                        "u32 tgid = *(volatile u32 *)((char *)t + TASK_TGID_OFF); "
                        "struct pt_regs *r = (struct pt_regs *)bpf_task_pt_regs(t); "
                        "sink(r->orig_ax + tgid);",
}
TEXT = """
#include <uapi/linux/ptrace.h>
#include <linux/sched.h>
struct slot { u64 addr; u64 ts; u64 pad[6]; };
BPF_ARRAY(out, u64, 1);
BPF_F_TABLE("array", u32, struct slot, slots, 1 << 20, 0);
BPF_F_TABLE("array", u32, u64, dense, 1 << 20, 0);
struct pair { u64 addr; s64 spilled; };
struct rec { u64 ts; u64 pad[5]; };
BPF_F_TABLE("array", u32, struct pair, pairs, 1 << 20, 0);
BPF_F_TABLE("array", u32, struct rec, recs, 1 << 20, 0);
BPF_HASH(live, u64, u64, 1048576);
static __always_inline void sink(u64 v) { int z = 0; u64 *o = out.lookup(&z); if (o && v == 12345) *o = v; }
int prog(struct bpf_raw_tracepoint_args *ctx) { BODY return 0; }
"""


def stats() -> dict:
    out = subprocess.run(["bpftool", "prog", "show", "-j"], capture_output=True, text=True, check=True).stdout
    return {p["id"]: p for p in json.loads(out) if p.get("name") == "prog"}


def main() -> int:
    tree = find_headers(warn=lambda m: None)
    if tree:
        os.environ["BCC_KERNEL_SOURCE"] = tree
    from bcc import BPF
    wanted = sys.argv[1:] or list(VARIANTS)
    unknown = [w for w in wanted if w not in VARIANTS]
    if unknown:
        raise SystemExit(f"micro: unknown variant {unknown[0]!r}; known: {', '.join(VARIANTS)}")
    tgid_off = Btf.load().offset("task_struct", "tgid")
    with tempfile.TemporaryDirectory() as d:
        storm = build_storm(d)
        print("variant                    runs      ns/run   storm cycles/s")
        for name in wanted:
            b = BPF(text=TEXT.replace("BODY", VARIANTS[name]), cflags=[f"-DTASK_TGID_OFF={tgid_off}"])
            b.attach_raw_tracepoint(tp="kmem_cache_alloc", fn_name="prog")
            subprocess.run(["sysctl", "-q", "kernel.bpf_stats_enabled=1"], check=True)
            try:
                before = stats()
                rate = subprocess.run(["taskset", "-c", "1", storm, "2"], capture_output=True, text=True).stdout
                after = stats()
            finally:
                subprocess.run(["sysctl", "-q", "kernel.bpf_stats_enabled=0"])
            for k, p in after.items():
                runs = p.get("run_cnt", 0) - before.get(k, {}).get("run_cnt", 0)
                ns = p.get("run_time_ns", 0) - before.get(k, {}).get("run_time_ns", 0)
                print(f"{name:20} {runs:>12,} {ns / max(runs, 1):9.1f}   {float(rate or 0):,.0f}")
            b.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
