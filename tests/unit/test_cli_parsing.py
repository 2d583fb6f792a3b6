import click
import pytest

from bpftrace_leak.cli_options import Duration


@pytest.mark.parametrize("text,unit,seconds", [
    ("500ms", "s", 0.5), ("30s", "s", 30), ("5m", "s", 300), ("8h", "s", 28800),
    ("1000", "ms", 1.0), ("2", "s", 2), ("1.5s", "ms", 1.5),
])
def test_duration(text, unit, seconds):
    assert Duration(unit).convert(text, None, None) == pytest.approx(seconds)


def test_bad_duration():
    with pytest.raises(click.BadParameter):
        Duration().convert("soon", None, None)


def test_durations_are_bounded():
    for text in ("9" * 400, "400d", "1e400"):
        with pytest.raises(click.BadParameter):
            Duration().convert(text, None, None)
        with pytest.raises(click.BadParameter):
            Duration("ms", to="ms").convert(text, None, None)


@pytest.mark.parametrize("args", [["-p", "1", "1ms", "3"], ["serve", "--interval", "1ms"],
                                  ["record", "-p", "1", "-w", "/nonexistent/x", "--interval", "50ms"]])
def test_intervals_have_a_floor(args):
    """Issue #24 F: a 1 ms interval took 98% of a core."""
    import subprocess
    import sys
    from conftest import ROOT
    res = subprocess.run([sys.executable, "-m", "bpftrace_leak.cli", *args], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2 and "must be at least 100ms" in res.stderr and "Traceback" not in res.stderr, \
        res.stderr


def test_a_scan_limit_under_a_second_is_refused():
    from bpftrace_leak.config import Config
    from bpftrace_leak.errors import KleakError
    Config(pids=(1,), scan_limit_s=1).validate()
    with pytest.raises(KleakError, match="--scan-limit must be at least 1s"):
        Config(pids=(1,), scan_limit_s=0.5).validate()


def test_cgroup_paths_out_of_the_hierarchy(tmp_path):
    """Issue #24 C: '..', '../..' and '' were accepted and traced everything."""
    from bpftrace_leak.kernel.cgroups import resolve
    root = tmp_path / "memory"
    (root / "app" / "worker").mkdir(parents=True)
    for bad in ("", "  ", "..", "../..", "/..", "app/../..", str(tmp_path), "app/nope"):
        assert resolve(bad, str(root)) is None, bad
    assert resolve("app", str(root)) == str(root / "app")
    assert resolve("/app/worker", str(root)) == str(root / "app" / "worker")
    assert resolve(str(root / "app"), str(root)) == str(root / "app")
    assert resolve("/", str(root)) == str(root)
