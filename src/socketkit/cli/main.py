"""``socketkit`` console script: subcommands, logging, one-line errors, exit codes.

``main(argv) -> int`` never calls ``sys.exit``; ``run()`` (the console script) does.
Errors print as ``TypeName: message`` on stderr with exit status 1 (2 for usage
errors, 130 for Ctrl-C); ``--debug`` shows the traceback instead. A reader of standard
output that goes away (``| head``) ends any command quietly with status 141, as it ends
``cat`` (see ``socketkit._stdio``). Subcommand modules
import their heavy dependencies (asyncio, rich) only when they run, so the command
starts fast.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from socketkit._logformat import LOG_FORMATS, TEXT_FORMAT, formatter
from socketkit._stdio import (
    EXIT_BROKEN_PIPE,
    StdoutClosed,
    discard_stdout,
    fill_closed_standard_streams,
    guard_stdout,
)
from socketkit._version import __version__
from socketkit.cli._errors import error_line

__all__ = ["build_parser", "main", "run"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# Each module adds its subcommands and sets ``func`` on them; the commands each one adds.
# Only the module of the command being run is imported (a command starts in tens of
# milliseconds); ``--help`` and an unknown command import them all.
_COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "serve": ("serve",),
    "send": ("send",),
    "listen": ("listen",),
    "talk": ("talk",),
    "probe": ("probe",),
    "rexec": ("exec",),
    "files_client": ("put", "get", "ls", "rm", "mkdir"),
    "chat": ("chat", "passwd"),
    "cert": ("cert",),
    "status": ("status",),
    "config": ("config",),
}
_GLOBAL_WITH_VALUE = frozenset({"--log-format"})


def _command_of(argv: Sequence[str]) -> str | None:
    """The command word in ``argv`` (after the global options), or None."""
    tokens = iter(argv)
    for token in tokens:
        if token in _GLOBAL_WITH_VALUE:
            next(tokens, None)
        elif not token.startswith("-"):
            return token
    return None


def _adders(
    argv: Sequence[str] | None,
) -> list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]]:
    import importlib  # noqa: PLC0415

    command = _command_of(argv) if argv is not None else None
    if command is None and argv is not None and "--version" in argv:
        return []
    chosen = [module for module, commands in _COMMAND_MODULES.items() if command in commands]
    return [importlib.import_module(f"socketkit.cli.{m}").add_parsers for m in chosen or _COMMAND_MODULES]


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """Return the argument parser: with the subcommand ``argv`` names, or every one."""
    parser = argparse.ArgumentParser(
        prog="socketkit",
        description="TCP/UDP services and clients done right.",
    )
    parser.add_argument("--version", action="version", version=f"socketkit {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors in the log")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=None,
        help="log lines as text (the default) or one JSON object per line "
        "(also [all] log_format in the configuration, SOCKETKIT_ALL_LOG_FORMAT)",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for add in _adders(argv):
        add(commands)
    return parser


def _configure_logging(verbose: int, quiet: bool, debug: bool, log_format: str | None) -> None:
    level = logging.INFO
    if quiet:
        level = logging.ERROR
    elif debug or verbose > 0:
        level = logging.DEBUG
    logging.basicConfig(level=level, format=TEXT_FORMAT, stream=sys.stderr)
    if log_format is not None:
        for handler in logging.root.handlers:
            handler.setFormatter(formatter(log_format))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        the exit status.
    """
    try:
        status = _main(argv)
        # Here, not at interpreter exit: a reader gone by the last write is seen by the
        # handler below rather than printed as "Exception ignored ... BrokenPipeError".
        sys.stdout.flush()
    except StdoutClosed:  # `| head` stopped reading: the normal end of a pipeline
        discard_stdout()
        return EXIT_BROKEN_PIPE
    return status


def _main(argv: Sequence[str] | None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
    except StdoutClosed:
        raise
    except SystemExit as exc:  # argparse exits for --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    _configure_logging(args.verbose, args.quiet, args.debug, args.log_format)
    try:
        status: int = func(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        if args.debug:
            raise
        print(error_line(exc, args), file=sys.stderr)
        return EXIT_FAILURE
    return status


def run() -> None:
    """Console-script entry point (and ``python -m socketkit``)."""
    fill_closed_standard_streams()
    guard_stdout()
    sys.exit(main())
