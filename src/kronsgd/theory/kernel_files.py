"""Save and read a KernelModel: one versioned .npz file, written atomically, checked on load.

Format "kronsgd.KernelModel", version 1: an uncompressed NumPy .npz archive read with
``allow_pickle=False`` (loading never runs code), written by ``base.atomic.write_atomic``.
Its entries:

- ``metadata``: uint8 array, UTF-8 JSON: format, format_version, library_version, kind
  ("regressor" or "classifier"), dims, n, rank, outputs, shift, normalize, alpha, squeeze,
  and checksum {"algorithm": "sha256", "value": hex digest}.
- ``factor{l}``: float64 (n, R, d_l), the training points as the model keeps them.
- ``dual_coef``: float64 (n, C); ``offset``: float64 (C,).
- ``classes``: (C,) numbers or fixed-width strings, a classifier's labels (classifiers only).

The checksum covers the metadata (without itself) and every array in the order above
(``base.atomic.checksum``), as model/files.py does for TwoLayerNet files.
"""

from __future__ import annotations

import os

import numpy as np

from .._version import __version__
from ..base.atomic import write_atomic
from ..base.errors import ValidationError
from ..model.files import Damaged, read_checked_file

FORMAT_NAME = "kronsgd.KernelModel"
FORMAT_VERSION = 1


def save_kernel_model(model, path) -> None:
    """Write ``model`` (a KernelModel) to ``path`` atomically: old file or new, never half."""
    text = os.fspath(path) if isinstance(path, (str, os.PathLike)) else None
    if not isinstance(text, str) or not text:
        raise ValidationError(f"path must be a str or os.PathLike naming a file. Got {path!r}.")
    arrays = {f"factor{l}": np.ascontiguousarray(f, dtype=np.float64) for l, f in enumerate(model.support.factors)}
    arrays["dual_coef"] = np.ascontiguousarray(model.dual_coef)  # (n, C)
    arrays["offset"] = np.ascontiguousarray(model.offset)  # (C,)
    if model.classes is not None:
        arrays["classes"] = np.ascontiguousarray(model.classes)  # (C,)
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "kind": model.kind,
        "dims": list(model.dims),
        "n": model.n,
        "rank": model.support.rank,
        "outputs": model.outputs,
        "shift": model.shift,  # JSON writes the shortest repr: the float64 round-trips exactly
        "normalize": model.normalize,
        "alpha": model.alpha,
        "squeeze": model.squeeze,
    }
    write_atomic(text, meta, arrays)




def read_kernel_file(path) -> tuple[dict, dict[str, np.ndarray]]:
    """The checked metadata and arrays of the kernel model file at ``path``.

    Raises FileFormatError naming the path for a missing, foreign, other-version, truncated
    or damaged file (checksum, shapes or archive structure).
    """

    def check(meta, entries):
        if meta is None or meta.get("format") != FORMAT_NAME:
            raise Damaged(f"it is not a {FORMAT_NAME} file.")
        version = meta.get("format_version")
        if version != FORMAT_VERSION:
            advice = " Upgrade kronsgd to read it." if isinstance(version, int) and version > FORMAT_VERSION else ""
            raise Damaged(
                f"it is in format version {version!r} (written by kronsgd {meta.get('library_version', '?')}), "
                f"but this kronsgd reads format version {FORMAT_VERSION}.{advice}"
            )
        _check_metadata(meta)
        return _read_arrays(entries, meta)

    return read_checked_file(path, "kernel model", check)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_metadata(meta: dict) -> None:
    """The fields the reader relies on have the right JSON types (values are checked by KernelModel)."""
    checks = {
        "kind": meta.get("kind") in ("regressor", "classifier"),
        "dims": isinstance(meta.get("dims"), list) and len(meta["dims"]) >= 2 and all(map(_is_int, meta["dims"])),
        "n": _is_int(meta.get("n")) and meta["n"] >= 1,
        "rank": _is_int(meta.get("rank")) and meta["rank"] >= 1,
        "outputs": _is_int(meta.get("outputs")) and meta["outputs"] >= 1,
        "shift": _is_real(meta.get("shift")),
        "normalize": isinstance(meta.get("normalize"), bool),
        "alpha": _is_real(meta.get("alpha")),
        "squeeze": isinstance(meta.get("squeeze"), bool),
        "checksum": isinstance(meta.get("checksum"), dict)
        and meta["checksum"].get("algorithm") == "sha256"
        and isinstance(meta["checksum"].get("value"), str),
    }
    problems = [key for key, ok in checks.items() if not ok]
    if problems:
        raise Damaged(f"its metadata field(s) {', '.join(problems)} are missing or malformed: the file is damaged.")


def _read_arrays(entries: dict[str, np.ndarray], meta: dict) -> dict[str, np.ndarray]:
    """Every array entry, in checksum order, checked against the shapes the metadata promise."""
    n, C = meta["n"], meta["outputs"]
    f64 = np.dtype(np.float64)
    expected = {f"factor{l}": (n, meta["rank"], d) for l, d in enumerate(meta["dims"])}
    expected |= {"dual_coef": (n, C), "offset": (C,)}
    if meta["kind"] == "classifier":
        expected["classes"] = (C,)
    if set(entries) != set(expected):
        missing, extra = sorted(set(expected) - set(entries)), sorted(set(entries) - set(expected))
        raise Damaged(
            f"its entries do not match its metadata (missing {missing or 'none'}, unexpected {extra or 'none'})."
        )
    arrays = {}
    for name, shape in expected.items():
        array = entries[name]
        dtype_ok = array.dtype.kind in "biufU" if name == "classes" else array.dtype == f64
        if array.shape != shape or not dtype_ok:
            raise Damaged(
                f"entry '{name}' has shape {array.shape} and dtype {array.dtype}, but the metadata say {shape}"
                f"{'' if name == 'classes' else ' and float64'}: the file is damaged."
            )
        arrays[name] = array
    return arrays
