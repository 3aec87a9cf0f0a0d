"""SIGHUP: apply a service's new options to it while it runs, without dropping a
connection.

The options declared ``live`` change at once: the engine's caps and timeouts here (new
connections get the new idle timeout; open ones keep theirs), the rest through the
service's own ``reconfigure`` (allow-lists, operator and password files, quotas...).
What needs a restart (ports, hosts, TLS files...) is named in one log line and left as
it was. A new configuration that is wrong changes nothing, and says why in one line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from socketkit._log import get_logger
from socketkit.errors import ConfigError
from socketkit.options import declared
from socketkit.service import ENGINE_CAPS, Service

__all__ = ["prepare_options", "reload_services"]

logger = get_logger(__name__)


def prepare_options(service: Service, new: Any) -> tuple[Callable[[], None] | None, list[str], list[str]]:
    """Check ``new`` options against the running ``service`` (in a thread: the service
    may read files); return the function that applies them (on the loop; None: nothing
    to apply), the changes it applies (``name old -> new``) and the names of the changed
    options that need a restart.

    Raises:
        ConfigError: the service refused the new values (nothing changed).
    """
    old = service.options
    changed = {
        item.name: item for item in declared(type(old)) if getattr(old, item.name) != getattr(new, item.name)
    }
    live = {name: getattr(new, name) for name, item in changed.items() if item.info.live}
    restart = sorted(name for name, item in changed.items() if not item.info.live)
    applied = [f"{name} {getattr(old, name)!r} -> {value!r}" for name, value in live.items()]
    if not live:
        return None, applied, restart
    merged = replace(old, **live)
    commit_service = service.reconfigure(merged) if service.reconfigure is not None else None

    def commit() -> None:
        if commit_service is not None:
            commit_service()
        _apply_engine(service, live)
        service.options = merged

    return commit, applied, restart


def _apply_engine(service: Service, live: dict[str, Any]) -> None:
    for server in service.servers:
        for option, attribute in ENGINE_CAPS.items():
            if option in live:
                setattr(server, attribute, live[option])
        if "idle_timeout" in live and server.limits.idle_timeout is not None:
            server.limits = replace(server.limits, idle_timeout=live["idle_timeout"])


async def reload_services(services: Sequence[Service], reload: Callable[[], Mapping[str, Any]]) -> None:
    """Re-read the configuration (in a thread: it reads files) and apply it."""
    try:
        fresh = await asyncio.to_thread(reload)
    except (ConfigError, OSError, ValueError) as exc:
        logger.error("SIGHUP: the configuration was not reloaded: %s", exc)  # noqa: TRY400 (one line, no traceback)
        return
    for service in services:
        new = fresh.get(service.name)
        if new is None or service.options is None:
            continue
        try:
            # The service's reconfigure may read files (operator lists): a thread too.
            commit, applied, restart = await asyncio.to_thread(prepare_options, service, new)
        except (ConfigError, OSError, ValueError) as exc:
            logger.error("SIGHUP: %s kept its options: %s", service.name, exc)  # noqa: TRY400
            continue
        if commit is not None:
            commit()
        if applied:
            logger.info("SIGHUP: %s: %s", service.name, "; ".join(applied))
        elif not restart:
            logger.info("SIGHUP: %s: nothing changed", service.name)
        if restart:
            logger.warning(
                "SIGHUP: %s: %s changed, which needs a restart; kept as it was",
                service.name,
                ", ".join(restart),
            )
