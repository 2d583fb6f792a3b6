"""The HTTP side of ``kleaktrace serve``: one thread, one epoll loop, bounded.

A scrape must never cost the tracer its session. wsgiref's threading server
kept a thread and a descriptor per connection, with no read timeout and no
cap: any local user holding ~1,000 idle connections took every descriptor
under systemd's default limit, and the next report died with EMFILE. Here
an open connection costs one descriptor and a few hundred bytes:

- a connection has ``idle_s`` to send its request and as long to read the
  answer, then it is closed;
- at most ``max_conns`` are open; one more closes the oldest that has not
  sent a whole request yet (a scraper sends its request at once, an idle
  hoarder never does; one whose request waits unread is a scraper), and
  accept() failing for want of descriptors does the same; with none to
  close, accepting pauses until a connection ends, the others waiting in
  the backlog (CI, loaded: closing them instead reset 50 of 200 scrapes);
- a request line and headers of more than 8 KiB are refused (431); only
  GET and HEAD are served (405 otherwise); every answer closes the
  connection (HTTP/1.0 style: Prometheus reconnects, no keep-alive state);
- the listen backlog is 1,024 (a backlog of 5 made 200 concurrent scrapes
  wait a second), and IPv6 addresses get an IPv6 socket.

Handlers answer from what the live session last reported; they never touch
BPF.
"""

import collections
import errno
import os
import selectors
import socket
import threading
import time

__all__ = ["HttpServer", "Response"]

_MAX_HEADER = 8192
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 400: "Bad Request",
            431: "Request Header Fields Too Large", 500: "Internal Server Error"}

Response = collections.namedtuple("Response", "status content_type body")


class _Conn:
    __slots__ = ("sock", "deadline", "inbuf", "out", "sent", "requested")

    def __init__(self, sock, deadline):
        self.sock, self.deadline = sock, deadline
        self.inbuf, self.out, self.sent, self.requested = b"", None, 0, False


def _answer(status: int, content_type: str, body: bytes, head: bool = False, extra: str = "") -> bytes:
    header = (f"HTTP/1.0 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: {content_type}\r\n"
              f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n").encode()
    return header if head else header + body


class HttpServer:
    """Serves ``handler(path) -> Response`` for GET and HEAD on ``host:port``
    (``port`` 0: any; ``self.port`` says which) from a thread of its own."""

    def __init__(self, host: str, port: int, handler, max_conns: int = 256, idle_s: float = 5.0):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            self.sock.bind((host, port))
            self.sock.listen(1024)
        except OSError:
            self.sock.close()
            raise
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.handler, self.max_conns, self.idle_s = handler, max(1, max_conns), idle_s
        self._wake_r, self._wake_w = os.pipe()
        self._conns: collections.OrderedDict[int, _Conn] = collections.OrderedDict()  # oldest first
        self._thread = threading.Thread(target=self._loop, name="kleaktrace-http", daemon=True)
        self.errors = 0  # handler failures, answered 500
        self._paused = False  # not accepting: at the cap, nothing to evict (_pause)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop the loop and close every descriptor; safe before start()."""
        if self._thread.is_alive():
            os.write(self._wake_w, b"x")
            self._thread.join(10)
        for conn in list(self._conns.values()):
            conn.sock.close()
        self._conns.clear()
        self.sock.close()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    # -- the loop ------------------------------------------------------------------

    def _loop(self) -> None:
        sel = selectors.DefaultSelector()
        self._sel = sel
        sel.register(self.sock, selectors.EVENT_READ, None)
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        try:
            while True:
                now = time.monotonic()
                first = next(iter(self._conns.values()), None)
                timeout = max(0.0, min(1.0, first.deadline - now)) if first else 1.0
                for key, mask in sel.select(timeout):
                    if key.data == "wake":
                        return
                    if key.data is None:
                        self._accept()
                    else:
                        self._io(key.data, mask)
                self._expire(time.monotonic())
        finally:
            sel.close()

    def _accept(self) -> None:
        for _ in range(64):  # a burst at a time, then the others get their turn
            if len(self._conns) >= self.max_conns and not self._evict():
                self._pause()
                return
            try:
                sock, _addr = self.sock.accept()
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    if self._evict():
                        continue  # a descriptor was freed: try again
                    self._pause()  # none to free: wait for a connection to end
                return
            sock.setblocking(False)
            conn = _Conn(sock, time.monotonic() + self.idle_s)
            self._conns[sock.fileno()] = conn
            self._sel.register(sock, selectors.EVENT_READ, conn)

    def _evict(self) -> bool:
        """Close the oldest connection that has not sent its request (one
        whose whole request waits unread is a scraper this loop has not got
        to: kept)."""
        for conn in list(self._conns.values()):
            if conn.requested:
                continue
            try:
                head = conn.inbuf + conn.sock.recv(_MAX_HEADER, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except OSError:  # nothing sent (BlockingIOError), or reset
                head = b""
            if b"\r\n\r\n" not in head and b"\n\n" not in head:
                self._close(conn)
                return True
        return False

    def _pause(self) -> None:
        """Stop accepting until a connection ends (_close resumes)."""
        if not self._paused:
            self._sel.unregister(self.sock)
            self._paused = True

    def _close(self, conn: _Conn) -> None:
        self._conns.pop(conn.sock.fileno(), None)
        try:
            self._sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()
        if self._paused:
            self._sel.register(self.sock, selectors.EVENT_READ, None)
            self._paused = False

    def _expire(self, now: float) -> None:
        for conn in [c for c in self._conns.values() if c.deadline <= now]:
            self._close(conn)

    def _io(self, conn: _Conn, mask: int) -> None:
        try:
            if mask & selectors.EVENT_READ and not conn.requested:
                data = conn.sock.recv(4096)
                if not data:
                    self._close(conn)
                    return
                conn.inbuf += data
                if b"\r\n\r\n" in conn.inbuf or b"\n\n" in conn.inbuf:
                    self._respond(conn)
                elif len(conn.inbuf) > _MAX_HEADER:
                    self._reply(conn, _answer(431, "text/plain", b"request too large\n"))
            if mask & selectors.EVENT_WRITE and conn.out is not None:
                conn.sent += conn.sock.send(conn.out[conn.sent:])
                if conn.sent >= len(conn.out):
                    self._close(conn)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._close(conn)

    def _reply(self, conn: _Conn, data: bytes) -> None:
        conn.requested, conn.out = True, data
        conn.deadline = time.monotonic() + self.idle_s
        self._sel.modify(conn.sock, selectors.EVENT_WRITE, conn)

    def _respond(self, conn: _Conn) -> None:
        line = conn.inbuf.split(b"\n", 1)[0].decode("latin-1").strip().split()
        if len(line) != 3 or not line[2].startswith("HTTP/"):
            self._reply(conn, _answer(400, "text/plain", b"bad request\n"))
            return
        method, target = line[0], line[1]
        if method not in ("GET", "HEAD"):
            self._reply(conn, _answer(405, "text/plain", b"only GET and HEAD\n", extra="Allow: GET, HEAD\r\n"))
            return
        try:
            r = self.handler(target.split("?", 1)[0])
        except Exception:  # a handler's failure is one 500, never the loop
            self.errors += 1
            r = Response(500, "text/plain", b"kleaktrace: cannot render this now\n")
        self._reply(conn, _answer(r.status, r.content_type, r.body, head=method == "HEAD"))
