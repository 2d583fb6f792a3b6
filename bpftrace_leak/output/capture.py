"""Capture files: a session's reports over time, for reports made later.

Format ``kleaktrace.capture/1``, JSON Lines, one JSON document per line:

- line 1, the header: ``{"schema": "kleaktrace.capture/1", "type": "header",
  "kernel", "started", "targets", "command", "min_age_ms", "interval_s",
  "host": {"hostname", "slab_aliases": {cache: [aliases]}}}``
- then one line per interval: ``{"type": "snapshot", "t_s": seconds since the
  start, "time": ISO 8601, "report": <a kleaktrace.report/1 document with
  every group, stacks symbolized>, "slab": {"meminfo_slab_kb": int,
  "caches": {name: {"objects": active objects, "objsize": bytes}}}}``

Each line is flushed and fsync'd when written, so a crash or kill -9 loses at
most the interval being written; a reader ignores a torn last line. A write
that fails (a full disk) is cut back to the last whole line, so the file
stays readable. Files are created, never overwritten in place, mode 0600
(outfiles.py): they hold kernel addresses (symbol offsets) and the names of
files a process opened.

Reading checks every line (schema.py) and keeps the last report whole and
only what growth needs of the others, so a long capture is read in bounded
memory and a bad one is a one-line error.
"""

import gc
import json
import os
import socket
import stat

from ..analysis import schema
from ..errors import KleakError
from .outfiles import open_private

__all__ = ["SCHEMA", "CaptureWriter", "Capture", "load_capture", "slab_facts", "MAX_LINE"]

SCHEMA = schema.CAPTURE_SCHEMA

#: the longest line read: a snapshot of a million live objects in 50,000
#: groups is about 50 MB; anything longer is not a capture (``/dev/zero``)
MAX_LINE = 256 << 20


def slab_facts(meminfo: str = "/proc/meminfo", slabinfo: str = "/proc/slabinfo") -> dict:
    """/proc/meminfo's Slab and /proc/slabinfo's active objects and object size per cache."""
    facts = {"meminfo_slab_kb": None, "caches": {}}
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith("Slab:"):
                    facts["meminfo_slab_kb"] = int(line.split()[1])
    except OSError:
        pass
    try:
        with open(slabinfo) as f:
            for line in f.readlines()[2:]:
                parts = line.split()
                facts["caches"][parts[0]] = {"objects": int(parts[1]), "objsize": int(parts[3])}
    except (OSError, IndexError, ValueError):
        pass
    return facts


class CaptureWriter:
    """Appends snapshots to a new capture file (outfiles.open_private).

    The file is made at once (a path that cannot take it fails before the
    probes are compiled); it gets its name, replacing an old capture with
    --force, when its header is written.
    """

    def __init__(self, path: str, replace: bool = False, header: dict | None = None):
        self.path = path
        self._file = open_private(path, replace)
        self._f = self._file.stream
        if header is not None:
            self.header(header)

    def header(self, header: dict) -> None:
        doc = {"schema": SCHEMA, "type": "header", **header}
        doc["host"] = dict(header.get("host", {}), hostname=socket.gethostname())
        try:
            self._write(doc)
            self._file.commit()
        except OSError as e:
            raise KleakError(f"cannot write capture {self.path}: {e.strerror}", status=1) from None

    def discard(self) -> None:
        """Remove the capture (the session never started)."""
        self._file.discard()

    def _write(self, doc: dict) -> None:
        """One whole line, or (OSError) none: a failed write is cut back off."""
        line = json.dumps(doc, separators=(",", ":")) + "\n"
        good = self._f.tell()
        try:
            self._f.write(line)
            self._f.flush()
            os.fsync(self._f.fileno())
        except OSError:
            try:
                self._f.seek(good)  # drops what the buffer still holds ...
                self._f.truncate(good)  # ... and what reached the file
            except OSError:
                pass
            raise

    def snapshot(self, t_s: float, time_iso: str, report: dict, slab: dict | None = None) -> None:
        """Append a snapshot; OSError (the file keeps its whole lines) when the disk refuses."""
        self._write({"type": "snapshot", "t_s": round(t_s, 3), "time": time_iso, "report": report,
                     "slab": slab if slab is not None else slab_facts()})

    def close(self) -> None:
        try:
            self._file.close()
        except (OSError, KleakError):
            pass


