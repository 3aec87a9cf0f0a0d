"""The ``socketkit`` command line: argument parsing, terminal output and exit codes."""
