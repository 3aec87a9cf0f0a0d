"""Every numeric option of every command is checked at parsing: a bad value is a usage
error (exit 2, one line), never an exception later (timeouts 0, -1, nan, inf...)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from socketkit.cli._args import positive_float, positive_int
from socketkit.cli.main import build_parser, main


def every_parser(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield parser.prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from every_parser(sub)


def numeric_options() -> list[tuple[str, str, object]]:
    found = []
    for prog, parser in every_parser(build_parser()):
        for action in parser._actions:
            if action.type in (float, int):
                found.append(
                    (prog, action.option_strings[0] if action.option_strings else action.dest, action.type)
                )
            if action.type in (positive_float, positive_int) and action.option_strings:
                found.append((prog, action.option_strings[0], action.type))
    return found


def test_no_option_takes_an_unchecked_number() -> None:
    raw = [(prog, option) for prog, option, kind in numeric_options() if kind in (float, int)]
    assert raw == [], "use socketkit.cli._args types (positive_float, positive_int, port_arg...)"


def test_the_checked_options_are_found() -> None:
    options = {(prog, option) for prog, option, _ in numeric_options()}
    assert ("socketkit send", "--timeout") in options
    assert ("socketkit probe", "--timeout") in options
    assert ("socketkit talk", "--timeout") in options


SECONDS = ["0", "-1", "nan", "inf", "-inf", "1e400", "abc", "", "1e9"]


@pytest.mark.parametrize(
    "argv",
    [
        ["send", "127.0.0.1:9", "x", "--timeout"],
        ["probe", "127.0.0.1", "80", "--timeout"],
        ["talk", "127.0.0.1:9", "--timeout"],
        ["serve", "echo", "--idle-timeout"],
        ["serve", "exec", "--timeout"],
    ],
)
@pytest.mark.parametrize("value", SECONDS)
def test_bad_durations_are_usage_errors(
    argv: list[str], value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("socketkit ")
    assert "error: argument" in err[-1]
    assert "Traceback" not in "\n".join(err)


@pytest.mark.parametrize("value", ["0", "-3", "1.5", "x", "100000"])
def test_bad_counts_are_usage_errors(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "127.0.0.1", "80", "--concurrency", value]) == 2
    assert main(["cert", "--days", value if value != "100000" else "0"]) == 2
    assert "error: argument" in capsys.readouterr().err


def test_every_seconds_option_refuses_the_bad_values() -> None:
    for value in SECONDS:
        with pytest.raises(argparse.ArgumentTypeError):
            positive_float(value)
    assert positive_float("0.5") == 0.5
    assert positive_float("86400") == 86400.0
