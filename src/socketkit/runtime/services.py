"""The services the runtime knows: each one's name, options class and ``build``.

The options classes are light (pure declarations); a service's ``build`` and its
engine are imported only when it is built, so ``socketkit serve X --help`` stays fast.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from socketkit.service import Service
from socketkit.services.admin.options import AdminOptions
from socketkit.services.chat.options import ChatOptions
from socketkit.services.echo.options import EchoOptions
from socketkit.services.filexfer.options import FilesOptions
from socketkit.services.rexec.options import ExecOptions
from socketkit.services.talk.options import TalkOptions

__all__ = ["ALL_SERVICES", "SERVICES", "ServiceKind", "option_classes"]


@dataclass(frozen=True)
class ServiceKind:
    """One service: its name (the ``serve`` subcommand and the file's table), its
    options class and the module whose ``build(options)`` makes it."""

    name: str
    options: type
    module: str
    summary: str
    description: str

    def build(self, options: Any, **extra: Any) -> Service:
        """The service ``options`` describe."""
        make: Callable[..., Service] = importlib.import_module(self.module).build
        return make(options, **extra)


SERVICES: dict[str, ServiceKind] = {
    kind.name: kind
    for kind in (
        ServiceKind(
            "echo",
            EchoOptions,
            "socketkit.services.echo.build",
            "echo server (TCP, UDP, Unix)",
            "Echo every byte (TCP, Unix) or datagram (UDP) back to its sender (RFC 862).",
        ),
        ServiceKind(
            "talk",
            TalkOptions,
            "socketkit.services.talk.build",
            "operator console talking with many clients",
            "Talk with many clients at once from this console. Lines from clients are shown "
            "with their id; type '@ID text' to answer one, plain text to tell all, "
            "'/list', '/kick ID', '/quit'.",
        ),
        ServiceKind(
            "chat",
            ChatOptions,
            "socketkit.services.chat.build",
            "IRC-compatible chat server",
            "An IRC server (RFC 1459/2812, IRCv3 basics) that irssi, weechat and HexChat can use.",
        ),
        ServiceKind(
            "files",
            FilesOptions,
            "socketkit.services.filexfer.build",
            "file transfer: upload and download with resume and verification",
            "Serve a directory: uploads and downloads with SHA-256 verification, resume, atomic "
            "writes, a path jail, quotas and an audit log.",
        ),
        ServiceKind(
            "exec",
            ExecOptions,
            "socketkit.services.rexec.build",
            "authenticated remote command execution",
            "Run commands for authenticated clients, like sshd runs `ssh host cmd`: argv "
            "lists without a shell, an allow-list of programs, each command confined by a "
            "sandbox (bubblewrap, else Landlock) to the root, the system directories and no "
            "network, timeouts and output caps that kill the whole process group, an audit log.",
        ),
    )
}

ALL_SERVICES = ("echo", "chat", "files", "exec")
"""What ``serve all`` runs (talk is an interactive console: ``serve talk`` on its own)."""


def option_classes() -> dict[str, type]:
    """Each configuration table's options class (services, and ``admin``)."""
    return {**{name: kind.options for name, kind in SERVICES.items()}, "admin": AdminOptions}
