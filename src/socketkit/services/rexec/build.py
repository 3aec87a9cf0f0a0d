"""``build(options) -> Service``: the exec server its options describe."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from socketkit.service import Service, engine_caps, listeners_for, tls_context_for
from socketkit.services.rexec.options import ExecOptions

__all__ = ["build"]


def _policy(options: ExecOptions, root: str) -> Any:
    from socketkit.services.rexec.policy import DEFAULT_ENV_ALLOW, ExecPolicy  # noqa: PLC0415

    return ExecPolicy(
        allow=frozenset(options.allow),
        allow_any=options.allow_any,
        allow_shell=options.allow_shell,
        env_allow=DEFAULT_ENV_ALLOW | frozenset(options.env_allow),
        timeout=options.timeout,
        home=root,
    )


def _give_to_run_as(root: str, user: str) -> None:
    """As root, commands run as ``run_as`` (nobody): the default root, which we created,
    becomes theirs so that they can write in it."""
    import pwd  # noqa: PLC0415

    if os.geteuid() != 0:
        return
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return  # the sandbox refuses the user itself, with the reason
    if os.stat(root).st_uid == 0:
        os.chown(root, entry.pw_uid, entry.pw_gid)


def build(options: ExecOptions) -> Service:
    """The exec server (refused if exposed without a token and TLS, or where no
    sandbox works and ``no_sandbox`` is not given: ``SandboxUnavailable``)."""
    from socketkit.auth.server_token import check_listeners, server_token  # noqa: PLC0415 (lazy: fast CLI)
    from socketkit.services.filexfer.build import default_root  # noqa: PLC0415
    from socketkit.services.rexec.policy import CommandLimits  # noqa: PLC0415
    from socketkit.services.rexec.sandbox import SandboxSettings  # noqa: PLC0415
    from socketkit.services.rexec.server import ExecServer, ExecSettings, check_allowed, prepare_sandbox  # noqa: PLC0415
    from socketkit.state import StateDB  # noqa: PLC0415

    listeners = listeners_for(options, tls_context_for(options))
    check_listeners("exec", listeners, has_token=not options.no_auth, needs_tls=True)
    if options.root is not None and not os.path.isdir(options.root):
        from socketkit.errors import ConfigError  # noqa: PLC0415

        raise ConfigError(f"exec: --root {options.root} is not a directory")
    root = os.path.realpath(default_root(options.state_dir, options.root))
    if options.root is None:
        _give_to_run_as(root, options.run_as)
    # Never visible to commands: the token and audit log, and the TLS key and certificate.
    hidden = [p for p in (options.state_dir, options.tls_key, options.tls_cert) if p]
    limits = CommandLimits(
        memory=options.max_memory,
        tasks=options.max_tasks,
        file_size=options.max_file_size,
        cpu_s=options.max_cpu_time,
        open_files=options.max_open_files,
    )
    sandbox = SandboxSettings(
        backend="none" if options.no_sandbox else options.sandbox,
        allow_network=options.allow_network,
        run_as=options.run_as,
        hidden=tuple(hidden),
        tmp_size=options.tmp_size,
        limits=limits,
    )
    settings = ExecSettings(
        root=root,
        policy=_policy(options, root),
        token=None,
        max_output=options.max_output,
        max_procs=options.max_procs,
        sandbox=sandbox,
        workers=options.workers,
    )
    # Everything that can refuse the start (root, sandbox, allow-list: one line) comes
    # before the token and the database are created.
    chosen = prepare_sandbox(settings)
    settings.token = server_token("exec", options.state_dir, no_auth=options.no_auth)
    settings.db = db = StateDB(options.state_dir)
    try:
        service = ExecServer(settings, chosen)
    except BaseException:
        db.close()
        raise

    def make() -> Any:
        return service.make_server(
            **engine_caps(options),
        )

    def reconfigure(new: ExecOptions) -> Callable[[], None]:
        policy = _policy(new, root)
        check_allowed(policy, service.sandbox)  # a bad list is refused, the old one kept

        def commit() -> None:
            settings.policy = policy
            settings.max_output = new.max_output

        return commit

    return Service(
        "exec",
        make,
        listeners,
        options,
        cleanups=[db.close, service.close],
        gauges=lambda: {"running": service.running},
        reconfigure=reconfigure,
        app=service,
    )
