"""``kronsgd.load``: the model a file holds, a TwoLayerNet or a KernelModel, by its format name.

The format name is read from the archive's metadata entry alone; a kernel model file is
then read by kernel_files.py, and every other file (TwoLayerNet files, and files that are
no model at all) goes to ``model.load.load``, unchanged, with its own checks and messages.
"""

from __future__ import annotations

import json
import os

import numpy as np

from ..base.atomic import METADATA
from ..base.errors import FileFormatError, ValidationError
from ..data.kronecker import KroneckerData
from ..model.load import load as load_net
from .kernel_files import FORMAT_NAME, read_kernel_file
from .kernel_model import KernelModel


def load(path):
    """Read a model written by ``TwoLayerNet.save``, ``KernelModel.save`` or ``kronsgd train``.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    TwoLayerNet or KernelModel
        Whichever the file holds. Both have ``predict(data)`` and ``dims``/``d``/``outputs``.

    Raises
    ------
    FileFormatError (a ValidationError, a KronsgdError)
        Nothing is at ``path``, or the file is not a kronsgd model, was written in another
        format version, or is truncated or damaged; the message names the path and the problem.
    """
    if format_name(path) == FORMAT_NAME:
        return load_kernel_model(path)
    return load_net(path)


def format_name(path) -> str | None:
    """The ``format`` field of a kronsgd .npz file's metadata; None where there is none to read."""
    try:
        with np.load(os.fspath(path), allow_pickle=False) as archive:  # lazy: only the metadata is read
            raw = archive[METADATA]
        meta = json.loads(raw.tobytes().decode("utf-8")) if raw.dtype == np.uint8 and raw.ndim == 1 else None
    except Exception:  # noqa: BLE001 - not a readable archive: the TwoLayerNet reader says what is wrong
        return None
    return meta.get("format") if isinstance(meta, dict) else None


def load_kernel_model(path) -> KernelModel:
    """Read a KernelModel written by ``KernelModel.save`` (format in kernel_files.py)."""
    meta, arrays = read_kernel_file(path)
    try:
        return KernelModel(
            KroneckerData([arrays[f"factor{l}"] for l in range(len(meta["dims"]))]),
            arrays["dual_coef"],
            shift=meta["shift"],
            normalize=meta["normalize"],
            alpha=meta["alpha"],
            offset=arrays["offset"],
            classes=arrays.get("classes"),
            squeeze=meta["squeeze"],
        )
    except ValidationError as exc:
        raise FileFormatError(
            f"Cannot load a kronsgd kernel model from '{os.fspath(path)}': its metadata describe no valid model "
            f"({exc})."
        ) from None
