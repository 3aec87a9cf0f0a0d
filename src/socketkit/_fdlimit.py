"""Fitting the servers' connection caps to the open-file limit the process can get.

Every connection holds a descriptor, so a cap is only real if RLIMIT_NOFILE allows it.
Many systems start processes with a soft limit of 1,024 while allowing far more (the
hard limit): servers raise the soft limit themselves at start (as nginx's
``worker_rlimit_nofile`` and ngircd do), never above the hard limit. Where even the
hard limit is too low, the caps the user left at their defaults are lowered to what
fits, silently: a default is a guess at what the machine can hold, and a cap that the
limit cannot back would end in EMFILE at accept instead of the polite refusal the cap
gives. A cap the user chose is kept as chosen; when it cannot be met, one warning line
names it and the limit (the only thing said about the limit).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from socketkit._log import get_logger

__all__ = ["FD_HEADROOM", "ConnectionCap", "fit_connection_caps", "fit_options"]

logger = get_logger(__name__)

FD_HEADROOM = 256
"""Descriptors beyond the connection caps: listeners, the event loop, log files, the
state database, pipes of exec's children, files being transferred."""


@dataclass(frozen=True, slots=True)
class ConnectionCap:
    """One server's cap on open connections, as configured.

    Attributes:
        service: the service it belongs to (``echo``), for the warning line.
        value: the cap.
        explicit: the user set it (a flag, a file, the environment); ``False`` for a
            declared default, which may be lowered to fit.
        given_as: how the user set it, for the warning line (``--max-connections 50000``,
            ``max_connections = 50000 at socketkit.toml:3``).
    """

    service: str
    value: int
    explicit: bool
    given_as: str = ""


def fit_connection_caps(caps: Sequence[ConnectionCap], *, reserved: int = 0) -> list[int]:
    """Raise the soft RLIMIT_NOFILE to what ``caps`` need (up to the hard limit) and
    return the cap each server should use, in the order given.

    Args:
        caps: the connection caps of the servers this process runs (each ``--workers``
            worker is a process of its own, with the same caps).
        reserved: descriptors for fixed connections besides the caps (the admin
            endpoint's), kept like ``FD_HEADROOM``.

    Returns:
        explicit caps unchanged; defaults unchanged where the limit backs them, else
        shares of what is left (each at least 1).
    """
    values = [cap.value for cap in caps]
    try:
        import resource  # noqa: PLC0415 (Unix only)
    except ImportError:  # Windows: no limit to manage
        return values
    wanted = sum(values) + reserved + FD_HEADROOM
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return values
    if soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        if new > soft:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            except (ValueError, OSError) as exc:  # macOS: kern.maxfilesperproc below hard
                logger.debug("cannot raise the open-file limit from %d to %d: %s", soft, new, exc)
            else:
                soft = new
    if soft >= wanted:
        return values
    budget = max(0, soft - reserved - FD_HEADROOM)
    chosen = [cap for cap in caps if cap.explicit]
    needed = sum(cap.value for cap in chosen)
    if needed > budget:
        named = " and ".join(f"{cap.service} {cap.given_as or cap.value}" for cap in chosen)
        logger.warning(
            "%s cannot be met: the open-file limit is %d (hard limit %s) and %d descriptors "
            "are kept for listeners and files, so connections past about %d will be refused "
            "(raise `ulimit -n`, or lower the cap)",
            named,
            soft,
            "unlimited" if hard == resource.RLIM_INFINITY else hard,
            soft - budget,
            budget,
        )
    defaults = sum(cap.value for cap in caps if not cap.explicit)
    left = max(0, budget - needed)
    fitted = [
        cap.value if cap.explicit else max(1, min(cap.value, cap.value * left // max(1, defaults)))
        for cap in caps
    ]
    logger.debug("open-file limit %d: connection caps fitted to %s", soft, fitted)
    return fitted


_DEFAULTS = ("default", "serve all")
"""Where a value comes from when nobody chose it (``runtime.config.Resolved.sources``)."""


def fit_options(chosen: Sequence[tuple[str, Any, str]], *, reserved: int = 0) -> list[Any]:
    """Each service's options with ``max_connections`` fitted (``fit_connection_caps``).

    Args:
        chosen: per service, its name, its options (a dataclass with
            ``max_connections``) and where that value came from (``default``, ``flag``,
            ``env NAME``, ``FILE:LINE``: ``runtime.config.Resolved.sources``).
        reserved: descriptors for other fixed connections (the admin endpoint's).
    """
    caps = []
    for name, options, source in chosen:
        value = options.max_connections
        given_as = (
            f"--max-connections {value}" if source == "flag" else f"max_connections = {value} ({source})"
        )
        caps.append(ConnectionCap(name, value, source not in _DEFAULTS, given_as))
    fitted = fit_connection_caps(caps, reserved=reserved)
    return [
        options if options.max_connections == value else replace(options, max_connections=value)
        for (_, options, _), value in zip(chosen, fitted, strict=True)
    ]
