"""Fleet mode: ``kleaktrace serve`` scraped by a real Prometheus server, and
pprof profiles read by ``go tool pprof``, on workloads whose leaks are known."""

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from conftest import ROOT, Tracer

CLI = [sys.executable, "-m", "bpftrace_leak.cli"]
N = 300  # socketpairs: 2N socket inodes


def slab_objsize(cache: str) -> int:
    with open("/proc/slabinfo") as f:
        for line in f:
            if line.split()[0] == cache:
                return int(line.split()[3])
    raise LookupError(cache)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(*args) -> tuple[Tracer, str]:
    t = Tracer("serve", "--listen", "127.0.0.1:0", *args).start()
    line = t.err.wait_for("serving http://")
    return t, re.search(r"http://(\S+)/metrics", line).group(1)


def metrics(address: str) -> dict[tuple, float]:
    """{(name, ((label, value), ...)): value} of /metrics."""
    from prometheus_client.parser import text_string_to_metric_families
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as r:
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def socket_objects(m: dict) -> float:
    return sum(v for (name, labels), v in m.items()
               if name == "kleaktrace_outstanding_objects" and dict(labels).get("cache") == "sock_inode_cache")


class Prometheus:
    """Debian's prometheus on loopback, scraping ``target`` every second."""

    def __init__(self, target: str, folder):
        port = free_port()
        self.api = f"http://127.0.0.1:{port}/api/v1"
        config = folder / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                          "scrape_configs:\n  - job_name: kleaktrace\n"
                          f"    static_configs:\n      - targets: ['{target}']\n")
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def query(self, expr: str) -> list:
        url = f"{self.api}/query?" + urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return json.load(r)["data"]["result"]
        except OSError:  # not listening yet
            return []

    def value(self, expr: str, until, timeout=60) -> float | None:
        """The query's single value once ``until(value)`` holds (None: never)."""
        end = time.monotonic() + timeout
        got = None
        while time.monotonic() < end:
            result = self.query(expr)
            if result:
                got = float(result[0]["value"][1])
                if until(got):
                    return got
            time.sleep(0.5)
        return got

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.mark.skipif(not shutil.which("prometheus"), reason="no prometheus: ./setup --tests installs it")
def test_prometheus_scrapes_the_leaked_sockets(workloads, tmp_path):
    w = workloads(churn=20000, sockets=N, files=0)
    t, address = start_serve("-p", w.pid, "--sample-bytes", "0", "--interval", "1s", "--min-age", "500ms")
    prom = Prometheus(address, tmp_path)
    try:
        w.go()
        w.leaked()
        truth = 2 * N
        near = lambda v: abs(v - truth) <= 0.05 * truth  # noqa: E731
        objects = prom.value('sum(kleaktrace_outstanding_objects{cache="sock_inode_cache"})', near)
        # on failure, the data-quality counters say which mechanism let phantoms through
        assert objects is not None and near(objects), (objects, t.err.lines, {
            name: v for (name, _labels), v in metrics(address).items()
            if name.endswith("_total") or name == "kleaktrace_unverified_objects"})
        size = slab_objsize("sock_inode_cache")
        nbytes = prom.value('sum(kleaktrace_outstanding_bytes{cache="sock_inode_cache"})',
                            lambda v: abs(v - truth * size) <= 0.05 * truth * size)
        assert abs(nbytes - truth * size) <= 0.05 * truth * size, (nbytes, truth * size)
        # the churned 40,000 were counted as frees, and the call site is a label of its own
        assert prom.value("kleaktrace_frees_total", lambda v: v > 40_000) > 40_000
        sites = prom.query('kleaktrace_site_outstanding_bytes{cache="sock_inode_cache"}')
        assert sites and all(s["metric"]["site"] == "sock_alloc_inode" for s in sites), sites
        assert prom.value("kleaktrace_sampling_bytes", lambda v: True) == 0
    finally:
        prom.stop()
        w.end()
        t.stop()
    assert t.proc.returncode == 0, t.stderr


def test_sampled_estimate_is_unbiased(workloads):
    """--sample-bytes 4096 keeps a ~830-byte socket inode with p ~ 0.2: 4000
    of them give some 800 kept, an estimate within 4% (one sigma); 15% is
    four sigmas."""
    pairs = 2000
    w = workloads(churn=0, sockets=pairs, files=0)
    t, address = start_serve("-p", w.pid, "--sample-bytes", "4096", "--interval", "1s", "--min-age", "0")
    try:
        w.go()
        w.leaked()
        time.sleep(2.5)
        m = metrics(address)
        estimate = socket_objects(m)
        assert abs(estimate - 2 * pairs) <= 0.15 * 2 * pairs, estimate
        assert m[("kleaktrace_sampling_bytes", ())] == 4096
        # it did sample: unsampled, every outstanding object is a recorded allocation
        kept = m[("kleaktrace_allocations_total", ())]
        outstanding = sum(v for (name, _), v in m.items() if name == "kleaktrace_outstanding_objects")
        assert kept < 0.6 * outstanding, (kept, outstanding)
    finally:
        w.end()
        t.stop()


