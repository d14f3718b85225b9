"""Save and load a TwoLayerNet: one versioned .npz file, written atomically, checked on load.

Format "kronsgd.TwoLayerNet", version 2 (version 1 is read too): an uncompressed NumPy .npz archive (``np.savez``)
read with ``allow_pickle=False``, so loading never runs code. Its entries:

- ``metadata``: uint8 array, UTF-8 JSON: format, format_version, library_version, dims,
  width, outputs, shift, seed, normalize, init ("gaussian" or "kronecker"), init_rank (K or
  null), w0_stream (how W0 is drawn, base/random.py), blocks (one {"n", "rank",
  "alpha_dtype"} per support block) and checksum {"algorithm": "sha256", "value": hex
  digest}. Version 1 files have no init, init_rank nor w0_stream: a Gaussian W0 of stream 1.
- ``block{b}_factor{l}``: float64 (n_b, R_b, d_l), the unit-normalised points of support
  block b (the training points of one trainer), factor l.
- ``block{b}_alpha``: (m, n_b) float32 or float64, that block's coefficients.

The initial weights W0 and the second layer a are not stored: both are regenerated,
bit for bit, from ``seed`` (counter-based Philox streams, see base/random.py), so a file's size
depends on the support points and alpha, never on d. The checksum is SHA-256 over the
metadata without the checksum (JSON with sorted keys and separators "," and ":"), then every
array entry in the order above: its name, dtype, shape and C-order bytes.
"""

from __future__ import annotations

import os

import numpy as np

from .._version import __version__
from ..base.atomic import checksum, read_npz, write_atomic
from ..base.errors import FileFormatError, KronsgdError, ValidationError

FORMAT_NAME = "kronsgd.TwoLayerNet"
FORMAT_VERSION = 2
_READABLE = (1, 2)  # version 1: no init fields, W0 of stream 1
_ALPHA_DTYPES = ("float32", "float64")


# ---- writing -----------------------------------------------------------------------------
def net_arrays(net) -> dict[str, np.ndarray]:
    """The array entries of ``net``'s file, in checksum order (blocks, then factors, then alpha)."""
    arrays = {}
    for b, (support, alpha) in enumerate(net._support):
        for l, factor in enumerate(support.factors):
            arrays[f"block{b}_factor{l}"] = np.ascontiguousarray(factor, dtype=np.float64)  # (n_b, R_b, d_l)
        arrays[f"block{b}_alpha"] = np.ascontiguousarray(alpha)  # (m, n_b)
    return arrays


def net_metadata(net, arrays: dict[str, np.ndarray]) -> dict:
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        **net.config(),
        "blocks": [
            {"n": support.n, "rank": support.rank, "alpha_dtype": alpha.dtype.name} for support, alpha in net._support
        ],
    }
    return meta


def save_net(net, path) -> None:
    """Write ``net`` to ``path`` atomically: the file there is either the old one or the new one.

    The archive goes to a temporary file in the same directory, is flushed and fsync'ed,
    then renamed over ``path`` (``os.replace``, atomic on POSIX and Windows) and the
    directory is fsync'ed so that the rename survives a crash (see base/atomic.py, write_atomic).
    """
    path = _check_path(path)
    arrays = net_arrays(net)
    write_atomic(path, net_metadata(net, arrays), arrays)


def _check_path(path) -> str:
    text = os.fspath(path) if isinstance(path, (str, os.PathLike)) else None
    if not isinstance(text, str) or not text:
        raise ValidationError(f"path must be a str or os.PathLike naming a file. Got {path!r}.")
    return text


# ---- reading -----------------------------------------------------------------------------
class Damaged(KronsgdError):
    """What is wrong with a model file; ``read_checked_file`` turns it into a FileFormatError naming the path."""


def read_checked_file(path, what: str, check) -> tuple[dict, dict[str, np.ndarray]]:
    """The metadata and arrays of a model file whose checksum holds: the one reader of both kinds.

    ``check(meta, entries)`` validates the format, version and metadata and returns the arrays
    the metadata promise, raising ``Damaged`` otherwise. Every failure, a missing file included,
    becomes a FileFormatError "Cannot load a kronsgd {what} from '{path}': ...".
    """
    path = _check_path(path)
    if not os.path.isfile(path):
        raise FileFormatError(f"Cannot load a kronsgd {what} from '{path}': no such file.")
    try:
        try:
            meta, entries = read_npz(path, "kronsgd model")
        except FileFormatError as exc:
            raise Damaged(str(exc)) from None
        arrays = check(meta, entries)
        if checksum(meta, arrays) != meta["checksum"]["value"]:
            raise Damaged("its contents do not match the stored SHA-256 checksum: the file is damaged or was edited.")
    except Damaged as exc:
        raise FileFormatError(f"Cannot load a kronsgd {what} from '{path}': {exc}") from None
    return meta, arrays


