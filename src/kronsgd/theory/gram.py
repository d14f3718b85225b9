"""Kernel matrices over Kronecker points, built in blocks at BLAS speed.

An inner product <x_i, y_j> of rank-R1 and rank-R2 points costs R1 · R2 · Σ_l d_l from the
factors (one GEMM per factor over all R1 · R2 term pairs of a block of points, a Hadamard
product, a sum over the pairs) and d from dense rows (one GEMM on rows materialised from
the factors by a batched matmul, n · R · d to build). Each block takes the cheaper route
(DESIGN.md §3), is handed to a transform (the NTK's ρ ↦ ρ · Pr) while it is still in cache,
and is written once; a symmetric matrix computes its upper triangle and mirrors it. No
d-length vector is formed on the factor route; the dense route forms blocks of rows only.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..data.kronecker import KroneckerData

BLOCK_BYTES = 64 * 2**20  # one block temporary (GEMM product or dense rows) stays this small


def inner_product_cost(data: KroneckerData, other: KroneckerData) -> tuple[str, int]:
    """(route, multiply-adds per entry): "factors" at R1 · R2 · Σ d_l, or "dense" at d."""
    factors = data.rank * other.rank * sum(data.dims)
    return ("dense", data.d) if data.d < factors else ("factors", factors)


def kernel_matrix(
    data: KroneckerData,
    other: KroneckerData | None = None,
    transform: Callable[[np.ndarray, int, int], None] | None = None,
    out: np.ndarray | None = None,
    block_bytes: int = BLOCK_BYTES,
) -> np.ndarray:
    """K[i, j] = transform(<x_i, y_j>), blockwise; symmetric (upper triangle, mirrored) when other is None.

    Parameters
    ----------
    data : KroneckerData
        n points x_i.
    other : KroneckerData or None
        n2 points y_j of the same dims; None means ``data`` itself.
    transform : callable(block, i0, j0) or None
        Called on every (rows, cols) C-contiguous float64 block of inner products, the one
        at out[i0:, j0:], which it overwrites in place. With other=None a block with
        i0 == j0 lies on the diagonal (<x_i, x_i>).
    out : ndarray (n, n2) or None
        Written in place when given (C-contiguous float64).
    block_bytes : int
        Bytes of one block temporary.

    Returns
    -------
    ndarray (n, n2), float64
    """
    symmetric = other is None
    other = data if symmetric else other
    n, n2 = data.n, other.n
    out = np.empty((n, n2)) if out is None else out  # (n, n2)
    route, _ = inner_product_cost(data, other)
    if route == "dense":
        rows = max(1, min(n, block_bytes // (8 * data.d)))
        cols = max(1, min(n2, block_bytes // (8 * other.d)))
    else:
        side = max(1, math.isqrt(block_bytes // (8 * data.rank * other.rank)))
        rows, cols = min(n, side), min(n2, side)
    if symmetric:
        rows = cols = min(rows, cols)
    # Dense route: build the column points' rows once when they fit in 4 blocks (256 MiB by
    # default), else again for every row block.
    cached = route == "dense" and 8 * n2 * other.d <= 4 * block_bytes
    right_rows = _dense_rows(other, 0, n2) if cached else None  # (n2, d)
    for i0 in range(0, n, rows):
        i1 = min(i0 + rows, n)
        if route == "dense":
            left = right_rows[i0:i1] if cached and symmetric else _dense_rows(data, i0, i1)  # (rows, d)
        for j0 in range(i0 if symmetric else 0, n2, cols):
            j1 = min(j0 + cols, n2)
            if route == "dense":
                right = right_rows[j0:j1] if cached else _dense_rows(other, j0, j1)  # (cols, d)
                block = left @ right.T  # (rows, cols)
            else:
                block = _factor_block(data, i0, i1, other, j0, j1)  # (rows, cols)
            if symmetric and i0 == j0:
                block = 0.5 * (block + block.T)  # exactly symmetric, whatever order the GEMM summed in
            if transform is not None:
                transform(block, i0, j0)
            out[i0:i1, j0:j1] = block
            if symmetric and j0 != i0:
                out[j0:j1, i0:i1] = block.T
    return out


def _dense_rows(data: KroneckerData, start: int, stop: int) -> np.ndarray:
    """Points start..stop-1 as dense rows (b, d): Σ_q u_q ⊗ t_q = U^T T per point, one batched matmul."""
    factors = [f[start:stop] for f in data.factors]  # each (b, R, d_l)
    b, rank = factors[0].shape[:2]
    tail = factors[-1]  # (b, R, d_k)
    for f in reversed(factors[1:-1]):  # t_q = u_q^(2) ⊗ ... ⊗ u_q^(k), row-major like numpy.kron
        tail = (f[:, :, :, None] * tail[:, :, None, :]).reshape(b, rank, -1)  # (b, R, d_l · ...)
    return np.matmul(factors[0].transpose(0, 2, 1), tail).reshape(b, -1)  # (b, d1, R) @ (b, R, d/d1)


def _factor_block(data: KroneckerData, i0: int, i1: int, other: KroneckerData, j0: int, j1: int) -> np.ndarray:
    """<x_i, y_j> = Σ_{q, q'} Π_l <u_iq^(l), v_jq'^(l)> for a block, one GEMM per factor."""
    r1, r2 = data.rank, other.rank
    b, c = i1 - i0, j1 - j0
    pairs = None  # (b · R1, c · R2) products over the factors so far
    for f, g in zip(data.factors, other.factors, strict=True):
        term = f[i0:i1].reshape(b * r1, -1) @ g[j0:j1].reshape(c * r2, -1).T  # (b·R1, c·R2)
        pairs = term if pairs is None else np.multiply(pairs, term, out=pairs)
    if r1 == r2 == 1:
        return pairs  # (b, c): one term pair, nothing to sum
    summed = pairs.reshape(b * r1 * c, r2) @ np.ones(r2)  # (b·R1·c,) sum over q' as a GEMV: 6× numpy's sum
    return np.ascontiguousarray(summed.reshape(b, r1, c).sum(axis=1))  # (b, c)