class Capture:
    """A loaded capture.

    ``header``; ``last``, the last snapshot's report, whole; ``series``, per
    snapshot ``(t_s, {group key: (objects, bytes)})``; ``slab``, per
    snapshot ``(t_s, slab facts)``; ``torn`` when the last line was cut short.
    """

    def __init__(self, path: str, header: dict, last: dict, series: list, slab: list, torn: bool):
        self.path = path
        self.header = header
        self.last = last
        self.series = series
        self.slab = slab
        self.torn = torn

    @property
    def times(self) -> list[float]:
        return [t for t, _ in self.series]


def _lines(path: str):
    """Yield (line number, bytes, complete) of the file, each at most MAX_LINE long."""
    try:
        f = open(path, "rb")
    except OSError as e:
        raise KleakError(f"cannot read capture {path}: {e.strerror}", status=2) from None
    with f:
        mode = os.fstat(f.fileno()).st_mode
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISDIR(mode):
            raise KleakError(f"{path}: not a regular file, not a kleaktrace capture", status=2)
        n = 0
        while True:
            try:
                line = f.readline(MAX_LINE + 1)
            except OSError as e:
                raise KleakError(f"cannot read capture {path}: {e.strerror}", status=2) from None
            if not line:
                return
            n += 1
            if len(line) > MAX_LINE:
                raise KleakError(f"{path}: line {n} is longer than {MAX_LINE >> 20} MiB: "
                                 "not a kleaktrace capture", status=2)
            complete = line.endswith(b"\n")
            yield n, line, complete


def _parse(line: bytes):
    return json.loads(line, parse_float=schema.finite_float, parse_constant=schema.reject_constant)


def load_capture(path: str) -> Capture:
    """Read a capture; KleakError (status 2) for a missing, foreign or corrupt file.

    The cyclic garbage collector is off meanwhile: JSON makes no cycles, and
    its passes over millions of new containers took a third of the time
    (bench/report_offline.py, 100 snapshots of 5,000 groups: 5.7 -> 4.7 s).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _load(path)
    finally:
        if enabled:
            gc.enable()


def _load(path: str) -> Capture:
    header, series, slab, torn = None, [], [], False
    pending = None  # (line number, the latest snapshot): checked whole once known to be the last
    # one key object per group for the whole capture (schema.check_group_core):
    # each snapshot's strings are freed as soon as it is read (100 snapshots
    # of 5,000 groups: 690 -> 150 MiB peak, and no second spent freeing them at exit)
    known: dict = {}
    for n, line, complete in _lines(path):
        if header is None:
            try:
                header = _parse(line)
            except (ValueError, RecursionError, UnicodeDecodeError):
                header = None
            if not isinstance(header, dict) or header.get("type") != "header" or \
                    not str(header.get("schema", "")).startswith("kleaktrace.capture/"):
                raise KleakError(f"{path}: not a kleaktrace capture", status=2)
            if header["schema"] != SCHEMA:
                raise KleakError(f"{path}: capture format {str(header['schema'])[:40]} is not supported "
                                 f"(want {SCHEMA})", status=2)
            try:
                schema.check_header(header)
            except schema.Invalid as e:
                raise KleakError(f"{path}: corrupt capture header: {e}", status=2) from None
            continue
        if not complete:
            torn = True  # a crash while this line was written: lose just it
            break
        try:
            doc = _parse(line)
            if not isinstance(doc, dict) or doc.get("type") != "snapshot":
                raise schema.Invalid("not a snapshot")
            schema.check_snapshot(doc)
            keys = {}
            for i, g in enumerate(doc["report"]["groups"]):
                key = schema.check_group_core(g, i, known)  # before the fields are read
                keys[key] = (g["objects"], g["bytes"])
        except (ValueError, RecursionError, UnicodeDecodeError) as e:
            why = str(e) if isinstance(e, schema.Invalid) else "not JSON"
            raise KleakError(f"{path}: corrupt capture at line {n}: {why}", status=2) from None
        series.append((doc["t_s"], keys))
        slab.append((doc["t_s"], doc.get("slab") or {}))
        pending = (n, doc)
    if header is None:
        raise KleakError(f"{path}: empty file, not a kleaktrace capture", status=2)
    if pending is None:
        raise KleakError(f"{path}: the capture holds no snapshot yet", status=2)
    n, doc = pending
    try:
        last = schema.check_report(doc["report"])
    except schema.Invalid as e:
        raise KleakError(f"{path}: corrupt capture at line {n}: {e}", status=2) from None
    return Capture(path, header, last, series, slab, torn)
