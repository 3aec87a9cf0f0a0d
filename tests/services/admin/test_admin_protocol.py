"""The admin endpoint's HTTP, pure: request heads, routing, status and metrics rendering."""

from __future__ import annotations

import json

import pytest

from socketkit.limits import ADMIN_MAX_HEADERS
from socketkit.services.admin.protocol import (
    AdminRequestError,
    Request,
    RequestHead,
    ServiceStatus,
    host_allowed,
    route,
)

SERVICES = [
    ServiceStatus(
        "echo",
        ["127.0.0.1:7007"],
        {"open": 2, "accepted": 5, "datagrams_in": 9},
        datagrams_dropped={"rate_limited": 4, "own_port": 1},
    ),
    ServiceStatus("chat", ["127.0.0.1:6667"], {"open": 1, "accepted": 1}, {"clients": 1, "channels": 3}),
]


def _head(*lines: bytes) -> Request | None:
    head = RequestHead()
    result = None
    for line in lines:
        result = head.feed_line(line)
    return result


def _split(response: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    status, *headers = head.decode().split("\r\n")
    return status, dict(h.split(": ", 1) for h in headers), body


def test_a_request_head_is_parsed_line_by_line() -> None:
    head = RequestHead()
    assert head.feed_line(b"") is None  # stray empty line before the request: ignored
    assert head.feed_line(b"GET /status?pretty=1 HTTP/1.1") is None
    assert head.feed_line(b"Host: localhost:7080") is None
    request = head.feed_line(b"")
    assert request == Request("GET", "/status", {"host": "localhost:7080"})


@pytest.mark.parametrize(
    ("lines", "status"),
    [
        ([b"GET /status"], 400),
        ([b"GET status HTTP/1.1"], 400),
        ([b"G@T /status HTTP/1.1"], 400),
        ([b"GET /status HTTP/2.0"], 505),
        ([b"GET / HTTP/1.1", b"no colon here"], 400),
        ([b"GET / HTTP/1.1", b" Host: folded"], 400),
    ],
)
def test_malformed_heads_get_a_status_that_says_why(lines: list[bytes], status: int) -> None:
    with pytest.raises(AdminRequestError) as caught:
        _head(*lines)
    assert caught.value.status == status


def test_too_many_headers_is_431() -> None:
    head = RequestHead()
    head.feed_line(b"GET / HTTP/1.1")
    for i in range(ADMIN_MAX_HEADERS):
        head.feed_line(b"X-%d: y" % i)
    with pytest.raises(AdminRequestError) as caught:
        head.feed_line(b"X-last: y")
    assert caught.value.status == 431


def test_status_is_json_with_every_service() -> None:
    status, headers, body = _split(route(Request("GET", "/status"), SERVICES, uptime_s=1.5, version="9"))
    assert status == "HTTP/1.1 200 OK"
    assert headers["Content-Type"] == "application/json"
    assert headers["Connection"] == "close"
    assert int(headers["Content-Length"]) == len(body)
    document = json.loads(body)
    assert document["uptime_s"] == 1.5
    assert document["services"]["chat"] == {
        "addresses": ["127.0.0.1:6667"],
        "open": 1,
        "accepted": 1,
        "datagrams_dropped": {},
        "clients": 1,
        "channels": 3,
    }
    assert document["services"]["echo"]["datagrams_dropped"] == {"own_port": 1, "rate_limited": 4}


def test_metrics_are_in_the_prometheus_text_format() -> None:
    _, headers, body = _split(route(Request("GET", "/metrics"), SERVICES, uptime_s=2, version="9"))
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    assert 'socketkit_connections_open{service="echo"} 2' in text
    assert 'socketkit_connections_accepted_total{service="chat"} 1' in text
    assert 'socketkit_datagrams_received_total{service="echo"} 9' in text
    assert 'socketkit_datagrams_received_total{service="chat"} 0' in text
    assert "socketkit_chat_channels 3" in text
    assert "# TYPE socketkit_connections_accepted_total counter" in text
    # Drops by reason: one labelled series per (service, reason) that happened.
    assert "# TYPE socketkit_datagrams_dropped_total counter" in text
    assert 'socketkit_datagrams_dropped_total{service="echo",reason="rate_limited"} 4' in text
    assert 'socketkit_datagrams_dropped_total{service="echo",reason="own_port"} 1' in text
    assert 'socketkit_datagrams_dropped_total{service="chat"' not in text
    for line in text.splitlines():  # every sample line is NAME{labels} VALUE or NAME VALUE
        if not line.startswith("#"):
            float(line.rsplit(" ", 1)[1])


def test_head_has_no_body_and_other_methods_and_paths_are_refused() -> None:
    status, headers, body = _split(route(Request("HEAD", "/status"), SERVICES, uptime_s=0, version="9"))
    assert status == "HTTP/1.1 200 OK"
    assert body == b""
    assert int(headers["Content-Length"]) > 0
    status, headers, _ = _split(route(Request("POST", "/status"), SERVICES, uptime_s=0, version="9"))
    assert status == "HTTP/1.1 405 Method Not Allowed"
    assert headers["Allow"] == "GET, HEAD"
    status, _, body = _split(route(Request("GET", "/nope"), SERVICES, uptime_s=0, version="9"))
    assert status == "HTTP/1.1 404 Not Found"
    assert b"/nope" in body


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        (None, True),  # HTTP/1.0 tools send none
        ("127.0.0.1:7080", True),
        ("127.0.0.1", True),
        ("[::1]:7080", True),
        ("localhost:7080", True),
        ("LOCALHOST", True),
        ("box.example:7080", True),  # one of the endpoint's own names
        ("evil.example:7080", False),  # DNS rebinding: a page's own name pointed at us
        ("evil.example", False),
        ("127.0.0.1.evil.example", False),
    ],
)
def test_host_names_other_than_its_own_are_refused(host: str | None, allowed: bool) -> None:
    headers = {} if host is None else {"host": host}
    request = Request("GET", "/status", headers)
    assert host_allowed(request, frozenset({"box.example"})) is allowed
    response = route(request, [], uptime_s=1.0, version="1", names=frozenset({"box.example"}))
    assert response.startswith(b"HTTP/1.1 200 ") is allowed
    if not allowed:
        assert response.startswith(b"HTTP/1.1 421 Misdirected Request\r\n")
