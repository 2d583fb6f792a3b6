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
most the interval being written; a reader ignores a torn last line. Files
are created mode 0600: they hold kernel addresses (symbol offsets) and the
names of files a process opened.
"""

import json
import os
import socket

from .errors import KleakError

__all__ = ["SCHEMA", "CaptureWriter", "Capture", "load_capture", "slab_facts"]

SCHEMA = "kleaktrace.capture/1"


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
    """Appends snapshots to a new capture file (truncating an old one)."""

    def __init__(self, path: str, header: dict):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError as e:
            raise KleakError(f"cannot write capture {path}: {e.strerror}", status=2) from None
        os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
        self.path = path
        self._f = os.fdopen(fd, "w")
        doc = {"schema": SCHEMA, "type": "header", **header}
        doc["host"] = dict(header.get("host", {}), hostname=socket.gethostname())
        self._write(doc)

    def _write(self, doc: dict) -> None:
        self._f.write(json.dumps(doc, separators=(",", ":")) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def snapshot(self, t_s: float, time_iso: str, report: dict, slab: dict | None = None) -> None:
        self._write({"type": "snapshot", "t_s": round(t_s, 3), "time": time_iso, "report": report,
                     "slab": slab if slab is not None else slab_facts()})

    def close(self) -> None:
        self._f.close()


class Capture:
    """A loaded capture: ``header`` and ``snapshots`` (oldest first)."""

    def __init__(self, path: str, header: dict, snapshots: list[dict], torn: bool):
        self.path = path
        self.header = header
        self.snapshots = snapshots
        self.torn = torn  # the last line was cut short (a crash while writing)

    @property
    def last(self) -> dict:
        return self.snapshots[-1]["report"]


def load_capture(path: str) -> Capture:
    """Read a capture; KleakError (status 2) for a missing, foreign or corrupt file."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise KleakError(f"cannot read capture {path}: {e.strerror}", status=2) from None
    lines = raw.split(b"\n")
    torn = bool(lines and lines[-1])  # a complete file ends with a newline
    complete, last = lines[:-1], lines[-1]
    if not complete and not last:
        raise KleakError(f"{path}: empty file, not a kleaktrace capture", status=2)
    try:
        header = json.loads((complete or [last])[0])
    except (ValueError, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict) or header.get("type") != "header" or \
            not str(header.get("schema", "")).startswith("kleaktrace.capture/"):
        raise KleakError(f"{path}: not a kleaktrace capture", status=2)
    if header["schema"] != SCHEMA:
        raise KleakError(f"{path}: capture format {header['schema']} is not supported (want {SCHEMA})", status=2)
    snapshots = []
    for n, line in enumerate(complete[1:], start=2):
        try:
            doc = json.loads(line)
            if doc.get("type") != "snapshot" or "report" not in doc:
                raise ValueError
        except (ValueError, UnicodeDecodeError, AttributeError):
            raise KleakError(f"{path}: corrupt capture at line {n}", status=2) from None
        snapshots.append(doc)
    if not snapshots:
        raise KleakError(f"{path}: the capture holds no snapshot yet", status=2)
    return Capture(path, header, snapshots, torn)
