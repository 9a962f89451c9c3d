"""The `simq` command: a thin layer over the Python API, one module per subcommand."""

from simq.cli._main import main

__all__ = ["main"]
