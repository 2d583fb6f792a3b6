import json
import os
import stat

import pytest
from capture_data import write_capture

from bpftrace_leak.output.capture import SCHEMA, load_capture
from bpftrace_leak.errors import KleakError


def test_roundtrip_and_private_mode(tmp_path):
    path = tmp_path / "c.kcap"
    path.write_text("old")
    os.chmod(path, 0o644)
    write_capture(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    cap = load_capture(str(path))
    assert cap.header["schema"] == SCHEMA and not cap.torn
    assert cap.times == [1, 2, 3, 4, 5]
    assert cap.last["groups"][0]["objects"] == 500


def test_torn_last_line_loses_only_that_interval(tmp_path):
    path = write_capture(tmp_path / "c.kcap")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 200])  # killed while writing the last snapshot
    cap = load_capture(str(path))
    assert cap.torn and len(cap.times) == 4


@pytest.mark.parametrize("content,message", [
    (b"", "empty file"),
    (b"hello world\n", "not a kleaktrace capture"),
    (b'{"schema": "kleaktrace.report/1"}\n', "not a kleaktrace capture"),
    (b'{"schema": "kleaktrace.capture/9", "type": "header"}\n', "not supported"),
    (b'{"schema": "kleaktrace.capture/1", "type": "header"}\n', "no snapshot"),
    (b'{"schema": "kleaktrace.capture/1", "type": "header"}\n{"type": "snap\n{}\n', "corrupt capture at line 2"),
])
def test_bad_files(tmp_path, content, message):
    path = tmp_path / "bad"
    path.write_bytes(content)
    with pytest.raises(KleakError, match=message) as e:
        load_capture(str(path))
    assert e.value.status == 2


def test_missing_file(tmp_path):
    with pytest.raises(KleakError, match="cannot read capture"):
        load_capture(str(tmp_path / "nope"))


def test_header_is_json_lines(tmp_path):
    path = write_capture(tmp_path / "c.kcap")
    first = json.loads(path.read_text().splitlines()[0])
    assert first["type"] == "header" and "hostname" in first["host"]
