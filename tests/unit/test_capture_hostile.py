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


# -- the second sweep (issue #24) ----------------------------------------------------------

def run_cli(*args, memory_mb=None, timeout=60, **kw):
    def limit():
        if memory_mb:
            resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
    kw.setdefault("capture_output", True)
    return subprocess.run([sys.executable, "-m", "bpftrace_leak.cli", *map(str, args)], cwd=ROOT,
                          text=True, timeout=timeout, preexec_fn=limit, **kw)


ESC = "\u001b]0;PWNED\u0007\u001b[2J"


def test_census_keys_and_echoed_strings_are_escaped(cap, tmp_path):
    """Item 2: escapes in a census's keys, a capture's schema string and a
    file name reach the terminal spelled out, never raw."""
    def poison(s):
        c = s["report"]["census"]
        c["pinned_by"][ESC] = 1
        c["references"][ESC] = 1
        c["references"]["unexplained"] = 1
        c["mounts"][0]["explained"][ESC] = 1
    res = report(edit_last(cap, poison))
    assert res.returncode == 0, res.stderr
    assert "\x1b" not in res.stdout and "\\x1b]0;PWNED" in res.stdout
    docs = lines_of(cap)
    docs[0]["schema"] = "kleaktrace.capture/" + ESC
    rewrite(cap, docs)
    res = report(cap)
    one_line_error(res, "is not supported")
    assert "\x1b" not in res.stderr
    named = tmp_path / f"x{ESC}.kcap"
    res = report(named)
    one_line_error(res, "cannot read capture")
    assert "\x1b" not in res.stderr and "\\x1b" in res.stderr


@pytest.mark.parametrize("stack", [[["x"]], [{"f": 1}], ["ok+0x1", ["x"]]])
def test_unhashable_stack_frames(cap, stack):
    """Item 6: a frame that is a list or an object, in every format and diff."""
    edit_last(cap, lambda s: s["report"]["groups"][0].update(stack=stack))
    for fmt in ("text", "json", "folded", "html", "pprof"):
        one_line_error(report(cap, "--format", fmt, "-o", str(cap) + "." + fmt), "stack")
    one_line_error(run_cli("diff", cap, cap), "stack")


@pytest.mark.parametrize("change,field", [
    (lambda s: s["report"]["groups"][0].update(unverified_objects=5), "without 'kernel_active'"),
    (lambda s: s["report"].update(sockets=[{"pid": 1, "family": "inet", "state": "x", "count": 1,
                                            "examples": [{"inode": 1, "sport": 80}]}]), "without 'dport'"),
    (lambda s: s["report"].update(ranked_by="growth", snapshots=2, growth_window_s="x"), "growth_window_s"),
    (lambda s: s["report"].update(ranked_by="growth", snapshots=2, growth_window_s=[1]), "growth_window_s"),
    (lambda s: s["report"].update(ranked_by="growth"), "without 'snapshots'"),
    (lambda s: s["report"].update(ranked_by="size"), "ranked_by"),
    (lambda s: s["report"]["groups"][0].update(bytes_per_h="fast", objects_per_h=1), "bytes_per_h"),
    (lambda s: s["report"]["groups"][0].update(cgroup_own="yes"), "cgroup_own"),
])
def test_fields_the_text_report_reads_are_checked(cap, change, field):
    """Item 7: a KeyError or a format error in the text renderer became a traceback."""
    one_line_error(report(edit_last(cap, change)), field)


def test_lone_surrogates_render_everywhere(cap, tmp_path):
    """Item 8: "\\ud800" in the kernel, a cache and a frame: HTML and pprof
    failed to encode it; every format now spells it out."""
    text = cap.read_text().splitlines()
    doc = json.loads(text[-1])
    doc["report"]["kernel"] = "6.18\ud800"
    doc["report"]["groups"][0]["cache"] = "sock\ud800"
    doc["report"]["groups"][0]["stack"][0] = "f\udfff+0x1"
    text[-1] = json.dumps(doc)  # ensure_ascii: the JSON holds \\ud800 escapes
    cap.write_text("\n".join(text) + "\n")
    for fmt in ("text", "json", "folded", "html", "pprof"):
        out = tmp_path / f"r.{fmt}"
        res = report(cap, "--format", fmt, "-o", out)
        assert res.returncode == 0 and out.stat().st_size > 0, (fmt, res.stderr)
    assert "\\ud800" in (tmp_path / "r.html").read_text()


