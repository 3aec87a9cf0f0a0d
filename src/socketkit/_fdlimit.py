"""Raising the process's open-file limit to what a server's connection cap needs.

Many systems start processes with a soft limit of 1,024 descriptors while allowing far
more (the hard limit): a server capped at 10,000 connections would fail with EMFILE
long before its cap. Servers raise the soft limit themselves at start (as nginx's
``worker_rlimit_nofile`` and ngircd do), never above the hard limit, and say so when
the hard limit is below what the cap needs.
"""

from __future__ import annotations

from socketkit._log import get_logger

__all__ = ["FD_HEADROOM", "raise_open_files_limit"]

logger = get_logger(__name__)

FD_HEADROOM = 256
"""Descriptors beyond the connection caps: listeners, the event loop, log files, the
state database, pipes of exec's children, files being transferred."""


def raise_open_files_limit(connections: int) -> int:
    """Raise the soft RLIMIT_NOFILE to ``connections + FD_HEADROOM`` if it is lower (up
    to the hard limit); return the soft limit now in force (0 where there is none to
    manage, e.g. Windows)."""
    try:
        import resource  # noqa: PLC0415 (Unix only)
    except ImportError:
        return 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + FD_HEADROOM
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        if new > soft:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            except (ValueError, OSError) as exc:
                logger.warning("cannot raise the open-file limit from %d to %d: %s", soft, new, exc)
            else:
                soft = new
        if soft < wanted:
            logger.warning(
                "open-file limit %d (hard limit %s) is below the %d connections allowed: "
                "connections past about %d will be refused (raise `ulimit -n`)",
                soft,
                hard,
                connections,
                max(0, soft - FD_HEADROOM),
            )
    return int(soft)
