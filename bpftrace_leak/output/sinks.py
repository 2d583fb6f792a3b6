"""Where a live session's output goes, and what happens when it cannot go there.

A report the terminal cannot take (closed after SIGHUP) or a snapshot the
disk cannot hold (ENOSPC, EIO) is warned about once and lost alone: the
session goes on, the capture keeps its whole lines (capture.py cuts a
failed write back off) and the next snapshots are tried again.
"""

import datetime
import sys

from .capture import CaptureWriter
from ..text import printable

__all__ = ["ReportSink", "CaptureSink"]


class ReportSink:
    """Where reports go (stdout or --output's outfiles.PrivateFile): a write
    that fails (a closed terminal after SIGHUP, a full disk) is warned about
    once and the session goes on; the capture keeps recording."""

    def __init__(self, stream, name: str, warn, file=None):
        self.stream, self.name, self.failed, self.warn = stream, name, False, warn
        self.file = file  # ours to close: kept only if a report reached it
        self.written = False

    def close(self) -> None:
        if self.file is None:
            return
        if not self.written:
            self.file.discard()
            return
        try:
            self.file.close()
        except Exception:  # a failed commit: warned about already by the writes
            pass

    def write(self, text) -> None:
        """Append ``text``; bytes (a pprof profile) replace what the file held."""
        try:
            if isinstance(text, bytes):
                self.stream.seek(0)
                self.stream.truncate()
            self.stream.write(text)
            self.stream.flush()
            self.failed, self.written = False, True
        except OSError as e:
            if not self.failed:
                self.failed = True
                try:
                    self.warn(f"cannot write reports to {printable(self.name)} ({e.strerror}); the session goes on")
                except OSError:
                    pass


class CaptureSink:
    """-w: a CaptureWriter whose failed writes are warned about, not fatal."""

    def __init__(self, path: str, replace: bool, warn):
        self.writer = CaptureWriter(path, replace)
        self.path, self.error, self.lost, self.warn = path, None, 0, warn
        self.started = False

    def header(self, header: dict) -> None:
        self.writer.header(header)
        self.started = True

    def snapshot(self, t_s: float, report: dict, slab: dict) -> None:
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        try:
            self.writer.snapshot(t_s, now, report, slab)
            self.error = None
        except OSError as e:
            self.lost += 1
            if e.strerror != self.error:
                self.error = e.strerror
                self.warn(f"capture {printable(self.path)}: cannot write a snapshot ({e.strerror}); the file keeps "
                          "the snapshots before it, the next ones are tried again")

    def close(self) -> None:
        if not self.started:
            self.writer.discard()  # the session never started: leave nothing behind
            return
        self.writer.close()
        lost = f" ({self.lost} snapshots could not be written)" if self.lost else ""
        print(f"kleaktrace: capture written to {printable(self.path)}{lost}", file=sys.stderr, flush=True)
