"""The admin endpoint's HTTP, pure: read a request head line by line, route it, render
the status (JSON) and metrics (Prometheus text format 0.0.4) of the running services.

Only what a status endpoint needs: GET and HEAD of ``/``, ``/status`` and ``/metrics``,
one request per connection (``Connection: close``). Everything else gets a status line
that says why (400, 404, 405, 431, 505; the server adds 408 for a head that arrives too
slowly and 503 for a peer over its connection cap).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from socketkit.limits import ADMIN_MAX_HEADERS

__all__ = [
    "AdminRequestError",
    "Request",
    "RequestHead",
    "ServiceStatus",
    "error_response",
    "render_metrics",
    "render_status",
    "respond",
    "route",
]

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    421: "Misdirected Request",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}

INDEX = b"socketkit admin: /status (JSON), /metrics (Prometheus)\n"


class AdminRequestError(Exception):
    """A request the endpoint refuses: ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Request:
    """A parsed request head."""

    method: str
    path: str  # without the query string
    headers: Mapping[str, str] = field(default_factory=dict)


class RequestHead:
    """Collects the request line and headers, one line at a time (terminators stripped)."""

    __slots__ = ("_headers", "_request_line")

    def __init__(self) -> None:
        self._request_line: tuple[str, str] | None = None
        self._headers: dict[str, str] = {}

    def feed_line(self, line: bytes) -> Request | None:
        """Take one line; return the request once the empty line ends the head.

        Raises:
            AdminRequestError: a malformed request line or header, an HTTP version other
                than 1.0/1.1, or more than ``ADMIN_MAX_HEADERS`` headers.
        """
        if self._request_line is None:
            if not line:  # RFC 9112 2.2: ignore empty lines before the request line
                return None
            parts = line.split(b" ")
            if len(parts) != 3 or not parts[0].isalpha() or not parts[1].startswith(b"/"):
                raise AdminRequestError(400, "malformed request line")
            if parts[2] not in (b"HTTP/1.0", b"HTTP/1.1"):
                raise AdminRequestError(505, "only HTTP/1.0 and HTTP/1.1")
            target = parts[1].decode("ascii", "replace")
            self._request_line = (parts[0].decode("ascii"), target.partition("?")[0])
            return None
        if not line:
            method, path = self._request_line
            return Request(method, path, self._headers)
        if len(self._headers) >= ADMIN_MAX_HEADERS:
            raise AdminRequestError(431, f"more than {ADMIN_MAX_HEADERS} headers")
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise AdminRequestError(400, "malformed header line")
        self._headers[name.decode("ascii", "replace").lower()] = value.strip().decode("latin-1")
        return None


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    """One running service, as the endpoint reports it."""

    name: str
    addresses: Sequence[str]
    counters: Mapping[str, int]  # ServerStats.as_dict()
    gauges: Mapping[str, float] = field(default_factory=dict)  # service specific
    datagrams_dropped: Mapping[str, int] = field(default_factory=dict)  # by reason


def respond(status: int, body: bytes, content_type: str, *, head_only: bool = False) -> bytes:
    """A whole HTTP/1.1 response that closes the connection."""
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n"
    )
    if status == 405:
        head += "Allow: GET, HEAD\r\n"
    return (head + "\r\n").encode("ascii") + (b"" if head_only else body)


def error_response(exc: AdminRequestError) -> bytes:
    """The response for a refused request."""
    return respond(exc.status, f"{exc}\n".encode(), "text/plain; charset=utf-8")


def render_status(services: Sequence[ServiceStatus], *, uptime_s: float, version: str) -> bytes:
    """``/status``: every service with its addresses, counters, datagrams dropped by
    reason (``datagrams_dropped``: an object) and gauges, as JSON."""
    document = {
        "version": version,
        "uptime_s": round(uptime_s, 3),
        "services": {
            s.name: {
                "addresses": list(s.addresses),
                **dict(s.counters),
                "datagrams_dropped": dict(sorted(s.datagrams_dropped.items())),
                **dict(s.gauges),
            }
            for s in services
        },
    }
    return (json.dumps(document, indent=2, sort_keys=False) + "\n").encode()