def test_holder_scan_metrics_every_scan_every(workloads):
    """serve scans for holders every --scan-every (10 minutes by default, not
    at its first report): the leaked sockets are held by their fd tables, so
    none of them is an orphan, and the scan's cost is a metric."""
    w = workloads(churn=0, sockets=N, files=0)
    t, address = start_serve("-p", w.pid, "--sample-bytes", "0", "--interval", "1s", "--min-age", "0",
                             "--scan-every", "3s")
    try:
        w.go()
        w.leaked()
        deadline = time.monotonic() + 60
        orphans: dict = {}
        while time.monotonic() < deadline and "sock_inode_cache" not in orphans:
            time.sleep(0.5)
            m = metrics(address)
            # a scan after the leak: its groups (sockets among them) get a row each, 0 or more
            orphans = {dict(labels).get("cache"): v for (name, labels), v in m.items()
                       if name == "kleaktrace_orphaned_objects"}
        assert orphans.get("sock_inode_cache") == 0, (orphans, t.err.lines)
        assert m[("kleaktrace_scan_read_bytes", ())] > 1 << 20 and m[("kleaktrace_scan_seconds", ())] > 0
    finally:
        w.end()
        t.stop()
    assert t.proc.returncode == 0, t.stderr


def test_serve_refuses_a_public_address_unless_exposed():
    res = subprocess.run(CLI + ["serve", "--listen", "0.0.0.0:9464"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 2 and "--expose" in res.stderr and "Traceback" not in res.stderr


def test_serve_port_in_use_is_one_line():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = subprocess.run(CLI + ["serve", "--listen", f"127.0.0.1:{port}"], cwd=ROOT, capture_output=True,
                             text=True, timeout=120)
    assert res.returncode == 1 and "Address already in use" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


# ---- pprof --------------------------------------------------------------------

def record(workloads, path, sockets):
    w = workloads(churn=2000, sockets=sockets, files=0)
    t = Tracer("record", "-p", w.pid, "-w", path, "--min-age", "0", "--interval", "1s").start()
    w.go()
    w.leaked()
    time.sleep(1.5)
    assert t.stop() == 0, t.stderr
    w.end()


def pprof_top(*args) -> str:
    res = subprocess.run(["go", "tool", "pprof", "-top", *map(str, args)], capture_output=True, text=True,
                         env=dict(os.environ, HOME=os.environ.get("HOME", "/root")), timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout


def top_rows(text: str) -> list[tuple[float, str]]:
    """(flat, function) of ``go tool pprof -top``'s rows, in its order."""
    rows = []
    for line in text.splitlines():
        cols = line.split()
        if len(cols) >= 6 and cols[1].endswith("%") and cols[2].endswith("%"):
            rows.append((float(re.match(r"[-\d.]+", cols[0]).group()) * _unit(cols[0]), cols[5]))
    return rows


def _unit(value: str) -> float:
    suffix = re.sub(r"[-\d.]", "", value)
    return {"": 1, "B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9, "k": 1e3}.get(suffix, 1)


@pytest.mark.skipif(not shutil.which("go"), reason="no go: ./setup --tests installs golang-go")
def test_go_tool_pprof_reads_profiles_from_captures(workloads, tmp_path):
    small, large = 100, 300
    for name, n in (("before", small), ("after", large)):
        record(workloads, tmp_path / f"{name}.kcap", n)
        res = subprocess.run(CLI + ["report", str(tmp_path / f"{name}.kcap"), "--format", "pprof",
                                    "-o", str(tmp_path / f"{name}.pb.gz")], cwd=ROOT, capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
    after = tmp_path / "after.pb.gz"
    # by space (the profile's default) a stack of the leak leads: a pair is
    # two UNIX socks (sk_prot_alloc) and two socket inodes, then files and dentries
    leak = ("sk_prot_alloc", "sock_alloc_inode")
    rows = top_rows(pprof_top(after))
    assert rows and rows[0][1] in leak and rows[1][1] in leak, rows
    objects = dict((f, v) for v, f in top_rows(pprof_top("-sample_index=inuse_objects", after)))
    assert [objects[f] for f in leak] == [2 * large] * 2, objects
    # the growth between the two captures
    diff = dict((f, v) for v, f in top_rows(pprof_top("-sample_index=inuse_objects", "-diff_base",
                                                      tmp_path / "before.pb.gz", after)))
    assert [diff[f] for f in leak] == [2 * (large - small)] * 2, diff


# ---- always-on -----------------------------------------------------------------

CHURN = r"""
import os, socket, subprocess, sys, time
end, runs = time.monotonic() + float(sys.argv[1]), 0
while time.monotonic() < end:
    subprocess.run(["true"])  # process churn: an exited process a run
    runs += 1
    for _ in range(20):
        a, b = socket.socketpair(); a.close(); b.close()
    with open("/proc/self/status") as f:
        f.read()
print(runs)
"""


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def exited_comm_entries() -> int:
    out = subprocess.run(["bpftool", "map", "dump", "name", "exited_comms", "-j"], capture_output=True, text=True)
    return len(json.loads(out.stdout or "[]")) if out.returncode == 0 else -1


def test_short_soak_keeps_memory_flat():
    """Serve system-wide (its defaults: sampled) for 90 s under process and
    socket churn, scraped every second: its RSS after a 30 s warm-up stays
    within 10%, and the names of exited processes are pruned. The 30-minute
    run is in the README (bench/soak.py)."""
    soak_s = float(os.environ.get("KLEAKTRACE_SOAK_S", "90"))
    t, address = start_serve("--interval", "1s")
    churn = subprocess.Popen([sys.executable, "-c", CHURN, str(soak_s)], stdout=subprocess.PIPE, text=True)
    try:
        began = time.monotonic()
        rss = []
        exited = []
        while churn.poll() is None:
            metrics(address)
            if time.monotonic() - began > 30:
                rss.append(rss_kb(t.proc.pid))
                exited.append(exited_comm_entries())
            time.sleep(1)
        runs = int(churn.stdout.read())
        assert len(rss) > 10
        assert max(rss) <= 1.10 * min(rss), (min(rss), max(rss))
        # thousands of processes exited; the names kept are those of the last
        # second or two (unpruned, all of them: the map fills at 16384)
        assert runs > 1000 and 0 <= max(exited) < 0.25 * runs, (runs, exited)
    finally:
        churn.kill()
        churn.wait()
        t.stop()
    assert t.proc.returncode == 0, t.stderr


# ---- a hostile local user (issue #24 A) ---------------------------------------------

HOARD = r"""
import select, socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def connect():
    try:
        return socket.create_connection((host, port), timeout=2)
    except OSError:
        return None
held = [connect() for _ in range(n)]
print("holding", sum(s is not None for s in held), flush=True)
while True:  # keep n connections open: the server closes idle ones, we open them again
    live = [s for s in held if s is not None]
    closed = select.select(live, [], [], 0.5)[0] if live else []
    for s in closed:
        s.close()
    held = [s for s in held if s is not None and s not in closed]
    held += [connect() for _ in range(n - len(held))]
"""


def scrape_seconds(address: str) -> tuple[float, float]:
    """(how long one /metrics took, the report timestamp it showed)."""
    t0 = time.monotonic()
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as r:
        text = r.read().decode()
    took = time.monotonic() - t0
    stamp = next(float(line.split()[1]) for line in text.splitlines()
                 if line.startswith("kleaktrace_report_timestamp_seconds"))
    return took, stamp


def test_idle_connections_of_a_user_cannot_kill_serve():
    """An unprivileged user holds 1,000 idle connections to serve, which runs
    under systemd's default 1,024 open files: serve keeps reporting and
    answers everyone else's /metrics as fast as before the hoard, none
    past 500 ms. (Before: a thread and a descriptor per connection, no
    timeout; the next report died with EMFILE and a traceback.)"""
    t, address = start_serve("--interval", "1s")
    subprocess.run(["prlimit", f"--pid={t.proc.pid}", "--nofile=1024:1024"], check=True)
    # the same scrapes before the hoard: a scrape that meets a report being
    # made waits for it (the interpreter's lock), 90-160 ms on a slower host
    # of this kind, where a fixed "all but one within 100 ms" failed with no
    # hoard at all
    before = []
    end = time.monotonic() + 8
    while time.monotonic() < end:
        before.append(scrape_seconds(address)[0])
        time.sleep(0.5)
    host, port = address.rsplit(":", 1)
    hoarder = subprocess.Popen(["prlimit", "--nofile=4096:4096", "setpriv", "--reuid=65534", "--regid=65534",
                                "--clear-groups", sys.executable, "-c", HOARD, host, port, "1000"],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert hoarder.stdout.readline().startswith("holding 1000")
        took, stamps = [], []
        end = time.monotonic() + 20
        while time.monotonic() < end:
            a, stamp = scrape_seconds(address)
            took.append(a)
            stamps.append(stamp)
            time.sleep(0.5)
        assert t.proc.poll() is None, t.err.lines
        # the hoard must delay none: half the scrapes as fast as before it
        # (or within 100 ms), none past 500 ms
        assert statistics.median(took) <= max(0.1, 1.5 * statistics.median(before)), (sorted(before), sorted(took))
        assert max(took) < 0.5, sorted(took)[-5:]
        assert len(set(stamps)) >= 10 and stamps == sorted(stamps), stamps  # a report a second goes on
    finally:
        hoarder.kill()
        hoarder.wait()
        t.stop()
    assert t.proc.returncode == 0, t.stderr
    assert "Traceback" not in t.stderr and "failed" not in t.stderr, t.stderr


def test_serve_on_ipv6_loopback():
    """Item E: --listen [::1]:PORT passed the loopback check, then failed."""
    t = Tracer("serve", "--listen", "[::1]:0", "--interval", "1s").start()
    try:
        line = t.err.wait_for("serving http://")
        address = re.search(r"http://(\S+)/metrics", line).group(1)
        assert address.startswith("[::1]:")
        deadline = time.monotonic() + 30
        while scrape_seconds(address)[1] == 0 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert scrape_seconds(address)[1] > 0
    finally:
        t.stop()
    assert t.proc.returncode == 0, t.stderr
