"""Every default size, count and timeout in socketkit, each with the reason for its value.

Engines and services take these as defaults and let the user override each one; nothing
in socketkit is unbounded. Units are in the names (``_S`` seconds, sizes in bytes).
"""

from __future__ import annotations

import os
from typing import Final

# --- codecs -----------------------------------------------------------------------

DEFAULT_MAX_LINE_LENGTH: Final = 64 * 1024
"""Longest line the generic line codec accepts (terminator excluded).

Text protocols usually cap far lower (IRC 512, SMTP 1000, FTP commands 2048 in
pyftpdlib, HTTP header lines 8 KiB in nginx); 64 KiB keeps interactive tools (talk,
listen, send) useful for pasted text while bounding a peer that never sends a newline.
"""

IRC_MAX_LINE_LENGTH: Final = 512
"""RFC 1459/2812: a message, CR-LF included, is at most 512 bytes."""

IRC_MAX_TAGS_LENGTH: Final = 8191
"""IRCv3 message-tags: the tag section may add up to 8191 bytes (ergo ircmsg uses it)."""

DEFAULT_MAX_FRAME_SIZE: Final = 1 << 20
"""Largest payload of one socketkit wire-v1 frame (1 MiB).

Big enough that per-frame overhead is negligible at GB/s (a 6-byte header per MiB),
small enough that a hostile length prefix cannot make us allocate more than 1 MiB.
Bulk data (files) streams as a raw body, which this limit does not cover.
"""

DEFAULT_MAX_CONTROL_SIZE: Final = 64 * 1024
"""Largest JSON header in a control or error frame: headers name things, never carry data."""

MAX_WIRE_FRAME_SIZE: Final = (1 << 32) - 1
"""The wire-v1 length prefix is an unsigned 32-bit integer."""

MAX_JSON_DEPTH: Final = 16
"""Deepest nesting of objects and arrays in a JSON header. Our headers are at most three
deep (a listing: object, list of entries, entry); 16 leaves room for user protocols while
a peer's 30,000 nested brackets are refused long before Python's recursion limit."""

DEFAULT_RECV_SIZE: Final = 256 * 1024
"""Bytes asked of the kernel per read: large reads cut syscalls on bulk transfers (the
default loopback socket buffer is 128 KiB-4 MiB), and decoders bound what is retained."""

# --- UDP --------------------------------------------------------------------------

MAX_UDP_PAYLOAD_IPV4: Final = 65_507
"""65,535 (IPv4 total length) - 20 (IP header) - 8 (UDP header)."""

MAX_UDP_PAYLOAD_IPV6: Final = 65_527
"""65,535 (IPv6 payload length) - 8 (UDP header); jumbograms are not supported."""

DEFAULT_MAX_DATAGRAM_SIZE: Final = MAX_UDP_PAYLOAD_IPV4
"""Receive buffer per datagram. The stdlib's 8192 truncates silently; we take any IPv4
datagram whole and detect truncation (MSG_TRUNC) when a user lowers it."""

# --- blocking server (socketkit.server) -----------------------------------------------

DEFAULT_REQUEST_QUEUE_SIZE: Final = 128
"""listen() backlog. The stdlib uses 5, which drops SYNs under any burst; 128 was
Linux's SOMAXCONN for decades and is what most servers (nginx on Linux: 511) approach."""

DEFAULT_DRAIN_TIMEOUT_S: Final = 5.0
"""Graceful stop: how long running handlers may finish before their connections are
closed under them (uvicorn and Kubernetes use comparable grace periods)."""

DEFAULT_FORCE_CLOSE_TIMEOUT_S: Final = 2.0
"""After connections are closed under handlers, how long to wait for their threads or
children to notice before logging them as stuck (or SIGKILLing children)."""

DEFAULT_TLS_HANDSHAKE_TIMEOUT_S: Final = 10.0
"""A TLS handshake on loopback takes about a millisecond and over the internet a few
round trips; ten seconds bounds a peer that connects and never speaks."""

DEFAULT_MAX_READS_AFTER_EOF: Final = 64
"""A handler that calls recv() this many times after the peer closed is spinning (the
tutorial's echo server loops forever on b""); we end it with ConnectionResetError.
Correct code reads at EOF once or twice."""

