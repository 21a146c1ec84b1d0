"""The command line, one module per group of commands; ``main`` parses and dispatches."""

from .main import main

__all__ = ["main"]
