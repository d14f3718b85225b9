"""``kronsgd.load``: a TwoLayerNet from the file ``TwoLayerNet.save`` wrote (format in files.py)."""

from __future__ import annotations

from ..base.errors import FileFormatError, ValidationError
from ..data.kronecker import KroneckerData
from .files import read_net_file
from .net import TwoLayerNet


def load(path) -> TwoLayerNet:
    """Read a TwoLayerNet written by ``TwoLayerNet.save``.

    The net predicts bit-identically to the one saved: the support points and alpha are the
    stored bits, and W0 and a are regenerated from the seed.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    TwoLayerNet

    Raises
    ------
    FileFormatError (a ValidationError, a KronsgdError)
        Nothing is at ``path``, or the file is not a kronsgd model, was written in another
        format version, or is truncated or damaged (checksum, shapes or archive
        structure); the message names the path and the problem.
    """
    meta, arrays = read_net_file(path)
    try:
        net = TwoLayerNet.from_config(meta)  # a version 1 file (no w0_stream) gets W0 as drawn then
        for b in range(len(meta["blocks"])):
            factors = [arrays[f"block{b}_factor{l}"] for l in range(len(meta["dims"]))]
            net.attach_support(KroneckerData(factors), arrays[f"block{b}_alpha"])
    except ValidationError as exc:
        raise FileFormatError(
            f"Cannot load a kronsgd model from '{path}': its metadata describe no valid net ({exc})."
        ) from None
    return net