DEFAULT_MAX_CHILDREN: Final = 40
"""ForkingMixIn children at once: the stdlib's value, kept for compatibility."""

# --- processes (--workers) ------------------------------------------------------------


def _usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask: taskset, cpusets), else all."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # no sched_getaffinity (macOS, Windows)
        return os.cpu_count() or 1


MAX_WORKERS_PER_CPU: Final = 4
"""--workers per usable CPU. Each worker is an event loop that can keep one core busy, so
more workers than cores only add memory, fds and scheduling; four per core leaves room
for workers waiting on the disk or on TLS handshakes, and for a host shared with others."""

MAX_WORKERS_CEILING: Final = 256
"""--workers on any machine, however many cores: each worker costs tens of MB and its
own max_connections budget, and forking that many at once is already a burst the kernel
and the user notice (a typo such as 100000 must not become a fork bomb)."""

MAX_WORKERS: Final = min(MAX_WORKERS_PER_CPU * _usable_cpus(), MAX_WORKERS_CEILING)
"""The most --workers accepted here: MAX_WORKERS_PER_CPU per usable CPU, at most
MAX_WORKERS_CEILING. More is refused as a usage error before anything forks."""

# --- connections and timeouts (both engines and services) -----------------------------

DEFAULT_MAX_CONNECTIONS: Final = 10_000
"""Global cap per server: the issue's target of tens of thousands needs raising
RLIMIT_NOFILE anyway. Servers raise their soft limit to back it and, where the hard limit
cannot, lower this default to what fits (socketkit._fdlimit), so a process with 1,024
descriptors refuses connections politely at its cap instead of failing accept()."""

DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: Final = 256
"""One peer (an address; on loopback, a local user) may not take every slot (ngircd's
MaxConnectionsIP defaults to 5; we serve tools and tests that open many connections
from 127.0.0.1)."""

DEFAULT_IDLE_TIMEOUT_S: Final = 300.0
"""A connection with no traffic in either direction for five minutes is closed (the
stdlib never times out: StreamRequestHandler.timeout is None)."""

DEFAULT_HANDSHAKE_TIMEOUT_S: Final = 10.0
"""Time from accept to the first complete protocol message (slowloris bound)."""

DEFAULT_AUTH_TIMEOUT_S: Final = 5.0
"""Authenticated wire-v1 services (exec, files): the hello and the whole authentication
must be done this long after the connection opens (plus any throttle delay announced to
the client). Three round trips take well under a second even across the world; a peer
that says hello and then nothing is cut off here, whatever the idle timeout of an
authenticated session is (exec has none)."""

DEFAULT_MAX_UNAUTHENTICATED_PER_ADDRESS: Final = 8
"""Connections from one peer (an address; a local user) that have not authenticated yet:
a real client needs one at a time (a few for parallel transfers); over it the peer's
oldest makes room, so silent ones cannot lock out the others."""

DEFAULT_MAX_UNAUTHENTICATED: Final = 512
"""Connections of one service not authenticated yet, from all peers together: an attacker
with many addresses (an IPv6 /48 holds 65,536 /64s) must not hold every connection
slot; with the 5 s deadline, holding 512 takes a steady 100 new connections a second."""

DEFAULT_CLIENT_HANDSHAKE_TIMEOUT_S: Final = 5.0
"""Clients: how long the server may take to answer the hello and the authentication
before the client says the address does not speak the protocol (an echo or HTTP port)."""

AUTH_FREE_FAILURES: Final = 5
"""Failed authentications from one address allowed within AUTH_FAILURE_WINDOW_S before
its attempts are delayed: enough for a few typos, far too few for guessing."""

AUTH_FAILURE_WINDOW_S: Final = 60.0
"""The window over which failures count (a minute, as fail2ban's default findtime is ten)."""

AUTH_MAX_DELAY_S: Final = 300.0
"""The longest delay imposed on an address (1 s after the free failures, doubling): five
minutes makes guessing a 256-bit token pointless while a real user is back soon."""

AUTH_MAX_ADDRESSES: Final = 10_000
"""Addresses the throttle remembers (the oldest is forgotten first): a bounded table, so
an attacker rotating addresses cannot exhaust memory (about 1 MB at the cap)."""

