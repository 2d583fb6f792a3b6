"""A hostile local user and an unlucky one: planted files, escape sequences in
process names, signals at the worst moments, commands that misbehave, full
disks, and input that means nothing. Real BPF, real sessions."""

import json
import os
import signal
import stat
import subprocess
import sys
import time

from conftest import ROOT, Tracer, as_user, bpf_prog_count, count

CLI = [sys.executable, "-m", "bpftrace_leak.cli"]
WORKLOAD = f"{sys.executable} -m bpftrace_leak.sessions.workload"


def run(*args, timeout=120, **kw):
    kw.setdefault("cwd", ROOT)
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True, timeout=timeout, **kw)


def one_line_error(res, status, text):
    assert res.returncode == status, (res.stdout[-1000:], res.stderr[-2000:])
    lines = [ln for ln in res.stderr.strip().splitlines() if "warning: no headers" not in ln]
    assert len(lines) == 1 and lines[0].startswith("kleaktrace: ") and text in lines[0], res.stderr
    assert "Traceback" not in res.stderr


def snapshots(path):
    res = run("report", path, "--format", "json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


# -- files --------------------------------------------------------------------------

def test_capture_never_written_through_a_planted_symlink(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    os.chmod(victim, 0o644)
    link = tmp_path / "leak.kcap"
    os.symlink(victim, link)
    for extra in ((), ("--force",)):
        res = run("record", "-p", os.getpid(), "--duration", "1", "-w", link, *extra)
        one_line_error(res, 2, "symlink")
    assert victim.read_text() == "precious" and stat.S_IMODE(os.stat(victim).st_mode) == 0o644
    for special in ("/proc/version", "/dev/full"):
        before = os.stat(special)
        one_line_error(run("-p", os.getpid(), "--duration", "1", "-w", special), 2, special)
        after = os.stat(special)
        assert (after.st_mode, after.st_uid) == (before.st_mode, before.st_uid)


def test_a_file_someone_else_made_is_refused_then_replaced_not_reused(tmp_path):
    planted = tmp_path / "leak.kcap"
    planted.write_text("theirs")
    os.chown(planted, 65534, 65534)
    os.chmod(planted, 0o666)
    keep = tmp_path / "their-link"
    os.link(planted, keep)
    one_line_error(run("record", "-p", os.getpid(), "--duration", "1", "-w", planted), 2, "exists")
    res = run("record", "-p", os.getpid(), "--duration", "1", "--interval", "0.5s", "-w", planted, "--force")
    assert res.returncode == 0, res.stderr
    st = os.stat(planted)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o600)  # a new file of ours, not theirs reused
    assert keep.read_text() == "theirs" and os.stat(keep).st_uid == 65534
    assert snapshots(planted)["snapshots"] >= 1


def test_two_sessions_never_share_a_capture(tmp_path, workloads):
    path = tmp_path / "c.kcap"
    first = Tracer("record", "-p", os.getpid(), "-w", path, "--interval", "0.3s").start()
    one_line_error(run("record", "-p", os.getpid(), "--duration", "1", "-w", path), 2, "exists")
    one_line_error(run("record", "-p", os.getpid(), "--duration", "1", "-w", path, "--force"), 2,
                   "another kleaktrace session is writing")
    assert first.stop() == 0, first.stderr
    assert snapshots(path)["snapshots"] >= 1


def test_output_gives_clean_json_beside_a_chatty_command(tmp_path):
    out = tmp_path / "r.json"
    res = run("-c", "sh -c 'echo hello; echo world'", "--format", "json", "--min-age", "0", "--output", out)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "hello\nworld\n"  # the command keeps stdout; the report went to the file
    reports = [json.loads(line) for line in out.read_text().splitlines()]
    assert reports and reports[-1]["schema"] == "kleaktrace.report/1"
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    one_line_error(run("-c", "true", "--output", out), 2, "exists")


def test_a_capture_survives_a_full_disk(tmp_path, workloads):
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(small)], check=True)
    try:
        w = workloads(churn=0, sockets=0, files=0, rate=10, for_s=30)
        cap = small / "c.kcap"
        t = Tracer("-p", w.pid, "--format", "json", "--min-age", "0", "-w", cap, "0.3", "--duration", "5").start()
        w.go()
        time.sleep(1.2)
        filler = small / "fill"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k"], capture_output=True)  # until ENOSPC
        time.sleep(1.5)
        filler.unlink()
        assert t.wait(timeout=60) == 0, t.stderr
        assert "Traceback" not in t.stderr
        warned = [ln for ln in t.stderr.splitlines() if "cannot write a snapshot (No space left on device)" in ln]
        assert len(warned) == 1, t.stderr
        assert "snapshots could not be written" in t.stderr
        assert len(t.reports()) >= 10  # the live reports went on meanwhile
        offline = snapshots(cap)  # whole lines only: readable, with snapshots before and after
        assert offline["snapshots"] >= 4 and count(offline, "sock_inode_cache") > 0
    finally:
        subprocess.run(["umount", str(small)])


