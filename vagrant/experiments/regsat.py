#!/usr/bin/env python3
"""How a kernel takes probes/filters.h's ways to find a task's registers:
the offset from task->stack by subtraction (regs_at), by comparison with
candidates, and the system call number read through bpf_rdonly_cast.

    vagrant/lab qemu --kernel trixie --experiment regsat --out DIR
"""
import json
import os
import sys

out = sys.argv[1]
src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, src)
from bcc import BPF  # noqa: E402

from bpftrace_leak.kernel.btf import Btf  # noqa: E402
from bpftrace_leak.tracer import bcc as kb  # noqa: E402

b = Btf.load()
stack_off, regs_id, regs_size = b.offset("task_struct", "stack"), b.struct_id("pt_regs"), b.size("pt_regs")
try:
    cast = b.func_id("bpf_rdonly_cast")
except Exception:  # noqa: BLE001 - 6.1: no such kfunc (by_cast fails to load, the others run)
    cast = 0
TEXT = r"""
static void *(*rdonly_cast)(void *, u32) = (void *)30001;
int by_sub(struct bpf_raw_tracepoint_args *ctx) {
  struct task_struct *t = (struct task_struct *)bpf_get_current_task_btf();
  u64 stack = *(volatile u64 *)((char *)t + STACK_OFF);
  return (u64)bpf_task_pt_regs(t) - stack;
}
int by_cmp(struct bpf_raw_tracepoint_args *ctx) {
  struct task_struct *t = (struct task_struct *)bpf_get_current_task_btf();
  u64 stack = *(volatile u64 *)((char *)t + STACK_OFF);
  u64 regs = (u64)bpf_task_pt_regs(t);
  if (regs == stack + 16384 - SIZE) return 1;
  if (regs == stack + 16384 - 16 - SIZE) return 2;
  if (regs == stack + 32768 - SIZE) return 3;
  if (regs == stack + 32768 - 16 - SIZE) return 4;
  return 0;
}
int by_cast(struct bpf_raw_tracepoint_args *ctx) {
  struct task_struct *t = (struct task_struct *)bpf_get_current_task_btf();
  u64 stack = *(volatile u64 *)((char *)t + STACK_OFF);
  char *regs = (char *)rdonly_cast((void *)(stack + AT), REGS_ID);
  return *(volatile u64 *)(regs + 120);
}
"""
rows = {"kernel": os.uname().release, "regs_size": regs_size}
for at in (16384 - regs_size, 16384 - 16 - regs_size):
    mod = BPF(text=TEXT, cflags=[f"-DSTACK_OFF={stack_off}", f"-DSIZE={regs_size}", f"-DAT={at}",
                                 f"-DREGS_ID={regs_id}"])
    mod.kfunc_calls = {30001: cast}
    for prog in ("by_sub", "by_cmp", "by_cast"):
        try:
            with kb.captured_output() as log:
                fd = kb.program_fd(mod, prog, "raw")
            rows[f"{prog}@{at}"] = kb.test_run(fd, [0])
        except Exception as e:  # noqa: BLE001 - the experiment reports whatever happens
            rows[f"{prog}@{at}"] = f"{type(e).__name__}: {e}"
    mod.cleanup()
print("lab: " + json.dumps(rows), flush=True)
with open(f"{out}/regsat.json", "w") as f:
    json.dump(rows, f, indent=1)
with open(f"{out}/summary.json", "w") as f:
    f.write('{"kernel": "experiment", "passed": true, "scenarios": []}\n')
