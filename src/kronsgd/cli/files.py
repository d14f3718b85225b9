"""Input and output files of the command line: points, targets and predictions.

A DATA file is a .npz holding either a dense ``X`` ((n, d) or (n, d1, d2), structured with
``KroneckerData.from_dense``) or Kronecker factors ``factor_0, ..., factor_{k-1}`` (each
(n, d_l) or (n, R, d_l)), and optionally the targets ``y``. A .npy file is read as ``X``.
Every problem with a file (missing, empty, foreign, truncated, damaged, wrong content)
becomes a ValidationError (FileFormatError for the file itself) that names the file and
what is wrong with it, so that the command exits 2 with one line.
"""

from __future__ import annotations

import dataclasses
import os
import warnings

import numpy as np

from ..base.errors import FileFormatError, ValidationError
from ..data.kronecker import KroneckerData

_FACTOR = "factor_"
_NPY_SIGNATURE = b"\x93NUMPY"  # the first bytes of every .npy file
_ZIP_SIGNATURE = b"PK\x03\x04"  # the first bytes of every .npz file (a ZIP archive)


@dataclasses.dataclass
class Points:
    """Points read from a DATA file, as factors, with how they were obtained.

    ``source`` is "factors" or "dense"; for dense input ``energy`` is the share of
    Σ ||x_i||² the factors keep and ``residual_max`` the worst relative residual.
    """

    data: KroneckerData
    y: np.ndarray | None  # (n,) or (n, C) targets stored in the file, if any
    source: str
    energy: float = 1.0
    residual_max: float = 0.0

    def describe(self) -> dict:
        """A JSON-ready description: n, dims, d, rank, source, energy, residual_max."""
        data = self.data
        return {
            "n": data.n,
            "dims": list(data.dims),
            "d": data.d,
            "rank": data.rank,
            "source": self.source,
            "energy": self.energy,
            "residual_max": self.residual_max,
        }


def read_arrays(path: str, what: str = "DATA", suffixes: tuple[str, ...] = (".npz", ".npy")) -> dict[str, np.ndarray]:
    """Every array of a .npz file (a .npy file becomes {"X": array}), read whole and checked.

    A missing, empty, foreign, truncated or damaged file raises FileFormatError naming
    ``what``, the path and what is wrong with it.
    """
    suffix = _existing(path, what, suffixes)
    with open(path, "rb") as handle:
        head = handle.read(len(_NPY_SIGNATURE))
    if not head:
        raise FileFormatError(f"{what} {path!r} is empty (0 bytes); it should be a {suffix} file.")
    kind = "npy" if head.startswith(_NPY_SIGNATURE) else "npz" if head.startswith(_ZIP_SIGNATURE) else None
    if kind != suffix[1:]:
        found = f"a .{kind} file; rename it to end in .{kind}" if kind else "another kind of file"
        raise FileFormatError(
            f"{what} {path!r} could not be read: it does not start with the signature of a {suffix} file, "
            f"so it is {found}."
        )
    try:  # np.load reads an .npz lazily: every entry is read here, so damage shows now
        if suffix == ".npy":
            return {"X": np.load(path, allow_pickle=False)}
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except Exception as exc:  # noqa: BLE001 - zipfile, zlib and numpy each raise their own types
        raise FileFormatError(
            f"{what} {path!r} could not be read as {suffix}: it is truncated, damaged or holds arrays other "
            f"than numbers ({type(exc).__name__}: {_first_line(exc)})."
        ) from None


def load_samples(path: str, key: str | None = None) -> np.ndarray:
    """``inspect``'s FILE: the array X of a .npy file, or of a .npz file (``key``, else "X", else its only array)."""
    arrays = read_arrays(path, "FILE", (".npy", ".npz"))
    if key is None:
        key = "X" if "X" in arrays or len(arrays) != 1 else next(iter(arrays))
    if key not in arrays:
        raise ValidationError(
            f"the key of the samples in {path!r} must be one of {list(arrays)} (pass --key NAME). Got {key!r}."
        )
    return arrays[key]


def load_points(path: str, shape="auto", rank="auto", energy=0.99, what: str = "DATA", expect_d=None) -> Points:
    """Read the points of a DATA file; a dense X is turned into factors by ``from_dense``.

    Parameters
    ----------
    path : str
        .npz with ``X`` or ``factor_0, factor_1, ...`` (and optionally ``y``), or .npy (X).
    shape, rank, energy
        Passed to ``KroneckerData.from_dense`` for a dense X; ignored for factors.
    expect_d : int, optional
        The input dimension a model expects; a dense X of another width is refused.
    """
    arrays = read_arrays(path, what)
    factor_keys = sorted((k for k in arrays if k.startswith(_FACTOR)), key=_factor_index(path, what))
    found = ", ".join(sorted(arrays)) or "no arrays"
    if "X" in arrays and factor_keys:
        raise ValidationError(
            f"{what} {path!r} holds both X and {factor_keys[0]}...; keep either the dense X or the factors."
        )
    y = arrays.get("y")
    try:
        if "X" in arrays:
            width = int(np.prod(np.shape(arrays["X"])[1:]))
            if expect_d is not None and np.ndim(arrays["X"]) in (2, 3) and width != expect_d:
                raise ValidationError(
                    f"X has d = {width} features per point (shape {np.shape(arrays['X'])}), "
                    f"but the model expects d = {expect_d}."
                )
            data = KroneckerData.from_dense(arrays["X"], shape=shape, rank=rank, energy=energy)
            return Points(data, y, "dense", float(data.energy), float(np.max(data.residual)))
        if factor_keys:
            expected = [f"{_FACTOR}{i}" for i in range(len(factor_keys))]
            if factor_keys != expected:
                raise ValidationError(
                    f"the factor arrays must be named {', '.join(expected)} (consecutive, from 0). "
                    f"Got {', '.join(factor_keys)}."
                )
            return Points(KroneckerData([arrays[k] for k in factor_keys]), y, "factors")
    except ValidationError as exc:
        raise ValidationError(f"{what} {path!r}: {exc}") from None
    raise ValidationError(
        f"{what} {path!r} must hold a dense array named X, (n, d) or (n, d1, d2), or factor arrays named "
        f"factor_0, factor_1, ... (each (n, d_l) or (n, R, d_l)). It holds: {found}."
    )


