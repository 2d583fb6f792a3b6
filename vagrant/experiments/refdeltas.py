#!/usr/bin/env python3
"""Why kleaktrace does not report per-object dput/mntput deltas (README,
"Reference counts"): counts, per dentry and per vfsmount, the references the
traceable get and put functions take and drop (dget_parent's result, dput,
mntget, mntput) while kleaklab's pathref scenario leaks K references on K new
dentries and K on their mount. If those deltas could find the leak, K
dentries would show +1 and the mount +K.

    sudo vagrant/lab qemu --out DIR --experiment refdeltas    # DIR/summary.txt

Runs in the guest (provision.sh run, with the module loaded).
"""

import json
import os
import subprocess
import sys
import tempfile
import time

from bcc import BPF

PROG = r"""
#include <uapi/linux/ptrace.h>
struct key { u64 obj; u32 type; u32 pad; };
BPF_HASH(net, struct key, s64, 1 << 18);
static inline void add(u64 obj, u32 type, s64 d)
{
	struct key k = {.obj = obj, .type = type};
	s64 zero = 0, *v;
	if (!obj)
		return;
	v = net.lookup_or_try_init(&k, &zero);
	if (v)
		__sync_fetch_and_add(v, d);
}
int got_parent(struct pt_regs *ctx) { add(PT_REGS_RC(ctx), 0, 1); return 0; }
int dput_(struct pt_regs *ctx) { add(PT_REGS_PARM1(ctx), 0, -1); return 0; }
int mntget_(struct pt_regs *ctx) { add(PT_REGS_PARM1(ctx), 1, 1); return 0; }
int mntput_(struct pt_regs *ctx) { add(PT_REGS_PARM1(ctx), 1, -1); return 0; }
"""
K = 13


def main() -> int:
    out = sys.argv[1]
    b = BPF(text=PROG)
    b.attach_kretprobe(event="dget_parent", fn_name="got_parent")
    b.attach_kprobe(event="dput", fn_name="dput_")
    b.attach_kprobe(event="mntget", fn_name="mntget_")
    b.attach_kprobe(event="mntput", fn_name="mntput_")
    d = tempfile.mkdtemp(prefix="refdeltas-")
    for i in range(K):
        fd = os.open(os.path.join(d, f"f{i}"), os.O_CREAT | os.O_RDWR, 0o600)
        with open("/proc/kleaklab/pathref", "w") as f:
            f.write(str(fd))
        os.close(fd)
    subprocess.run("ls -lR /usr/share/doc > /dev/null", shell=True)  # ordinary lookups alongside
    time.sleep(2)
    nets = [(k.type, v.value) for k, v in b["net"].items()]
    lines = [f"pathref leaked {K} references on {K} dentries and {K} on their mount; per-object deltas seen:"]
    result = {"passed": True, "K": K}
    for t, name in ((0, "dentry"), (1, "vfsmount")):
        vs = [v for ty, v in nets if ty == t]
        row = {"objects": len(vs), "positive": sum(v > 0 for v in vs), "negative": sum(v < 0 for v in vs),
               "sum_positive": sum(v for v in vs if v > 0), "sum_negative": sum(v for v in vs if v < 0),
               "largest": sorted(vs, reverse=True)[:5], "smallest": sorted(vs)[:5]}
        result[name] = row
        lines.append(f"{name}: {row}")
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(out, "summary.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    for line in lines:
        print(f"lab: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
