"""``kleaktrace serve``: an always-on exporter for Prometheus and pprof viewers.

A live session (sessions/live.py) that keeps tracing and makes a report
every ``--interval``; an HTTP server (httpserve.py: one thread, an epoll
loop, idle connections timed out and capped) answers from the latest one,
so a scrape costs no BPF work and no user can starve the tracer:

- ``/metrics``: the Prometheus text exposition format, made by the
  prometheus_client library (outstanding objects and bytes per kind and
  cache, their growth per hour, the top call sites, the top cgroups, the
  data-quality counters as ``_total`` counters, the tracer's own CPU, memory
  and map bytes). Label sets stay bounded: kind and cache (a few hundred),
  at most ``--top-labels`` call sites and cgroups; never stacks or PIDs.
- ``/profile``: the outstanding objects as a pprof profile (output/pprof.py).

It binds to loopback unless ``--expose`` says otherwise: the metrics name
kernel functions and cgroups.
"""

import ipaddress
import resource
import sys
import time

from ..errors import KleakError
from ..output.prometheus import Exporter
from . import live
from .httpserve import HttpServer, Response

__all__ = ["run_serve", "parse_listen", "Pages", "max_connections"]


def parse_listen(listen: str, expose: bool) -> tuple[str, int]:
    """(host, port) of ``HOST:PORT``; KleakError (status 2) when it is not
    one, or not loopback without ``expose``."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        port_n = int(port)
        if not 0 <= port_n < 65536:
            raise ValueError
        address = ipaddress.ip_address(host)
    except ValueError:
        raise KleakError(f"--listen {listen}: not HOST:PORT with an IP address", status=2) from None
    if not address.is_loopback and not expose:
        raise KleakError(f"--listen {listen}: not a loopback address; the metrics name kernel functions "
                         "and cgroups: add --expose to serve them there", status=2)
    return host, port_n


def raise_fd_limit() -> int:
    """Raise the soft open-file limit to the hard one (systemd's default soft
    limit is 1,024: a report's BPF iterators, /proc reads and the open
    connections share it); returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def max_connections(fd_limit: int) -> int:
    """Open HTTP connections allowed: at most a quarter of the descriptors,
    so the tracer keeps the rest (a session holds about 150: maps, programs,
    links; a report opens a few more for a moment), and at most 256."""
    return max(8, min(256, fd_limit // 4))


class Pages:
    """What the HTTP server answers, from the latest report: /metrics
    rendered at most once a second (200 concurrent scrapes cost one render),
    /profile once per report."""

    def __init__(self, exporter: Exporter, registry):
        self.exporter, self.registry = exporter, registry
        self._metrics = (None, 0.0, b"")
        self._profile = (None, b"")

    def __call__(self, path: str) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
        version = id(self.exporter.report)
        if path == "/metrics":
            seen, at, body = self._metrics
            now = time.monotonic()
            if seen != version or now - at >= 1.0:
                body = generate_latest(self.registry)
                self._metrics = (version, now, body)
            return Response(200, CONTENT_TYPE_LATEST, body)
        if path == "/profile":
            seen, body = self._profile
            if seen != version:
                body = self.exporter.profile()
                self._profile = (version, body)
            return Response(200, "application/octet-stream", body)
        return Response(200 if path == "/" else 404, "text/plain",
                        b"kleaktrace: /metrics (Prometheus), /profile (pprof)\n")


def run_serve(cfg, listen: str, expose: bool, top_labels: int) -> int:
    """Trace with Config ``cfg`` and serve its reports until a signal ends it."""
    try:
        from prometheus_client import CollectorRegistry, ProcessCollector
    except ImportError:
        raise KleakError("serve needs prometheus_client (apt-get install python3-prometheus-client)") from None
    host, port = parse_listen(listen, expose)
    exporter = Exporter(top_labels)
    registry = CollectorRegistry()
    ProcessCollector(namespace="kleaktrace", registry=registry)  # the tracer's own CPU seconds, memory
    registry.register(exporter)
    try:
        server = HttpServer(host, port, Pages(exporter, registry), max_conns=max_connections(raise_fd_limit()))
    except OSError as e:
        raise KleakError(f"--listen {listen}: {e.strerror}", status=1) from None
    shown = f"[{host}]" if ":" in host else host

    def started(_session):
        server.start()
        print(f"kleaktrace: serving http://{shown}:{server.port}/metrics and /profile",
              file=sys.stderr, flush=True)

    def report(r, facts):
        exporter.update(dict(r, _made=time.time()), facts)

    try:
        return live.run(cfg, on_attached=started, on_report=report, keep_going=True)
    finally:
        server.close()