def read_net_file(path) -> tuple[dict, dict[str, np.ndarray]]:
    """The checked metadata and arrays of the model file at ``path``.

    Raises FileFormatError naming the path for a missing, foreign, other-version, truncated or
    damaged file (checksum, shapes or archive structure).
    """
    return read_checked_file(path, "model", lambda meta, entries: _read_arrays(entries, _check_format(meta, entries)))


def _check_format(meta: dict | None, entries: dict) -> dict:
    if meta is None:
        found = ", ".join(sorted(entries)[:5]) or "nothing"
        raise Damaged(
            f"it is a .npz archive but not a kronsgd model (its metadata entry is missing or not UTF-8 JSON; "
            f"it holds {found})."
        )
    if meta.get("format") != FORMAT_NAME:
        raise Damaged(f"its format is {meta.get('format')!r}, not {FORMAT_NAME!r}.")
    version = meta.get("format_version")
    if version not in _READABLE:
        writer = meta.get("library_version", "an unknown version")
        advice = "Upgrade kronsgd to read it." if isinstance(version, int) and version > FORMAT_VERSION else ""
        raise Damaged(
            f"it is in format version {version!r} (written by kronsgd {writer}), but this kronsgd reads "
            f"format versions {', '.join(map(str, _READABLE))}. {advice}".rstrip()
        )
    _check_metadata(meta)
    return meta


def _check_metadata(meta: dict) -> None:
    """The fields the reader relies on have the right JSON types (values are checked by TwoLayerNet)."""

    def is_int(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    problems = []
    if not (isinstance(meta.get("dims"), list) and len(meta["dims"]) >= 2 and all(map(is_int, meta["dims"]))):
        problems.append("dims")
    for key in ("width", "outputs", "seed"):
        if not is_int(meta.get(key)):
            problems.append(key)
    if not isinstance(meta.get("shift"), (int, float)) or isinstance(meta.get("shift"), bool):
        problems.append("shift")
    if not isinstance(meta.get("normalize"), bool):
        problems.append("normalize")
    if meta["format_version"] >= 2:
        if meta.get("init") not in ("gaussian", "kronecker"):
            problems.append("init")
        if not (meta.get("init_rank") is None or is_int(meta.get("init_rank"))):
            problems.append("init_rank")
        if not is_int(meta.get("w0_stream")):
            problems.append("w0_stream")
    blocks = meta.get("blocks")
    if not isinstance(blocks, list) or not all(
        isinstance(b, dict) and is_int(b.get("n")) and is_int(b.get("rank")) and b.get("alpha_dtype") in _ALPHA_DTYPES
        for b in blocks
    ):
        problems.append("blocks")
    digest = meta.get("checksum")
    if not (isinstance(digest, dict) and digest.get("algorithm") == "sha256" and isinstance(digest.get("value"), str)):
        problems.append("checksum")
    if problems:
        raise Damaged(f"its metadata field(s) {', '.join(problems)} are missing or malformed: the file is damaged.")


def _read_arrays(entries: dict[str, np.ndarray], meta: dict) -> dict[str, np.ndarray]:
    """Every array entry, checked against the shapes and dtypes the metadata promise."""
    dims, width = meta["dims"], meta["width"]
    expected = {}
    for b, block in enumerate(meta["blocks"]):
        for l, d in enumerate(dims):
            expected[f"block{b}_factor{l}"] = ((block["n"], block["rank"], d), np.dtype(np.float64))
        expected[f"block{b}_alpha"] = ((width, block["n"]), np.dtype(block["alpha_dtype"]))
    present = set(entries)
    if present != set(expected):
        missing, extra = sorted(set(expected) - present), sorted(present - set(expected))
        raise Damaged(
            f"its entries do not match its metadata (missing {missing or 'none'}, unexpected {extra or 'none'})."
        )
    arrays = {}
    for name, (shape, dtype) in expected.items():
        array = entries[name]
        if array.shape != shape or array.dtype != dtype:
            raise Damaged(
                f"entry '{name}' has shape {array.shape} and dtype {array.dtype}, but the metadata say "
                f"{shape} and {dtype}: the file is damaged."
            )
        arrays[name] = array
    return arrays
