"""What the exec server is willing to run, and with which environment (pure).

- Programs: an allow-list by name (looked up on a fixed, safe PATH) or by absolute
  path. Anything else is refused; ``allow_any`` lifts the list (like ssh) explicitly.
- Shell command lines only with ``allow_shell``; otherwise a request is an argv list
  and nothing in it is ever interpreted (``"; rm -rf ~"`` is one literal argument).
- Environment: scrubbed to a fixed base (PATH, LANG, HOME) plus the variables a
  client asks for among ``env_allow`` (exact names, or prefixes ending in ``*``).
- Time: the client may ask for a shorter timeout than the server's, never a longer one.
- Resources: ``CommandLimits``, the kernel resource limits every process of a command
  gets (memory, processes, file size, CPU time, open files, no core dumps); the sandbox
  applies them (docs/security.md says which bound what under which backend).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from socketkit.errors import PermissionDenied

if TYPE_CHECKING:  # the policy reads a request; the command line imports it for defaults
    from socketkit.services.rexec.protocol import ExecRequest

__all__ = [
    "CPU_GRACE_S",
    "DEFAULT_ALLOWED",
    "DEFAULT_MAX_OUTPUT",
    "DEFAULT_MAX_PROCS",
    "DEFAULT_RUN_AS",
    "DEFAULT_TIMEOUT_S",
    "DEFAULT_ENV_ALLOW",
    "DEFAULT_MAX_CPU_S",
    "DEFAULT_MAX_FILE_SIZE",
    "DEFAULT_MAX_MEMORY",
    "DEFAULT_MAX_OPEN_FILES",
    "DEFAULT_MAX_TASKS",
    "SAFE_PATH",
    "SANDBOX_TMP_BYTES",
    "CommandLimits",
    "Decision",
    "ExecPolicy",
]

SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""The PATH commands run with (no ``.``, no user directories)."""

DEFAULT_ALLOWED = frozenset(
    {
        "cat", "df", "du", "echo", "false", "grep", "head", "id", "ls", "nproc", "pwd", "seq",
        "sha256sum", "sleep", "stat", "tail", "tr", "true", "uname", "uptime", "wc", "whoami",
        "yes",
    }
)  # fmt: skip
"""Programs allowed when the server names none (``--allow`` replaces the list).

Each one only reads and prints: none runs another program (``env``, ``nice``, ``timeout``,
``xargs``, ``find -exec``, ``sort --compress-program``, pagers, editors, interpreters) or
writes a file it is told to (``sort -o``, ``uniq IN OUT``, ``tee``, ``dd``), and none
changes the system (``date -s``, ``hostname NAME``). An allowed program brings all of its
features with it: the sandbox, not this list, is the boundary."""

DEFAULT_ENV_ALLOW = frozenset({"LANG", "LANGUAGE", "LC_*", "TZ", "TERM", "COLUMNS", "LINES"})
"""Variables a client may set: locale and terminal description, as ssh's AcceptEnv."""

DEFAULT_TIMEOUT_S = 3600.0
"""Seconds a command may run (wall time); a client may ask for less, never more."""

DEFAULT_MAX_OUTPUT = 1 << 40
"""Bytes of stdout+stderr per command before it is stopped: 1 TiB (the stream is never
buffered, so the cap is about runaway commands and disk-filling clients, not memory)."""

DEFAULT_MAX_PROCS = 32
"""Commands running at once (all workers together): each is a process tree; more are
refused as "busy"."""

DEFAULT_RUN_AS = "nobody"
"""The user commands run as when the server runs as root (``--run-as``)."""

DEFAULT_MAX_MEMORY = 2 << 30
"""Bytes of address space per process (RLIMIT_AS): 2 GiB holds a compiler, an
interpreter or sort's buffers; a runaway process (``tail`` of an endless line) gets
ENOMEM there instead of taking the machine's memory and waking the OOM killer."""

DEFAULT_MAX_TASKS = 256
"""Processes and threads (RLIMIT_NPROC), counted by the kernel per user: a pipeline,
``make -j`` or a thread pool fit; a fork bomb stops there, far below the machine's
pid_max (32,768 by default). As root every command runs as ``nobody``: the count is
then shared by all commands (docs/security.md)."""

DEFAULT_MAX_FILE_SIZE = 16 << 30
"""Largest file a process may write (RLIMIT_FSIZE): 16 GiB, above any build artefact or
log we expect; ``yes > f`` stops there (the write fails, SIGXFSZ ends the writer)."""

DEFAULT_MAX_CPU_S = 3600
"""CPU seconds per process (RLIMIT_CPU: SIGXCPU, then SIGKILL ``CPU_GRACE_S`` later):
the default timeout's hour on one core; the timeout bounds the command's wall time."""