def test_pprof_numbers_beyond_int64(cap, tmp_path):
    """Item 9: a duration of 1e10 s and culled sums over 2**63 made pprof fail."""
    def huge(s):
        s["report"]["duration_s"] = 1e10
        for g in s["report"]["groups"]:
            g.update(cache="same", objects=2**62, bytes=2**62)
    edit_last(cap, huge)
    res = report(cap, "--format", "pprof", "--cull", "cache", "-o", tmp_path / "p.pb.gz")
    assert res.returncode == 0, res.stderr
    from bpftrace_leak.output.pprof import Profile
    import gzip
    prof = Profile()
    prof.ParseFromString(gzip.decompress((tmp_path / "p.pb.gz").read_bytes()))
    assert prof.sample[0].value[0] == 2**63 - 1 and prof.duration_nanos == 2**63 - 1


def test_a_line_of_many_small_values_is_refused_before_parsing(tmp_path):
    """Item 10: a 60 MB line of {} took 1.56 GB; a 255 MB one died with
    MemoryError. Both are refused at once, in little memory."""
    path = write_capture(tmp_path / "c.kcap")
    with open(path, "a") as f:
        f.write('{"type":"snapshot","t_s":9,"report":{"groups":[' + "{}," * 20_000_000 + "{}]}}\n")
    one_line_error(report(path, memory_mb=700), "more than 4,000,000 values in one line")
    path.write_text(path.read_text().splitlines()[0] + "\n" + "[" + "0," * (127 << 20) + "0]\n")
    one_line_error(report(path, memory_mb=900), "more than 4,000,000 values in one line")


def test_many_snapshots_then_one_large_is_linear(tmp_path):
    """Items 10 and 14: 100,000 empty snapshots, then one of 20,000 groups,
    asked numpy for 2 x 14.9 GiB; growth is kept as running sums now."""
    path = tmp_path / "c.kcap"
    write_capture(path, seconds=(1,))
    header, snap = path.read_text().splitlines()
    empty = json.loads(snap)
    empty["report"]["groups"] = []
    empty.pop("slab", None)
    big = json.loads(snap)
    g = big["report"]["groups"][0]
    big["report"]["groups"] = [dict(g, stack=[f"leaf_{i}+0x1"]) for i in range(20_000)]
    with open(path, "w") as f:
        f.write(header + "\n")
        for t in range(100_000):
            empty["t_s"] = t
            f.write(json.dumps(empty) + "\n")
        big["t_s"] = 100_000
        f.write(json.dumps(big) + "\n")
    res = report(path, "--format", "json", memory_mb=1500)
    assert res.returncode == 0, res.stderr[-2000:]
    assert len(json.loads(res.stdout)["groups"]) == 20_000