# ServerStats counter -> (metric name, Prometheus type, help text).
_METRICS = {
    "open": ("socketkit_connections_open", "gauge", "open connections"),
    "accepted": ("socketkit_connections_accepted_total", "counter", "connections accepted"),
    "refused": ("socketkit_connections_refused_total", "counter", "connections refused by a cap"),
    "closed": ("socketkit_connections_closed_total", "counter", "connections closed"),
    "bytes_in": ("socketkit_received_bytes_total", "counter", "bytes received"),
    "bytes_out": ("socketkit_sent_bytes_total", "counter", "bytes sent"),
    "messages_in": ("socketkit_messages_received_total", "counter", "messages decoded"),
    "datagrams_in": ("socketkit_datagrams_received_total", "counter", "datagrams received"),
    "datagrams_out": ("socketkit_datagrams_sent_total", "counter", "datagrams sent"),
    "timeouts": ("socketkit_timeouts_total", "counter", "connections closed by a timeout"),
    "tls_failures": ("socketkit_tls_failures_total", "counter", "failed TLS handshakes"),
}

_DROPPED = "socketkit_datagrams_dropped_total"  # ServerStats.datagrams_dropped, labelled by reason


def render_metrics(services: Sequence[ServiceStatus], *, uptime_s: float) -> bytes:
    """``/metrics``: the counters in the Prometheus text format, one series per service."""
    lines = [
        "# HELP socketkit_uptime_seconds seconds since serve all started",
        "# TYPE socketkit_uptime_seconds gauge",
        f"socketkit_uptime_seconds {uptime_s:.3f}",
    ]
    for key, (metric, kind, text) in _METRICS.items():
        lines.append(f"# HELP {metric} {text}")
        lines.append(f"# TYPE {metric} {kind}")
        lines.extend(f'{metric}{{service="{s.name}"}} {s.counters.get(key, 0)}' for s in services)
    lines.append(f"# HELP {_DROPPED} datagrams a service did not answer, by reason")
    lines.append(f"# TYPE {_DROPPED} counter")
    lines.extend(
        f'{_DROPPED}{{service="{s.name}",reason="{reason}"}} {count}'
        for s in services
        for reason, count in sorted(s.datagrams_dropped.items())
    )
    gauges = sorted({(s.name, g) for s in services for g in s.gauges})
    for service, gauge in gauges:
        value = next(s.gauges[gauge] for s in services if s.name == service)
        metric = f"socketkit_{service}_{gauge}"
        lines.append(f"# TYPE {metric} gauge")
        lines.append(f"{metric} {value:g}")
    return ("\n".join(lines) + "\n").encode()


def host_allowed(request: Request, names: frozenset[str]) -> bool:
    """Whether the request's ``Host`` may reach the endpoint (DNS rebinding defence).

    A web page on ``evil.example`` can make its name resolve to 127.0.0.1 and then read
    ``http://evil.example:7080/status`` from the visitor's browser: the browser sends
    ``Host: evil.example``. So a name is allowed only if it is ``localhost`` or one of
    ``names`` (the endpoint's own host and the machine's names); an IP literal is
    always allowed (rebinding needs a name), and so is a request without ``Host``
    (HTTP/1.0 tools).
    """
    host = request.headers.get("host")
    if host is None:
        return True
    host = host.strip().lower()
    if host.startswith("["):  # [v6]:port
        return True
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name.rstrip(".") in ("localhost", *names):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def route(
    request: Request,
    services: Sequence[ServiceStatus],
    *,
    uptime_s: float,
    version: str,
    names: frozenset[str] = frozenset(),
) -> bytes:
    """The response to a well-formed request (``names``: see ``host_allowed``)."""
    if not host_allowed(request, names):
        return error_response(AdminRequestError(421, "this endpoint answers to its own addresses only"))
    if request.method not in ("GET", "HEAD"):
        return error_response(AdminRequestError(405, f"{request.method} is not supported"))
    head_only = request.method == "HEAD"
    if request.path == "/":
        return respond(200, INDEX, "text/plain; charset=utf-8", head_only=head_only)
    if request.path == "/status":
        body = render_status(services, uptime_s=uptime_s, version=version)
        return respond(200, body, "application/json", head_only=head_only)
    if request.path == "/metrics":
        body = render_metrics(services, uptime_s=uptime_s)
        return respond(200, body, "text/plain; version=0.0.4; charset=utf-8", head_only=head_only)
    return error_response(AdminRequestError(404, f"no such page: {request.path}"))