CPU_GRACE_S = 1
"""Seconds of CPU between SIGXCPU and SIGKILL (the hard limit): a process that catches
SIGXCPU may say why it stops, and cannot raise its limit by more than this."""

DEFAULT_MAX_OPEN_FILES = 1024
"""Open files per process (RLIMIT_NOFILE): the classic soft limit (select()-based
programs break above it), instead of the server's own, raised for its connections."""


SANDBOX_TMP_BYTES = 64 << 20
"""Size of each command's private /tmp (a tmpfs, so memory: bwrap's, or the Landlock
launcher's as root). Scratch space for compilers and small spill files (large data
belongs in the root, on disk); all running commands together pin at most ``max_procs``
times this (2 GiB with the default 32)."""


@dataclass(frozen=True, slots=True)
class CommandLimits:
    """The resource limits of every process of a command (soft = hard, so a command
    cannot raise them; the CPU limit has ``CPU_GRACE_S`` between the two), with no core
    dumps (they would land in the root)."""

    memory: int = DEFAULT_MAX_MEMORY
    tasks: int = DEFAULT_MAX_TASKS
    file_size: int = DEFAULT_MAX_FILE_SIZE
    cpu_s: int = DEFAULT_MAX_CPU_S
    open_files: int = DEFAULT_MAX_OPEN_FILES

    def rlimits(self) -> dict[str, tuple[int, int]]:
        """``{"AS": (soft, hard), ...}``: the ``RLIMIT_*`` names without the prefix."""
        return {
            "AS": (self.memory, self.memory),
            "NPROC": (self.tasks, self.tasks),
            "FSIZE": (self.file_size, self.file_size),
            "CPU": (self.cpu_s, self.cpu_s + CPU_GRACE_S),
            "NOFILE": (self.open_files, self.open_files),
            "CORE": (0, 0),
        }

    def prlimit_args(self) -> list[str]:
        """The same limits as options of util-linux ``prlimit``."""
        return [f"--{name.lower()}={soft}:{hard}" for name, (soft, hard) in self.rlimits().items()]


@dataclass(frozen=True, slots=True)
class Decision:
    """What will run."""

    argv: tuple[str, ...]
    program: str  # the name or path to resolve (argv[0], or the shell)
    env: Mapping[str, str]
    timeout: float


@dataclass(frozen=True, slots=True)
class ExecPolicy:
    """The server's rules; see the module docstring."""

    allow: frozenset[str] = DEFAULT_ALLOWED
    allow_any: bool = False
    allow_shell: bool = False
    shell: str = "/bin/sh"
    env_allow: frozenset[str] = DEFAULT_ENV_ALLOW
    timeout: float = DEFAULT_TIMEOUT_S
    home: str = "/"
    base_env: Mapping[str, str] = field(default_factory=lambda: {"PATH": SAFE_PATH, "LANG": "C.UTF-8"})

    def decide(self, request: ExecRequest) -> Decision:
        """Check a request against the rules.

        Raises:
            PermissionDenied: a program, shell or variable the rules do not allow.
        """
        if request.shell is not None:
            if not self.allow_shell:
                raise PermissionDenied(
                    "shell command lines are disabled on this server (it needs --allow-shell); "
                    "send the program and its arguments instead"
                )
            argv: tuple[str, ...] = (self.shell, "-c", request.shell)
        else:
            argv = request.argv
            self._check_program(argv[0])
        env = dict(self.base_env)
        env["HOME"] = self.home
        refused = sorted(name for name in request.env if not self._env_allowed(name))
        if refused:
            allowed = ", ".join(sorted(self.env_allow))
            raise PermissionDenied(
                f"environment variables not accepted: {', '.join(refused)} (allowed: {allowed})"
            )
        env.update(request.env)
        timeout = self.timeout if request.timeout is None else min(request.timeout, self.timeout)
        return Decision(argv, argv[0], env, timeout)

    def _check_program(self, program: str) -> None:
        if self.allow_any:
            if "/" in program and not program.startswith("/"):
                raise PermissionDenied(f"relative program paths are not allowed: {program!r}")
            return
        if program in self.allow:
            if "/" in program and not program.startswith("/"):
                raise PermissionDenied(f"relative program paths are not allowed: {program!r}")
            return
        raise PermissionDenied(
            f"{program!r} is not an allowed program on this server "
            f"(allowed: {', '.join(sorted(self.allow)) or 'none'})"
        )

    def _env_allowed(self, name: str) -> bool:
        for pattern in self.env_allow:
            if pattern.endswith("*") and name.startswith(pattern[:-1]):
                return True
            if name == pattern:
                return True
        return False