def load_targets(path: str) -> np.ndarray:
    """Targets from a .npy file or a CSV file (one column, or one column per output).

    A first line that is not numeric is taken as a header and skipped.
    """
    suffix = _existing(path, "--y", (".npy", ".csv"))
    if suffix == ".npy":
        return read_arrays(path, "--y", (".npy",))["X"]
    if os.path.getsize(path) == 0:
        raise FileFormatError(f"--y {path!r} is empty (0 bytes); it should hold one row of numbers per point.")
    try:
        return _read_csv(path)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise ValidationError(
            f"--y {path!r} is not a numeric CSV file (comma-separated numbers, one row per point, "
            f"an optional header line): {_first_line(exc)}"
        ) from None


def _read_csv(path: str) -> np.ndarray:
    with warnings.catch_warnings():  # an empty file warns; the shape check below reports it
        warnings.simplefilter("ignore", UserWarning)
        try:
            return np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64)
        except ValueError:  # perhaps a header line
            return np.loadtxt(path, delimiter=",", ndmin=2, skiprows=1, dtype=np.float64)


def check_targets_for(y, n: int, source: str) -> np.ndarray:
    """Targets (n,) or (n, C) as float64, finite, with one row per point; a CSV column becomes (n,)."""
    y = np.asarray(y)
    if y.dtype == object or not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
        raise ValidationError(f"the targets in {source} must be numbers. Got dtype {y.dtype}.")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim not in (1, 2) or y.shape[0] != n:
        raise ValidationError(
            f"the targets in {source} must have one row per point: shape ({n},) or ({n}, C). "
            f"Got shape {y.shape}, while DATA has {n} points."
        )
    y = y.astype(np.float64)
    bad = ~np.isfinite(y)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValidationError(
            f"the targets in {source} must be finite; {int(bad.sum())} are NaN or infinite (the first at {first})."
        )
    return y


def one_hot(labels: np.ndarray, outputs: int | None, source: str) -> np.ndarray:
    """Integer class labels 0..C-1 (n,) as one-hot targets (n, C); C = outputs or max label + 1."""
    if labels.ndim != 1:
        raise ValidationError(
            f"--classify needs one integer label per point in {source}. Got targets of shape {labels.shape}."
        )
    if np.any(labels < 0) or np.any(labels != np.round(labels)):
        raise ValidationError(
            f"--classify needs integer class labels 0, 1, ..., C-1 in {source}. Got values such as "
            f"{labels[(labels < 0) | (labels != np.round(labels))][0]!r}."
        )
    classes = int(labels.max()) + 1
    if outputs is not None and outputs < classes:
        raise ValidationError(f"--outputs {outputs} is too few for labels up to {classes - 1} in {source}.")
    eye = np.eye(outputs or max(classes, 2))
    return eye[labels.astype(np.int64)]  # (n, C)


def write_predictions(path: str, values: np.ndarray) -> None:
    """Save predictions (n,) or (n, C) as .npy or .csv, chosen by the file's suffix."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in (".npy", ".csv"):
        raise ValidationError(f"--out must end in .npy or .csv. Got {path!r}.")
    _check_writable(path, "--out")
    if suffix == ".npy":
        np.save(path, values)
    else:
        integers = np.issubdtype(values.dtype, np.integer)
        text = values.dtype.kind in "US"  # a kernel classifier's string labels
        np.savetxt(path, values, delimiter=",", fmt="%d" if integers else "%s" if text else "%.17g")


def check_output_path(path: str, option: str, suffixes: tuple[str, ...]) -> None:
    """Refuse before any work an output path with the wrong suffix or in a missing folder."""
    if os.path.splitext(path)[1].lower() not in suffixes:
        raise ValidationError(f"{option} must end in {' or '.join(suffixes)}. Got {path!r}.")
    _check_writable(path, option)


def _check_writable(path: str, option: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValidationError(f"{option} {path!r}: the folder {folder!r} does not exist; create it first.")
    if os.path.isdir(path):
        raise ValidationError(f"{option} {path!r} is a folder; give a file name.")


def _existing(path: str, what: str, suffixes: tuple[str, ...]) -> str:
    suffix = os.path.splitext(path)[1].lower()
    if not os.path.isfile(path):
        raise FileFormatError(f"{what} {path!r} does not exist (or is not a file).")
    if suffix not in suffixes:
        raise FileFormatError(f"{what} must be a {' or '.join(suffixes)} file. Got {path!r}.")
    return suffix


def _factor_index(path: str, what: str):
    def key(name: str) -> int:
        tail = name[len(_FACTOR) :]
        if not tail.isdigit():
            raise ValidationError(f"{what} {path!r}: factor arrays are named factor_0, factor_1, ... Got {name!r}.")
        return int(tail)

    return key


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
