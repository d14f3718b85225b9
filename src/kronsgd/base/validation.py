"""Validation at the boundary: every public entry point checks its arguments here.

Each checker names the argument, says what was expected and what came, and returns the
value converted to the type the internals use. Nothing below the public API validates again.
"""

from __future__ import annotations

import numbers
import operator

import numpy as np

from .errors import ValidationError


def _describe(value) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def check_int(value, name: str, *, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` as an int in [low, high]; bools are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValidationError(f"{name} must be an int{_range_text(low, high)}. Got {_describe(value)}.")
    value = operator.index(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValidationError(f"{name} must be an int{_range_text(low, high)}. Got {value}.")
    return value


def check_float(
    value,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
) -> float:
    """Return ``value`` as a finite float in the given range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValidationError(f"{name} must be a real number. Got {_describe(value)}.")
    value = float(value)
    bound = f" > {low}" if not low_inclusive else f" >= {low}"
    if not np.isfinite(value):
        raise ValidationError(f"{name} must be a finite real number. Got {value}.")
    if low is not None and (value < low or (not low_inclusive and value == low)):
        raise ValidationError(f"{name} must be{bound}. Got {value}.")
    if high is not None and value > high:
        raise ValidationError(f"{name} must be <= {high}. Got {value}.")
    return value


def check_choice(value, name: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValidationError(f"{name} must be one of {options}. Got {_describe(value)}.")
    return value


def check_dtype(value, name: str = "dtype") -> np.dtype:
    """Accept float32 and float64 (as types, strings or dtypes)."""
    try:
        dtype = None if value is None else np.dtype(value)  # np.dtype(None) would be float64
    except (TypeError, ValueError, KeyError):
        dtype = None
    # `is None` first: None == np.dtype("float64") is True, so `in` alone lets it through.
    if dtype is None or dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValidationError(f"{name} must be numpy.float32 or numpy.float64. Got {_describe(value)}.")
    return dtype


def check_array(
    value,
    name: str,
    *,
    ndim: int | tuple[int, ...],
    dtype=np.float64,
    allow_empty: bool = False,
) -> np.ndarray:
    """Convert to a C-contiguous real array of the given ndim, finite everywhere."""
    if isinstance(value, (str, bytes)) or value is None:
        raise ValidationError(f"{name} must be a numeric array. Got {_describe(value)}.")
    try:
        raw = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"{name} must be a numeric array. Got {_describe(value)}: {exc}.") from None
    if raw.dtype == object or not (np.issubdtype(raw.dtype, np.number) or raw.dtype == bool):
        raise ValidationError(f"{name} must be a numeric array. Got dtype {raw.dtype}.")
    if np.issubdtype(raw.dtype, np.complexfloating):
        raise ValidationError(f"{name} must be real. Got complex dtype {raw.dtype}.")
    ndims = (ndim,) if isinstance(ndim, int) else ndim
    if raw.ndim not in ndims:
        wanted = " or ".join(str(k) for k in ndims)
        raise ValidationError(f"{name} must have {wanted} dimensions. Got shape {raw.shape}.")
    if raw.size == 0 and not allow_empty:
        raise ValidationError(f"{name} must not be empty. Got shape {raw.shape}.")
    with np.errstate(over="ignore"):
        array = np.ascontiguousarray(raw, dtype=dtype)
    finite = np.isfinite(array)
    if not finite.all():
        where = tuple(int(i) for i in np.argwhere(~finite)[0])
        raise ValidationError(
            f"{name} must be finite, but has {int((~finite).sum())} NaN or infinite value(s) "
            f"(the first at index {where}, value {raw[where]!r})."
        )
    return array


def check_indices(value, name: str, n: int) -> np.ndarray:
    """Convert an index selection (ints, slice or boolean mask) to an int64 array in [0, n)."""
    if isinstance(value, slice):
        return np.arange(n, dtype=np.int64)[value]
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = [value]
    raw = np.asarray(value)
    if raw.dtype == bool:
        if raw.shape != (n,):
            raise ValidationError(f"{name} as a boolean mask must have shape ({n},). Got {raw.shape}.")
        return np.flatnonzero(raw).astype(np.int64)
    if raw.ndim != 1 or not (np.issubdtype(raw.dtype, np.integer) or raw.size == 0):
        raise ValidationError(f"{name} must be a 1-d sequence of integer indices. Got {_describe(value)}.")
    idx = raw.astype(np.int64)
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise ValidationError(
            f"{name} must index {n} points (values in [-{n}, {n})). Got values in [{idx.min()}, {idx.max()}]."
        )
    return np.where(idx < 0, idx + n, idx)


def check_targets(y, name: str, n: int, outputs: int, dtype) -> np.ndarray:
    """Targets as an (n, outputs) array; a 1-d y is accepted for one output."""
    array = check_array(y, name, ndim=(1, 2), dtype=dtype)
    if array.ndim == 1:
        array = array[:, None]
    if array.shape != (n, outputs):
        want = f"({n},) or ({n}, 1)" if outputs == 1 else f"({n}, {outputs})"
        raise ValidationError(
            f"{name} must have shape {want} to match the data and the net's outputs. Got {np.shape(y)}."
        )
    return np.ascontiguousarray(array)


def _range_text(low, high) -> str:
    if low is None and high is None:
        return ""
    left = f"[{low}" if low is not None else "(-inf"
    right = f"{high}]" if high is not None else "inf)"
    return f" in the range {left}, {right}"
