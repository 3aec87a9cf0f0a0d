"""``socketkit status [ADDR]``: what ``serve all`` is doing, from its admin endpoint.

Reads ``/status`` (JSON) and prints a table: each service's addresses, open and total
connections, traffic, refusals and timeouts, and its own gauges (chat clients and
channels, running commands, transfers). ``--json`` prints the document as received.
Exit status 0, or 1 with a one-line error when the endpoint cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from socketkit.address import Address
from socketkit.cli._args import address_arg
from socketkit.services.admin.options import ADMIN_PORT

__all__ = ["add_parsers", "fetch_status"]

ADMIN_ADDRESS = f"127.0.0.1:{ADMIN_PORT}"
MAX_STATUS_BYTES = 1 << 20  # a status document is a few KiB; more is not our endpoint
TIMEOUT_S = 5.0


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``status``."""
    parser = commands.add_parser(
        "status",
        help="show what `serve all` is doing (its admin endpoint)",
        description="Read the admin endpoint of `socketkit serve all` and print its services.",
    )
    parser.add_argument(
        "address",
        nargs="?",
        type=address_arg,
        default=address_arg(ADMIN_ADDRESS),
        metavar="ADDR",
        help=f"the admin endpoint (default: {ADMIN_ADDRESS})",
    )
    parser.add_argument("--json", action="store_true", help="print the JSON document")
    parser.set_defaults(func=status)


def fetch_status(address: Address, timeout: float = TIMEOUT_S) -> dict[str, Any]:
    """GET /status from the admin endpoint at ``address``.

    Raises:
        ConnectError: the endpoint cannot be reached (it names the address and what to try).
        OSError: the connection broke during the exchange.
        ValueError: it did not answer 200 with a JSON object (or sent too much).
    """
    import http.client  # noqa: PLC0415 (lazy: fast CLI)

    from socketkit._oserrors import connect_error  # noqa: PLC0415

    conn = http.client.HTTPConnection(address.host or "127.0.0.1", address.port, timeout=timeout)
    try:
        try:
            conn.connect()
        except OSError as exc:  # TimeoutError too
            raise connect_error(exc, address, service="admin", timeout=timeout) from exc
        conn.request("GET", "/status")
        response = conn.getresponse()
        body = response.read(MAX_STATUS_BYTES + 1)
    finally:
        conn.close()
    if response.status != 200:
        raise ValueError(f"{address} answered {response.status} {response.reason}")
    if len(body) > MAX_STATUS_BYTES:
        raise ValueError(
            f"{address} sent more than {MAX_STATUS_BYTES} bytes: not a socketkit admin endpoint?"
        )
    document = json.loads(body)
    if not isinstance(document, dict) or not isinstance(document.get("services"), dict):
        raise ValueError(f"{address} did not send a socketkit status document")  # noqa: TRY004 (bad data, not a bad call)
    return document


def status(args: argparse.Namespace) -> int:
    """Run ``status``."""
    document = fetch_status(args.address)
    if args.json:
        print(json.dumps(document, indent=2))
        return 0
    from rich.console import Console  # noqa: PLC0415 (terminal output only)
    from rich.table import Table  # noqa: PLC0415

    uptime = float(document.get("uptime_s", 0))
    table = Table(
        title=f"socketkit {document.get('version', '?')} at {args.address}, up {_duration(uptime)}",
        title_justify="left",
    )
    for column in ("service", "listening on", "open", "accepted", "in", "out", "refused", "timeouts", "more"):
        table.add_column(column, justify="left" if column in ("service", "listening on", "more") else "right")
    counters = {"addresses", "open", "accepted", "refused", "closed", "bytes_in", "bytes_out", "messages_in",
                "datagrams_in", "datagrams_out", "timeouts", "tls_failures", "datagrams_dropped"}  # fmt: skip
    for name, service in document["services"].items():
        more = [f"{k} {v:g}" for k, v in service.items() if k not in counters and isinstance(v, (int, float))]
        dropped = service.get("datagrams_dropped")
        if isinstance(dropped, dict):
            more += [f"dropped ({reason}) {count}" for reason, count in dropped.items()]
        gauges = ", ".join(more)
        table.add_row(
            name,
            " ".join(sorted(set(map(str, service.get("addresses", []))))),
            str(service.get("open", 0)),
            str(service.get("accepted", 0)),
            _size(int(service.get("bytes_in", 0))),
            _size(int(service.get("bytes_out", 0))),
            str(service.get("refused", 0)),
            str(service.get("timeouts", 0)),
            gauges,
        )
    # A pipe has no width; 80 columns would cut the addresses and gauges.
    width = None if sys.stdout.isatty() else 160
    Console(file=sys.stdout, highlight=False, width=width).print(table)
    return 0


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    size = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            break
    return f"{size:.1f} {unit}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
