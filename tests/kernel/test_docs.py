"""Every `kleaktrace` command in a fenced ```sh block of the README and docs/
runs here as written, but for what a page cannot know: PID is a process of
this test's, capture names are captures it made, a session that would run
for minutes or until Ctrl-C runs a second, and a command that needs what
this host lacks (a cgroup that is not here, your own ./program, a pipe into
a tool not installed) is listed as skipped with its reason."""

import glob
import os
import re
import shlex
import signal
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "unit"))
from capture_data import write_capture  # noqa: E402
from conftest import ROOT  # noqa: E402

PAGES = ["README.md"] + sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))
OFFLINE = ("report", "diff")


def commands():
    """(page, command line) of every distinct kleaktrace command, in page order."""
    seen, out = set(), []
    for page in PAGES:
        text = open(os.path.join(ROOT, page)).read()
        for block in re.findall(r"```sh\n(.*?)```", text, re.S):
            for line in block.splitlines():
                line = line.split(" # ")[0].split("   #")[0].strip()
                if line.startswith("sudo "):
                    line = line[5:]
                if line.startswith("kleaktrace ") or line == "kleaktrace":
                    if line not in seen:
                        seen.add(line)
                        out.append((page, line))
    return out


def why_not_here(argv: list[str]) -> str | None:
    joined = " ".join(argv)
    if "./" in joined:
        return "runs a program of yours"
    for i, arg in enumerate(argv):
        if arg == "--cgroup" and i + 1 < len(argv) and not argv[i + 1].startswith("(") and \
                not os.path.isdir(os.path.join("/sys/fs/cgroup/memory", argv[i + 1].lstrip("/"))):
            return f"no cgroup {argv[i + 1]} on this host"
    return None


def adapt(argv: list[str], pid: int, folder) -> list[str]:
    """The command as it runs here (see the module docstring)."""
    out = []
    for arg in argv:
        if arg == "PID":
            arg = str(pid)
        elif arg.endswith((".kcap", ".html", ".pb.gz", ".svg")):
            arg = str(folder / arg)
        out.append(arg)
    sub = out[1] if len(out) > 1 else ""
    if sub in OFFLINE or sub == "doctor":
        return out
    if sub == "serve":
        return out + ["--listen", "127.0.0.1:0"]
    # INTERVAL COUNT (positional numbers): a report a second, twice; else a second's session
    positional = [i for i, a in enumerate(out) if i > 1 and re.fullmatch(r"\d+(\.\d+)?[smh]?", a)
                  and not out[i - 1].startswith("-")]
    if positional:
        for i, value in zip(positional, ("1", "2")):
            out[i] = value
        if len(positional) == 1:  # INTERVAL alone runs until Ctrl-C
            out += ["--duration", "2"]
    elif "--duration" in out:
        out[out.index("--duration") + 1] = "1"
    else:
        out += ["--duration", "1"]
    return out


@pytest.mark.parametrize("page,line", commands(), ids=[f"{p}:{c[:40]}" for p, c in commands()])
def test_documented_command_runs(page, line, tmp_path):
    argv = shlex.split(line.split(" | ")[0])  # a pipe into another tool: the kleaktrace part
    why = why_not_here(argv)
    if why:
        pytest.skip(why)
    for name in ("leak.kcap", "monday.kcap", "friday.kcap"):
        write_capture(tmp_path / name)
    holder = subprocess.Popen(["sleep", "120"])
    try:
        argv = adapt(argv, holder.pid, tmp_path)
        if "-w" in argv and os.path.exists(argv[argv.index("-w") + 1]):
            os.unlink(argv[argv.index("-w") + 1])
        cmd = [sys.executable, "-m", "bpftrace_leak.cli", *argv[1:]]
        if argv[1:2] == ["serve"]:
            proc = subprocess.Popen(cmd, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
            for err in proc.stderr:
                if "serving http://" in err or "Traceback" in err:
                    break
            proc.send_signal(signal.SIGTERM)
            rest = proc.stderr.read()
            assert proc.wait(60) == 0 and "Traceback" not in err + rest, err + rest
            return
        res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, (page, argv, res.stderr[-2000:])
        assert "Traceback" not in res.stderr
    finally:
        holder.kill()
        holder.wait()
