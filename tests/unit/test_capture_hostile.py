"""Captures handed over by someone else: every malformed one is a one-line error
with exit status 2, never a traceback or unbounded memory (`kleaktrace report`)."""

import json
import os
import resource
import subprocess
import sys

import pytest
from capture_data import write_capture

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def report(path, *args, memory_mb=None):
    def limit():
        if memory_mb:
            resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
    return subprocess.run([sys.executable, "-m", "bpftrace_leak.cli", "report", str(path), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, preexec_fn=limit)


def one_line_error(res, text):
    assert res.returncode == 2, (res.stdout[-500:], res.stderr[-2000:])
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kleaktrace: ") and text in lines[0], res.stderr[-2000:]
    assert "Traceback" not in res.stderr


def lines_of(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def rewrite(path, docs):
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))


@pytest.fixture
def cap(tmp_path):
    return write_capture(tmp_path / "c.kcap")


def edit_last(cap, change):
    docs = lines_of(cap)
    change(docs[-1])
    rewrite(cap, docs)
    return cap


@pytest.mark.parametrize("change,field", [
    (lambda s: s["report"]["groups"][0].pop("objects"), "groups[0].objects"),
    (lambda s: s["report"].pop("totals"), "no 'totals'"),
    (lambda s: s["report"]["groups"][0].update(objects="500"), "groups[0].objects: not a count"),
    (lambda s: s["report"].update(min_age_ms="<img src=x onerror=alert(1)>"), "min_age_ms: not a count"),
    (lambda s: s["report"]["groups"][1].update(bytes=-5), "groups[1].bytes: not a count"),
    (lambda s: s["report"]["groups"][0].update(stack=["f+0x1"] * 2000), "groups[0].stack"),
    (lambda s: s["report"]["groups"][0].update(stack="sock_alloc_inode"), "groups[0].stack"),
    (lambda s: s["report"]["groups"][0].update(comms=[7]), "groups[0].comms"),
    (lambda s: s["report"]["totals"].update(allocs=True), "totals.allocs: not a count"),
    (lambda s: s.update(report=None), "report: not an object"),
    (lambda s: s["report"].update(groups={"a": 1}), "groups: not a list"),
    (lambda s: s["report"].update(duration_s=[1]), "duration_s: not a number"),
    (lambda s: s["report"].update(refs=[{"object": "dentry"}]), "refs[0]"),
    (lambda s: s["report"].update(sockets=[{"pid": 1}]), "sockets[0]"),
])
def test_bad_fields_name_the_field(cap, change, field):
    for fmt in ("text", "html"):
        one_line_error(report(edit_last(cap, change) if fmt == "text" else cap, "--format", fmt), field)


def test_bad_field_in_an_earlier_snapshot(cap):
    docs = lines_of(cap)
    docs[2]["report"]["groups"][0]["bytes"] = "many"
    rewrite(cap, docs)
    one_line_error(report(cap), "corrupt capture at line 3: groups[0].bytes: not a count")


@pytest.mark.parametrize("number", ["1e400", "-1e400", "NaN", "Infinity", "-Infinity"])
def test_numbers_json_cannot_hold(cap, number):
    text = cap.read_text().splitlines()
    text[-1] = text[-1].replace('"duration_s":5', f'"duration_s":{number}', 1)
    assert number in text[-1]
    cap.write_text("\n".join(text) + "\n")
    one_line_error(report(cap), "corrupt capture at line 6")


def test_deep_nesting(cap):
    with open(cap, "a") as f:
        f.write("[" * 100_000 + "\n")
    one_line_error(report(cap), "corrupt capture at line 7: not JSON")


def test_deep_nesting_in_the_header(tmp_path):
    path = tmp_path / "deep.kcap"
    path.write_text("[" * 100_000 + "\n")
    one_line_error(report(path), "not a kleaktrace capture")


def test_dev_zero_is_refused_at_once():
    one_line_error(report("/dev/zero", memory_mb=1024), "not a regular file")


def test_endless_line_is_bounded(tmp_path):
    # a FIFO fed by a writer that never sends a newline: memory stays bounded
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = subprocess.Popen(["sh", "-c", f"exec cat /dev/zero > {fifo}"])
    try:
        one_line_error(report(fifo, memory_mb=1024), "longer than 256 MiB")
    finally:
        writer.kill()
        writer.wait()


def test_header_with_wrong_types(tmp_path):
    path = write_capture(tmp_path / "c.kcap")
    docs = lines_of(path)
    docs[0]["targets"] = "all"
    rewrite(path, docs)
    one_line_error(report(path), "corrupt capture header: header.targets: not a list")


def test_binary_garbage(tmp_path):
    path = tmp_path / "garbage.kcap"
    path.write_bytes(os.urandom(4096).replace(b"\n", b"x") + b"\n")
    one_line_error(report(path), "not a kleaktrace capture")


def test_missing_capture(tmp_path):
    one_line_error(report(tmp_path / "nope.kcap"), "cannot read capture")


def test_diff_of_bad_capture(cap, tmp_path):
    bad = tmp_path / "bad.kcap"
    bad.write_text("{}\n")
    res = subprocess.run([sys.executable, "-m", "bpftrace_leak.cli", "diff", str(cap), str(bad)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    one_line_error(res, "not a kleaktrace capture")
