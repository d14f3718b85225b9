"""Contractions of the implicit initial weights W0 with Kronecker points.

For two factors <w, u ⊗ v> = u^T W v with W the (d1, d2) row-major reshape of w; with k
factors the last axis is contracted by one GEMM and the others by cheap reductions. W0 is
regenerated block by block (see base/random.py) and dropped after use: O(m · n · d) work, O(n · d)
memory at most.
"""

from __future__ import annotations

import numpy as np

from ..base.random import W0_BLOCK, w0_blocks
from .kronecker import KroneckerData

_TEMP_BYTES = 8 * 2**20  # cap on one intermediate of the contraction: in cache is faster (measured)


def _contract_block(w_block: np.ndarray, factors: tuple[np.ndarray, ...], dims: tuple[int, ...]) -> np.ndarray:
    """<w_r, x_j> for a block of rows w_block (b, d) and points given by factors (n, R, d_l)."""
    b = w_block.shape[0]
    n, rank = factors[0].shape[:2]
    t = w_block.reshape(-1, dims[-1]) @ factors[-1].reshape(n * rank, dims[-1]).T  # (b·d1···d_{k-1}, nR)
    for l in range(len(dims) - 2, -1, -1):
        t = t.reshape(-1, dims[l], n * rank)  # (b·d1···d_{l-1}, d_l, nR)
        t = np.einsum("xaj,ja->xj", t, factors[l].reshape(n * rank, dims[l]))  # (b·d1···d_{l-1}, nR)
    return t.reshape(b, n, rank).sum(axis=2)  # (b, n)


def project_w0(seed: int, width: int, data: KroneckerData, dtype=np.float64) -> np.ndarray:
    """P0[r, j] = <w_r(0), x_j> for all neurons and points, shape (width, n), in ``dtype``."""
    dims = data.dims
    itemsize = np.dtype(dtype).itemsize
    factors = [f.astype(dtype, copy=False) for f in data.factors]
    per_point = W0_BLOCK * (data.d // dims[-1]) * data.rank * itemsize
    chunk = max(1, _TEMP_BYTES // per_point)
    out = np.empty((width, data.n), dtype=dtype)  # (m, n)
    for start, block in w0_blocks(seed, width, data.d):
        block = block.astype(dtype, copy=False)  # (b, d)
        rows = slice(start, start + block.shape[0])
        for j0 in range(0, data.n, chunk):
            cols = slice(j0, j0 + chunk)
            out[rows, cols] = _contract_block(block, tuple(f[cols] for f in factors), dims)
    return out


def dense_w0(seed: int, width: int, d: int) -> np.ndarray:
    """The initial weights materialised, shape (width, d), float64. Callers check the budget."""
    out = np.empty((width, d))  # (m, d)
    for start, block in w0_blocks(seed, width, d):
        out[start : start + block.shape[0]] = block
    return out
