"""``serve exec``'s options, declared once (flags, configuration file, environment)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from socketkit.options import (
    COUNT,
    FLAG,
    NAMES,
    SECONDS,
    SIZE,
    TEXT,
    ListenOptions,
    RootOption,
    StateOption,
    UnixOption,
    WorkersOption,
    choice,
    option,
    port_option,
)
from socketkit.services.rexec import policy

__all__ = ["EXEC_PORT", "ExecOptions"]

EXEC_PORT: Final = 7022
"""The exec service's port (next to ssh's 22, unprivileged)."""

_RULES = "what may run"
_LIMITS = "limits of each command (docs/security.md: what they bound under each sandbox)"
_SANDBOX = "sandbox (docs/security.md)"


@dataclass(frozen=True)
class ExecOptions(ListenOptions, UnixOption, WorkersOption, StateOption, RootOption):
    """Run commands for authenticated clients, like sshd runs ``ssh host cmd``.

    No idle timeout: a command may run silently for long; ``timeout`` bounds it.
    """

    port: int = port_option(EXEC_PORT)
    allow: tuple[str, ...] = option(
        tuple(sorted(policy.DEFAULT_ALLOWED)),
        "allow this program (name or absolute path); repeat; replaces the default list",
        NAMES,
        live=True,
        shown="programs that only read and print (docs/security.md)",
        group=_RULES,
        metavar="PROGRAM",
    )
    allow_any: bool = option(False, "allow every program (as sshd does)", FLAG, live=True, group=_RULES)
    allow_shell: bool = option(
        False, "accept shell command lines (/bin/sh -c)", FLAG, live=True, group=_RULES
    )
    env_allow: tuple[str, ...] = option(
        (),
        "also accept this client environment variable (NAME or PREFIX*); repeat",
        NAMES,
        live=True,
        group=_RULES,
        metavar="NAME",
    )
    timeout: float = option(
        policy.DEFAULT_TIMEOUT_S, "seconds a command may run", SECONDS, live=True, group=_RULES
    )
    max_output: int = option(
        policy.DEFAULT_MAX_OUTPUT,
        "stdout+stderr bytes per command before it is stopped",
        SIZE,
        live=True,
        group=_RULES,
    )
    max_procs: int = option(
        policy.DEFAULT_MAX_PROCS,
        "commands running at once, all --workers together; more get 'busy'",
        COUNT,
        group=_RULES,
    )
    no_auth: bool = option(False, "no token (refused unless listening on loopback only)", FLAG, group=_RULES)
    max_memory: int = option(policy.DEFAULT_MAX_MEMORY, "address space of each process", SIZE, group=_LIMITS)
    max_tasks: int = option(
        policy.DEFAULT_MAX_TASKS,
        "processes and threads; as root shared by all commands, which run as --run-as",
        COUNT,
        group=_LIMITS,
    )
    max_file_size: int = option(
        policy.DEFAULT_MAX_FILE_SIZE, "largest file a process may write", SIZE, group=_LIMITS
    )
    max_cpu_time: int = option(
        policy.DEFAULT_MAX_CPU_S, "CPU seconds of each process", COUNT, group=_LIMITS, metavar="SECONDS"
    )
    max_open_files: int = option(
        policy.DEFAULT_MAX_OPEN_FILES, "open files of each process", COUNT, group=_LIMITS
    )
    tmp_size: int = option(
        policy.SANDBOX_TMP_BYTES,
        "each command's private /tmp (bwrap; Landlock as root), in memory: --max-procs times this at most",
        SIZE,
        group=_LIMITS,
    )
    sandbox: str = option(
        "auto",
        "how commands are confined (auto: bwrap if it works here, else Landlock)",
        choice("auto", "bwrap", "landlock"),
        group=_SANDBOX,
    )
    no_sandbox: bool = option(
        False,
        "run commands unconfined (only the allow-list and --run-as apply): at your own risk",
        FLAG,
        group=_SANDBOX,
    )
    allow_network: bool = option(False, "give commands the network", FLAG, group=_SANDBOX)
    run_as: str = option(
        policy.DEFAULT_RUN_AS,
        "the user commands run as when the server runs as root; it needs write permission on the root",
        TEXT,
        group=_SANDBOX,
        metavar="USER",
    )
