"""The ``infnet`` command: one parser, a module per group of commands (``catalog``: activations
and limit; ``kernels``: kernel and solve; ``study``; ``predict``; ``finite``: finite against
infinite width and signal propagation; ``lee2020``: finite against infinite convolutional
networks on digits; ``heavy-tails``: scale mixtures of NNGPs).

Every user mistake and fault of the environment ends in one ``error: ...`` line (``main``);
numbers are checked when the arguments are parsed (``args``), output paths before any
computation."""

from __future__ import annotations

import argparse
import shlex
import sys

from . import catalog, finite, heavy_tails, kernels, lee2020, predict, study
from .args import Parser


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="infnet", description="Infinitely wide and deep networks through their "
               "activation functions.")
    sub = p.add_subparsers(dest="command", required=True)
    catalog.add_parsers(sub)
    kernels.add_parsers(sub)
    study.add_parser(sub)
    predict.add_parser(sub)
    finite.add_parsers(sub)
    lee2020.add_parser(sub)
    heavy_tails.add_parser(sub)
    return p


def _os_message(err: OSError) -> str:
    """An environment fault in words: infnet's own OSErrors carry their message; the system's
    name the file and the reason ("missing.npy: No such file or directory")."""
    if err.filename is None:
        return str(err) if err.strerror is None else f"{err.strerror} ({type(err).__name__})"
    return f"{err.filename}{f' -> {err.filename2}' if err.filename2 else ''}: {err.strerror or err}"


def main(argv: list[str] | None = None) -> int:
    """The ``infnet`` command. A user's mistake or a fault of the environment (files, network,
    memory) is one ``error: ...`` line and a non-zero status; other exceptions are bugs."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help (0), or a usage error already said (2)
        return done.code
    args.command_line = "infnet " + shlex.join(argv)
    message, status = None, 2
    try:
        return args.func(args)
    except KeyboardInterrupt:
        message, status = ("interrupted (a study or a kernel store continues where it stopped "
                           "when the same command is run again)"), 130
    except (ValueError, KeyError, TypeError, ArithmeticError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    except OSError as err:  # files, folders, disks, connections
        message, status = _os_message(err), 1
    except MemoryError:
        message, status = ("out of memory: use fewer points, or a kernel store in tiles "
                           "(infnet kernel --store) for large data"), 1
    except ImportError as err:
        if (err.name or "").startswith("infnet"):
            raise
        message, status = str(err), 1
    print(f"error: {message}", file=sys.stderr)
    return status