def test_a_fifo_nobody_writes_does_not_hang(tmp_path, cap):
    """Item 11: open() of a FIFO without a writer blocked for ever."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    one_line_error(run_cli("report", fifo, timeout=20), "empty file")
    one_line_error(run_cli("diff", fifo, cap, timeout=20), "empty file")


@pytest.mark.parametrize("args", [["--min-age", "9" * 400], ["--duration", "9" * 400], ["9" * 400],
                                  ["--duration", "400d"], ["--min-age", "1e400"]])
def test_durations_beyond_a_year(args):
    """Item 12: 400 nines overflowed, or became infinity and was accepted."""
    res = run_cli("-p", "1", *args)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert ("more than a year" in res.stderr or "is not a duration" in res.stderr), res.stderr


def test_standard_output_that_cannot_take_it(cap):
    """Item 13: > /dev/full and >&- were tracebacks."""
    for cmd in (["report", cap], ["diff", cap, cap], ["report", cap, "--format", "json"]):
        with open("/dev/full", "w") as full:
            res = run_cli(*cmd, stdout=full, capture_output=False, stderr=subprocess.PIPE)
        assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
        assert res.stderr.count("\n") == 1 and "cannot write to standard output" in res.stderr, res.stderr
        res = subprocess.run([sys.executable, "-m", "bpftrace_leak.cli", *map(str, cmd)], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=60,
                             preexec_fn=lambda: os.close(1))
        assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
        assert res.stderr.count("\n") == 1 and "standard output" in res.stderr, res.stderr


def test_a_last_line_without_newline_is_complete(cap):
    """Item 15: a complete last line without its newline was dropped as torn."""
    cap.write_text(cap.read_text().rstrip("\n"))
    res = report(cap, "--format", "json")
    assert res.returncode == 0 and "torn" not in res.stderr, res.stderr
    assert json.loads(res.stdout)["snapshots"] == 5


def test_html_honours_top_and_escapes_text(cap, tmp_path):
    """Item 15: HTML showed 50 rows whatever -T said, and left ESC, NUL and
    RLO raw in its text nodes."""
    def poison(s):
        extra = dict(s["report"]["groups"][1], stack=["\u202eevil\u0000\u001b[2J+0x1"], cache="c\u202e")
        s["report"]["groups"].append(extra)
    edit_last(cap, poison)
    out = tmp_path / "r.html"
    assert report(cap, "--format", "html", "-o", out, "-T", "1").returncode == 0
    page = out.read_text()
    table = page[page.index('<table id="groups">'):]
    assert table.count("<tr>") == 2  # the heading and one group
    assert not any(c in page for c in "\u202e\u0000\u001b")
    assert report(cap, "--format", "html", "-o", out, "--force").returncode == 0
    assert "\\u202eevil\\x00\\x1b[2J" in out.read_text()


def test_pprof_names_and_labels_are_escaped(cap, tmp_path):
    edit_last(cap, lambda s: s["report"]["groups"][0].update(stack=["\u001b[2Jf+0x1"], cache="\u001bc"))
    out = tmp_path / "p.pb.gz"
    assert report(cap, "--format", "pprof", "-o", out).returncode == 0
    import gzip
    from bpftrace_leak.output.pprof import Profile
    prof = Profile()
    prof.ParseFromString(gzip.decompress(out.read_bytes()))
    assert not any("\x1b" in s for s in prof.string_table) and any("\\x1b" in s for s in prof.string_table)


def test_report_never_replaces_its_own_capture(cap, tmp_path):
    """Item 4: report x.kcap -o x.kcap --force replaced the capture with its report."""
    before = cap.read_bytes()
    os.link(cap, tmp_path / "alias.kcap")
    for out in (cap, tmp_path / "alias.kcap", str(cap).replace("/c.kcap", "/./c.kcap")):
        one_line_error(report(cap, "-o", out, "--force"), "is the file being read")
    assert cap.read_bytes() == before


def test_a_render_failure_leaves_no_file(cap, tmp_path, monkeypatch):
    """Item 5: a failure while rendering left a 0-byte file (or a .part)."""
    from bpftrace_leak.output import htmlreport
    from bpftrace_leak.sessions.offline import run_report

    def broken(*a, **k):
        raise RuntimeError("renderer bug")
    monkeypatch.setattr(htmlreport, "render_html", broken)
    for force in (False, True):
        out = tmp_path / "r.html"
        if force:
            out.write_text("old")
        with pytest.raises(RuntimeError):
            run_report(str(cap), fmt="html", output=str(out), force=force)
        assert sorted(p.name for p in tmp_path.iterdir()) == (["c.kcap", "r.html"] if force else ["c.kcap"])
