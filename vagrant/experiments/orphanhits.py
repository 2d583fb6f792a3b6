#!/usr/bin/env python3
"""What points at the lab's planted orphans: every word the holder scan
finds pointing into an object of kleaklab_orphan or kleaklab_cycle, with the
memory it lies in (the scan's label), whether it was judged stale, and the
verdicts, for ROUNDS sessions of the full driver (as provision.sh traces it).
A planted orphan called held once in a few CI runs (bookworm 2026-12-06: 11
of 19 orphans and all 7 cycles, /proc/kcore agreeing): this shows what the
near misses are, the stale words that did not count, and in a failing round
the word that did.

    sudo vagrant/lab qemu --out DIR --kernel all --jobs 2 --experiment orphanhits   # DIR/*/summary.txt

Runs in the guest (provision.sh run, with the module loaded).
"""

import contextlib
import io
import json
import os
import sys
import time

import numpy as np

ROUNDS = int(os.environ.get("ORPHANHITS_ROUNDS", 2))
PLANTED = ("kleaklab_orphan", "kleaklab_cycle")


def main() -> int:
    out = sys.argv[1]
    global PLANTED  # a dry run elsewhere: orphanhits.py OUT COMMAND FUNCTION[,FUNCTION]
    command = sys.argv[2] if len(sys.argv) > 2 else None
    PLANTED = tuple(sys.argv[3].split(",")) if len(sys.argv) > 3 else PLANTED
    src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.path.insert(0, src)
    os.chdir(src)
    from bpftrace_leak import cli
    from bpftrace_leak.tracer import scan as scanmod
    calls: list[dict] = []
    real = scanmod.verdicts

    def verdicts(n, target, source, stale, unknown=None):
        v = real(n, target, source, stale, unknown)
        f = sys._getframe(1).f_locals  # HolderScan._once's
        describe, key, addr = f["describe"], f["key"], f["addr"]
        labels, hit_label = f["labels"], f["hit_label"]
        planted = {i for i in range(n) if any(p in describe[key[i]] for p in PLANTED)}
        hits = []
        me, where = f["self"], np.concatenate([f["w1"], f["w2"]])
        lay, flags = me.layout, f["flags"]
        for j in range(len(target)):
            t = int(target[j])
            if t in planted:
                s = int(source[j])
                hit = {"target": hex(int(addr[t])), "group": describe[key[t]],
                       "from": "root" if s < 0 else describe[key[s]] + (" (itself)" if s == t else ""),
                       "label": list(labels[hit_label[j]]), "stale": bool(stale[j]), "at": hex(int(where[j]))}
                if s < 0 and not stale[j] and j >= len(f["w1"]):  # a root in pass 2's frames: what the page is
                    pfn = (int(where[j]) - lay.direct) // 4096
                    page = me.census.peek(lay.vmemmap + pfn * 64, 64)
                    near = me.census.peek(int(where[j]) & ~63, 64)
                    hit.update(pfn=pfn, kpageflags=hex(int(flags[pfn])) if pfn < len(flags) else None,
                               struct_page=page.hex() if page else None, words=near.hex() if near else None,
                               excluded=pfn in f["regions"].excluded, dead=pfn in f["regions"].dead,
                               vmalloced=pfn in f["regions"].vmalloced)
                hits.append(hit)
        calls.append({"method": f["memory"].method, "targets": n, "planted": len(planted),
                      "verdicts": {name: int((v[sorted(planted)] == code).sum()) for code, name in
                                   enumerate(("held", "orphaned", "orphan_cycle", "unknown"))},
                      "unknown_in": int(unknown[sorted(planted)].sum()) if unknown is not None else 0,
                      "hits": hits})
        return v

    scanmod.verdicts = verdicts
    rounds, lines = [], []
    for r in range(ROUNDS):
        calls.clear()
        buf = io.StringIO()
        t0 = time.monotonic()
        with contextlib.redirect_stdout(buf):
            try:
                cli.main(["--children", "--stack-slots", "65536", "--scan-via", "both" if not command else "bpf",
                          "-c", command or f"python3 {src}/vagrant/driver.py --expect {out}/expected-{r}.json",
                          "--format", "json", "--top", "100000", "--min-age", "1000ms"], standalone_mode=False)
            except SystemExit:
                pass
        report = json.loads([x for x in buf.getvalue().splitlines() if x.startswith("{")][-1])
        final = {g["stack"][0].split("+")[0]: {k: g.get(k) for k in ("objects", "orphaned", "orphan_cycle", "held",
                                                                       "unknown", "holders")}
                 for g in report["groups"] if any(p in g["stack"][0] for p in PLANTED)}
        rounds.append({"round": r, "seconds": round(time.monotonic() - t0, 1), "final": final,
                       "scan": report.get("scan"), "passes": list(calls)})
        lines.append(f"round {r}: {json.dumps(final)}")
        for c in calls:
            live = [h for h in c["hits"] if not h["stale"] and "(itself)" not in h["from"]
                    and h["from"] == "root"]
            stale = [h for h in c["hits"] if h["stale"]]
            lines.append(f"  {c['method']} pass of {c['targets']} targets ({c['planted']} planted): {c['verdicts']}, "
                         f"unknown marked {c['unknown_in']}, {len(live)} live roots, {len(stale)} stale words")
            for h in live + stale:
                lines.append(f"    {'stale' if h['stale'] else 'ROOT '} -> {h['target']} {h['group'][:40]}: "
                             f"{h['label']} at {h['at']}" + (f" pfn {h['pfn']:#x} flags {h['kpageflags']} "
                             f"page {h['struct_page']} words {h['words']} excluded {h['excluded']} dead {h['dead']} "
                             f"vmalloced {h['vmalloced']}" if "pfn" in h else ""))
    passed = all(f.get("objects") == (f.get("orphaned") or 0) + (f.get("orphan_cycle") or 0)
                 for r in rounds for f in r["final"].values())
    with open(os.path.join(out, "rounds.json"), "w") as f:
        json.dump(rounds, f, indent=1)
    summary = {"kernel": os.uname().release, "experiment": "orphanhits", "passed": passed, "scenarios": []}
    for name, text in (("summary.json", json.dumps(summary, indent=1)), ("summary.txt", "\n".join(lines) + "\n")):
        with open(os.path.join(out, name), "w") as f:
            f.write(text)
    print("\n".join(f"lab: {line}" for line in lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
