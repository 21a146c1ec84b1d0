"""Argument types of the command line: each checks its value when the arguments are parsed,
so that a bad number ends in one ``error:`` line before any computation."""

from __future__ import annotations

import argparse
import ast
import math

from ..core.checks import parse_depth


class Parser(argparse.ArgumentParser):
    """argparse, its usage errors said in one line (``error: ...``) like every other error."""

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def param(text: str) -> tuple[str, object]:
    """NAME=VALUE: the value a Python literal (1.5, 2, True, 'a'), nan or inf, else the text
    (the activation's own checks say what it accepts)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE (e.g. beta=1.5), got {text!r}")
    try:
        parsed = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        try:
            parsed = float(value)
        except ValueError:
            parsed = value
    return key.strip(), parsed


def _number(text: str, cast):
    try:
        return cast(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if cast is int else 'a number'}, got {text!r}") from None


def integer(low: int):
    """An argparse type: an integer >= low."""
    def check(text: str) -> int:
        value = _number(text, int)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {value}")
        return value
    return check


positive_int, nonnegative_int = integer(1), integer(0)


def nonnegative_float(text: str) -> float:
    """An argparse type: a finite number >= 0."""
    value = _number(text, float)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def std(text: str) -> float:
    """An argparse type: a standard deviation, finite, >= 0, whose square (the variance the
    kernels use) is finite too."""
    value = nonnegative_float(text)
    if not math.isfinite(value * value):
        raise argparse.ArgumentTypeError(f"{text} squared (the variance) overflows float64; give "
                                         "a standard deviation below 1e154")
    return value


def depth(text: str) -> int | float:
    """An argparse type: a depth, an integer >= 1 or 'inf' (``core.checks.parse_depth``)."""
    try:
        return parse_depth(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def finite_depth(text: str) -> int:
    """An argparse type: a finite depth, an integer >= 1."""
    try:
        return parse_depth(text, infinite=False)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