# -- what others name --------------------------------------------------------------

def test_process_names_with_escapes_are_shown_not_obeyed(workloads):
    w = workloads(churn=0, sockets=5, files=0, name="\x1b[2J\x1b]0;x\x07e")
    t = Tracer("-p", w.pid, "--min-age", "100ms").start()
    w.go()
    w.leaked()
    time.sleep(0.5)
    assert t.stop() == 0, t.stderr
    assert "sock_inode_cache: 10 objects" in t.stdout, t.stdout
    assert "\x1b" not in t.stdout and "\x07" not in t.stdout
    assert "\\x1b[2J\\x1b]0;x\\x07e" in t.stdout


# -- signals -------------------------------------------------------------------------

def test_sigterm_while_starting_is_one_line_and_leaves_nothing_attached(tmp_path):
    before = bpf_prog_count()
    proc = subprocess.Popen(CLI + ["-p", str(os.getpid()), "-w", str(tmp_path / "c.kcap")], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)  # BCC is compiling
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err.strip().splitlines()[-1] == "kleaktrace: SIGTERM while starting: nothing was traced", err
    assert "Traceback" not in err and out == ""
    assert bpf_prog_count() == before
    assert not (tmp_path / "c.kcap").exists()  # nothing half made is left behind


def test_second_ctrl_c_still_gets_the_final_report(workloads, tmp_path):
    w = workloads(churn=0, sockets=15, files=0)
    cap = tmp_path / "c.kcap"
    t = Tracer("-p", w.pid, "--format", "json", "--min-age", "0", "-w", cap).start()
    w.go()
    w.leaked()
    time.sleep(0.3)
    t.proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    t.proc.send_signal(signal.SIGINT)
    assert t.wait() == 0, t.stderr
    assert count(t.reports()[-1], "sock_inode_cache") == 30
    assert count(snapshots(cap), "sock_inode_cache") == 30  # the capture got the final snapshot


def test_sighup_ends_with_a_final_report_and_snapshot(workloads, tmp_path):
    w = workloads(churn=0, sockets=7, files=0)
    cap = tmp_path / "c.kcap"
    t = Tracer("-p", w.pid, "--format", "json", "--min-age", "0", "-w", cap).start()
    w.go()
    w.leaked()
    time.sleep(0.3)
    assert t.stop(signal.SIGHUP) == 0, t.stderr
    assert count(t.reports()[-1], "sock_inode_cache") == 14
    assert count(snapshots(cap), "sock_inode_cache") == 14


# -- commands that misbehave ----------------------------------------------------------

def test_children_session_waits_for_what_the_command_forked():
    # sh starts the leaker in the background and exits at once
    leaker = f"{WORKLOAD} --churn 0 --sockets 20 --files 0 --hold 30"
    began = time.monotonic()
    res = run("-c", f"sh -c '{leaker} &'", "--children", "--duration", "4", "--format", "json", "--min-age", "0")
    took = time.monotonic() - began
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout.splitlines()[-1])
    assert count(report, "sock_inode_cache") == 40, report["totals"]
    assert "targets exited" not in res.stderr and took >= 4
    subprocess.run(["pkill", "-f", "bpftrace_leak.sessions.workload --churn 0 --sockets 20 --files 0 --hold 30"])


def test_children_session_ends_when_the_last_of_them_exits():
    leaker = f"{WORKLOAD} --churn 0 --sockets 5 --files 0 --hold 2"
    began = time.monotonic()
    res = run("-c", f"sh -c '{leaker} &'", "--children", "--duration", "60", "--format", "json")
    assert res.returncode == 0, res.stderr
    assert "targets exited" in res.stderr and time.monotonic() - began < 45


