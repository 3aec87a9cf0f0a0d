"""``python -m socketkit``: the same as the ``socketkit`` command."""

from socketkit.cli.main import run

run()
