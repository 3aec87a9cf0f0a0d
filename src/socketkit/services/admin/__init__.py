"""The admin endpoint of ``socketkit serve all``: status and metrics over HTTP."""
