"""Pieces every subcommand of the command line shares: option types, help format, JSON output."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: ...)" after every option that has a default worth showing."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def positive_int(text: str) -> int:
    """An option value that must be an int >= 1."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an int >= 1, got {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    """An option value that must be an int >= 0."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an int >= 0, got {text!r}")
    return value


def auto_or_positive_int(text: str):
    """'auto' or an int >= 1."""
    return "auto" if text == "auto" else positive_int(text)


def positive_float(text: str) -> float:
    """A finite float > 0."""
    value = _float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def auto_or_nonnegative_float(text: str):
    """'auto' or a finite float >= 0."""
    if text == "auto":
        return "auto"
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 'auto' or a number >= 0, got {text!r}")
    return value


def share(text: str) -> float:
    """A number in (0, 1]."""
    value = _float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1], got {text!r}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an int, got {text!r}") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def jsonable(value):
    """Plain JSON values: tuples and arrays become lists, NaN and infinities become null."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dump_json(value) -> str:
    """Strict JSON text (no NaN) of ``value``, indented."""
    return json.dumps(jsonable(value), indent=2, allow_nan=False)
