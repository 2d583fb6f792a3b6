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

Reading checks every line (schema.py), streams the snapshots into growth
sums (analysis.history.Trends) and keeps only the last report whole, so a
long capture is read in the memory of one snapshot and a bad one is a
one-line error.
"""

import gc
import json
import os
import socket
import stat

from ..analysis import schema
from ..analysis.history import Trends, slab_items
from ..errors import KleakError
from ..kernel.slabs import slab_facts
from .outfiles import open_private
from ..text import printable

__all__ = ["SCHEMA", "CaptureWriter", "Capture", "load_capture", "slab_facts", "MAX_LINE", "MAX_VALUES"]

SCHEMA = schema.CAPTURE_SCHEMA

#: the longest line read: a snapshot of a million live objects in 50,000
#: groups is about 50 MB; anything longer is not a capture (``/dev/zero``)
MAX_LINE = 256 << 20
#: the most JSON values (counted by their commas) a line may hold:
#: 50,000 groups of some 35 values each are 1.75 million; 4 million values
#: are some 400 MB as Python objects, however the line is made
MAX_VALUES = 4_000_000


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

    ``header``; ``last``, the last snapshot's report, whole; ``trends``, the
    groups' growth (analysis.history.Trends: running sums, and with
    ``series`` the values thinned for charts); ``slab``, the same of the
    slab caches' /proc/slabinfo bytes; ``times``; ``torn`` when the last line
    was cut short.
    """

    def __init__(self, path: str, header: dict, last: dict, trends: Trends, slab: Trends, torn: bool):
        self.path = path
        self.header = header
        self.last = last
        self.trends = trends
        self.slab = slab
        self.torn = torn

    @property
    def times(self) -> list[float]:
        return self.trends.times

    @property
    def snapshots(self) -> int:
        return self.trends.snapshots


def _open(path: str):
    """The capture file, opened without blocking: open() of a FIFO nobody
    writes blocked for ever. A regular file or a pipe is read (``report
    <(zstdcat leak.kcap.zst)``; a FIFO with no writer reads as empty); a
    device, a folder or a socket is refused."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        raise KleakError(f"cannot read capture {printable(path)}: {e.strerror}", status=2) from None
    mode = os.fstat(fd).st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
        os.close(fd)
        raise KleakError(f"{printable(path)}: not a regular file, not a kleaktrace capture", status=2)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _lines(f, path: str):
    """Yield (line number, bytes, complete) of the file, each at most MAX_LINE long."""
    n = 0
    while True:
        try:
            line = f.readline(MAX_LINE + 1)
        except OSError as e:
            raise KleakError(f"cannot read capture {printable(path)}: {e.strerror}", status=2) from None
        if not line:
            return
        n += 1
        if len(line) > MAX_LINE:
            raise KleakError(f"{printable(path)}: line {n} is longer than {MAX_LINE >> 20} MiB: "
                             "not a kleaktrace capture", status=2)
        yield n, line, line.endswith(b"\n")


def _parse(line: bytes):
    """One line's JSON, refused before parsing when it holds more values than
    MAX_VALUES: a 60 MB line of ``{},`` became 20 million dicts (1.56 GB)."""
    values = line.count(b",")  # n values at one level need n - 1 commas; depth is bounded by recursion
    if values > MAX_VALUES:
        raise schema.Invalid(f"more than {MAX_VALUES:,} values in one line")
    return json.loads(line, parse_float=schema.finite_float, parse_constant=schema.reject_constant)


def load_capture(path: str, series: bool = False) -> Capture:
    """Read a capture; KleakError (status 2) for a missing, foreign or corrupt file.

    Snapshots are read one at a time: each is checked, added to the growth
    sums and dropped; the last one's line is kept as bytes and read whole at
    the end. Memory is one snapshot's, however long the capture (``series``
    adds the thinned values for the HTML charts). The cyclic garbage
    collector is off meanwhile: JSON makes no cycles, and its passes over
    millions of new containers took a third of the time.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        with _open(path) as f:
            return _load(f, path, series)
    except MemoryError:
        raise KleakError(f"{printable(path)}: too large to read in this machine's memory", status=2) from None
    finally:
        if enabled:
            gc.enable()


def _header(line: bytes, path: str) -> dict:
    try:
        header = _parse(line)
    except (ValueError, RecursionError, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict) or header.get("type") != "header" or \
            not str(header.get("schema", "")).startswith("kleaktrace.capture/"):
        raise KleakError(f"{printable(path)}: not a kleaktrace capture", status=2)
    if header["schema"] != SCHEMA:
        raise KleakError(f"{printable(path)}: capture format {printable(str(header['schema'])[:40])} is not "
                         f"supported (want {SCHEMA})", status=2)
    try:
        schema.check_header(header)
    except schema.Invalid as e:
        raise KleakError(f"{printable(path)}: corrupt capture header: {e}", status=2) from None
    return header


def _load(f, path: str, series: bool) -> Capture:
    header, torn = None, False
    trends, slab = Trends(series=series), Trends(series=series)
    last = None  # (line number, bytes) of the latest good snapshot: read whole once known to be the last
    for n, line, complete in _lines(f, path):
        if header is None:
            header = _header(line, path)
            continue
        try:
            doc = _parse(line)
            if not isinstance(doc, dict) or doc.get("type") != "snapshot":
                raise schema.Invalid("not a snapshot")
            schema.check_snapshot(doc)
            rows, objects, nbytes = schema.check_groups_core(doc["report"]["groups"], trends.index, trends.slot)
        except (ValueError, RecursionError, UnicodeDecodeError) as e:
            if not complete:
                torn = True  # a crash while this line was written: lose just it
                break
            why = str(e) if isinstance(e, schema.Invalid) else "not JSON"
            raise KleakError(f"{printable(path)}: corrupt capture at line {n}: {why}", status=2) from None
        trends.add_indexed(doc["t_s"], rows, objects, nbytes)
        slab.add(doc["t_s"], slab_items(doc.get("slab") or {}))
        del doc, rows, objects, nbytes
        last = (n, line)
    if header is None:
        raise KleakError(f"{printable(path)}: empty file, not a kleaktrace capture", status=2)
    if last is None:
        raise KleakError(f"{printable(path)}: the capture holds no snapshot yet", status=2)
    n, line = last
    try:
        report = schema.check_report(_parse(line)["report"])
    except schema.Invalid as e:
        raise KleakError(f"{printable(path)}: corrupt capture at line {n}: {e}", status=2) from None
    return Capture(path, header, report, trends, slab, torn)