DEFAULT_WRITE_TIMEOUT_S: Final = 30.0
"""A peer that reads nothing for this long while we have data queued is disconnected."""

DEFAULT_CONNECT_TIMEOUT_S: Final = 10.0
"""Clients: how long to wait for a TCP connect before reporting the peer unreachable."""

DEFAULT_MESSAGE_TIMEOUT_S: Final = 60.0
"""Bytes of a message keep arriving but no message completes for this long: a slowloris
peer (one byte a minute of an endless line) is cut off even though it is never idle."""

DEFAULT_SHUTDOWN_GRACE_S: Final = 5.0
"""Graceful shutdown of the asyncio engine: how long connections may finish after the
listeners close, before they are aborted (same reasoning as DEFAULT_DRAIN_TIMEOUT_S)."""

DEFAULT_MAX_SEND_QUEUE: Final = 4 * 1024 * 1024
"""Bytes queued for one peer that is not reading before it is disconnected (IRC servers
call it the sendq; ngircd's default is 100 KB, ergo's 96 KiB for clients; we carry
bulk transfers too, hence more, and flow control pauses producers long before this)."""

DEFAULT_WRITE_HIGH_WATER: Final = 256 * 1024
"""Above this many queued bytes a connection counts as "not reading": producers wait
(await send) or the engine stops reading from that peer (echo), so memory stays bounded."""

DEFAULT_MAX_PENDING_MESSAGES: Final = 256
"""Decoded messages buffered for a handler task that is busy: past this, the engine stops
reading from the socket until the handler catches up (TCP flow control does the rest)."""

DEFAULT_SWEEP_INTERVAL_S: Final = 1.0
"""How often timeouts are checked: one pass over all connections instead of a timer per
connection per message (10,000 connections cost about a millisecond a pass)."""

DEFAULT_ACCEPT_BACKOFF_S: Final = 0.1
"""After EMFILE/ENFILE on accept, rest the listener this long before trying again."""

DEFAULT_TERMINATE_GRACE_S: Final = 2.0
"""exec: after SIGTERM, how long a command's processes get before SIGKILL (systemd's
default is 90 s for services; a command given a deadline has had its chance)."""

ADMIN_MAX_LINE: Final = 4096
"""Admin endpoint: longest HTTP request line or header line. Its URLs are a handful of
fixed paths; 4 KiB leaves room for proxies' headers (cookies are not expected)."""

ADMIN_MAX_HEADERS: Final = 64
"""Admin endpoint: header lines per request before 431 (curl sends 3, browsers ~15)."""

ADMIN_MAX_CONNECTIONS: Final = 64
"""Admin endpoint: open connections at once (a dashboard and a scraper need a few; one
answer per connection, so they do not stay)."""

ADMIN_MAX_CONNECTIONS_PER_ADDRESS: Final = 8
"""Admin endpoint: open connections from one peer (an address; a local user), so one
peer cannot hold every slot (a dashboard, a scraper and a person with curl need one or
two each; 8 peers are needed to fill the 64 slots, each slow one is cut by the header
deadline, and over a cap the oldest one still waiting for its head makes room)."""

ADMIN_HEADER_TIMEOUT_S: Final = 5.0
"""Admin endpoint: the whole request head must arrive within this time of connecting,
or the peer gets 408 and is closed. A client sends its few header lines at once (curl,
a scraper: well under a millisecond on loopback); a slowloris that sends them a byte at
a time is never idle, so only a deadline on the whole head bounds it (Apache's
mod_reqtimeout: header=20-40; nginx client_header_timeout 60 s, for the internet)."""

DEFAULT_MAX_ENTRIES: Final = 1_000_000
"""Entries (files, directories, links, kept partials) the root may hold (``serve files
--max-entries``). Each takes an inode whatever its size, and a file system has a fixed
number (a 16 GiB ext4 has a million); a scan of the root costs about 10 s of a core per
million entries, every ``RECONCILE_INTERVAL_S``. A million is more than a home
directory or a source tree holds; an archive of many small files needs more."""

DEFAULT_STATE_DIR: Final = ".socketkit"
"""Where every service keeps its state unless told otherwise (``--state-dir``): the token,
the databases, the audit logs; relative to the working directory, as git's ``.git``."""