def test_a_command_that_ignores_sigterm_cannot_hold_the_session():
    began = time.monotonic()
    res = run("-c", "sh -c 'trap \"\" TERM; while :; do sleep 0.1; done'", "--duration", "2", "--format", "json",
              timeout=60)
    assert res.returncode == 0, res.stderr
    assert time.monotonic() - began < 30  # --duration, then SIGTERM, then SIGKILL after a grace period
    assert json.loads(res.stdout.splitlines()[-1])["schema"] == "kleaktrace.report/1"


# -- input that means nothing ----------------------------------------------------------

def test_meaningless_input_is_one_line_each(tmp_path):
    one_line_error(run("-c", ""), 2, "-c needs a command")
    one_line_error(run("-c", "sh -c 'unclosed"), 2, "-c: cannot parse the command")
    one_line_error(run("--duration", "0"), 2, "--duration must be more than 0")
    one_line_error(run("-p", os.getpid(), "0"), 2, "INTERVAL must be more than 0")
    one_line_error(run("record", "-p", os.getpid(), "-w", tmp_path / "c", "--interval", "0"), 2,
                   "--interval must be more than 0")
    one_line_error(run("frobnicate"), 2, "no such command 'frobnicate'")
    one_line_error(run("-p", 2, "--duration", "1"), 2, "is a kernel thread")
    zombie = subprocess.Popen(["true"])
    while open(f"/proc/{zombie.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
        time.sleep(0.01)
    one_line_error(run("-p", zombie.pid, "--duration", "1"), 2, "has exited (a zombie)")
    zombie.wait()
    assert not (tmp_path / "c").exists()


def test_capabilities_without_tracefs_access_are_told_so():
    res = as_user(65534, ["-p", "1", "--duration", "1"], caps="+bpf,+perfmon")
    one_line_error(res, 1, "tracefs at /sys/kernel/tracing is not readable by this user")


# -- stacks ------------------------------------------------------------------------------

def test_stack_collisions_are_not_called_a_full_table(workloads):
    from bpftrace_leak.reporter import render_text
    for slots in (64, 100):
        t = Tracer("--stacks", "all", "--stack-slots", slots, "--format", "json", "--min-age", "0").start()
        w = workloads(churn=3000, sockets=10, files=10)
        w.go()
        w.leaked()
        subprocess.run(["sh", "-c", "ls -R /usr/lib/python3 >/dev/null; cat /proc/self/status >/dev/null"])
        assert t.stop() == 0, t.stderr
        report = t.reports()[-1]
        totals = report["totals"]
        assert totals["stack_collisions"] > 0, totals
        text = render_text(report)
        if slots == 64:  # a power of two: as many buckets as entries, never full
            assert totals["stack_table_full"] == 0, totals
            assert "the stack table is full" not in text and "held another stack" in text
        else:  # 100 entries in 128 buckets: it fills
            assert totals["stack_table_full"] > 0, totals
            assert "the stack table is full" in text


# -- the second sweep (issue #24) --------------------------------------------------------

def test_output_and_capture_compared_by_file_not_spelling(tmp_path):
    """Item 3: --output r.out -w ./r.out --force was accepted: the report
    replaced the capture at close."""
    (tmp_path / "sub").mkdir()
    for out, cap in (("r.out", "./r.out"), ("r.out", str(tmp_path / "sub" / ".." / "r.out"))):
        one_line_error(run("-p", os.getpid(), "--duration", "1", "--output", out, "-w", cap, "--force",
                           cwd=tmp_path, env=dict(os.environ, PYTHONPATH=ROOT)), 2,
                       "--output and -w name the same file")
    assert os.listdir(tmp_path) == ["sub"]


def test_cgroup_paths_outside_the_hierarchy_are_refused():
    """Item C: --cgroup .., ../.. (/sys/fs) and '' traced the whole system."""
    for bad in ("..", "../..", "", "/../.."):
        one_line_error(run("--cgroup", bad, "--duration", "1"), 2, "no such cgroup")
    t = Tracer("--cgroup", "/", "--duration", "1").start()
    assert t.wait(60) == 0, t.stderr
    assert "tracing cgroup / (and below)" in t.stderr, t.stderr
