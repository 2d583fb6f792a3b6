"""serve's HTTP side alone (sessions/httpserve.py): idle connections cost a
descriptor and are timed out, capped and evicted; GET and HEAD only; IPv6.
The same with a real session, under a 1,024-descriptor limit: tests/kernel/test_serve.py."""

import socket
import statistics
import threading
import time

import pytest

from bpftrace_leak.sessions.httpserve import HttpServer, Response


def handler(path):
    if path == "/metrics":
        return Response(200, "text/plain", b"kleaktrace_up 1\n")
    return Response(404, "text/plain", b"no\n")


@pytest.fixture
def server():
    s = HttpServer("127.0.0.1", 0, handler, max_conns=64, idle_s=1.0)
    s.start()
    yield s
    s.close()


def ask(port, request=b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", family=socket.AF_INET, host="127.0.0.1"):
    with socket.socket(family, socket.SOCK_STREAM) as c:
        c.settimeout(5)
        c.connect((host, port))
        c.sendall(request)
        data = b""
        while True:
            chunk = c.recv(65536)
            if not chunk:
                return data
            data += chunk


def test_get_and_head(server):
    got = ask(server.port)
    assert got.startswith(b"HTTP/1.0 200 OK\r\n") and got.endswith(b"\r\n\r\nkleaktrace_up 1\n")
    head = ask(server.port, b"HEAD /metrics HTTP/1.1\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") and b"Content-Length: 16" in head and head.endswith(b"\r\n\r\n")
    assert ask(server.port, b"GET /nope HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 404")


@pytest.mark.parametrize("method", [b"POST", b"PUT", b"DELETE", b"TRACE", b"OPTIONS"])
def test_other_methods_are_refused(server, method):
    """Item G: they answered 200."""
    got = ask(server.port, method + b" /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    assert got.startswith(b"HTTP/1.0 405") and b"Allow: GET, HEAD" in got


def test_bad_and_huge_requests(server):
    assert ask(server.port, b"hello\r\n\r\n").startswith(b"HTTP/1.0 400")
    assert ask(server.port, b"GET /" + b"a" * 10000).startswith(b"HTTP/1.0 431")


def test_idle_connections_are_capped_timed_out_and_never_starve_a_scrape(server):
    """Item A: 1,000 idle connections (more than the cap of 64): the oldest
    idle ones are closed to make room, a scrape is answered at once, and
    the rest go after idle_s."""
    idle = []
    for _ in range(1000):
        s = socket.create_connection(("127.0.0.1", server.port))
        idle.append(s)
    try:
        took = []
        for _ in range(20):
            t0 = time.monotonic()
            assert ask(server.port).startswith(b"HTTP/1.0 200")
            took.append(time.monotonic() - t0)
        assert max(took) < 0.1, took
        time.sleep(0.2)
        assert len(server._conns) <= 64
        time.sleep(1.5)
        assert len(server._conns) == 0  # idle_s is 1 s: every hoarder was closed
    finally:
        for s in idle:
            s.close()


def test_concurrent_scrapes_are_not_queued_behind_a_small_backlog(server):
    """Item G: a backlog of 5 made 200 concurrent scrapes take a median 1.0 s."""
    took = []

    def one():
        t0 = time.monotonic()
        ask(server.port)
        took.append(time.monotonic() - t0)
    threads = [threading.Thread(target=one) for _ in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(took) == 200 and statistics.median(took) < 0.25, statistics.median(took)


def test_ipv6_loopback():
    """Item E: [::1] passed the loopback check, then the IPv4-only server failed."""
    s = HttpServer("::1", 0, handler)
    s.start()
    try:
        assert ask(s.port, family=socket.AF_INET6, host="::1").startswith(b"HTTP/1.0 200")
    finally:
        s.close()


def test_a_handler_failure_is_a_500_not_the_loop():
    def broken(path):
        raise RuntimeError("bug")
    s = HttpServer("127.0.0.1", 0, broken)
    s.start()
    try:
        assert ask(s.port).startswith(b"HTTP/1.0 500")
        assert ask(s.port).startswith(b"HTTP/1.0 500") and s.errors == 2
    finally:
        s.close()
