"""Contractions of the implicit initial weights W0 with Kronecker points: P0 and dense W0.

W0 is regenerated block by block (see base/random.py) and dropped after use. Which way it is
drawn is its ``stream`` (1: float64, the files of old; 2: float32, now); how it is
contracted is chosen by predicted cost (DESIGN.md §3, ``kronsgd.data.products``):

- Gaussian W0, dense route: a block of neurons is drawn, blocks of points are materialised
  (R · d per point), one GEMM: m · n · d multiply-adds.
- Gaussian W0, factor route: the block times the last factor of every term by one GEMM, the
  other factors by reductions: R · m · n · d, nothing of size n · d.
- Kronecker W0 (``init="kronecker"``, K terms): W0 is itself a rank-K set of Kronecker
  points, so P0 is a Gram block between two factored sets, K · R · Σ d_l per entry.

Stream 1 keeps the exact sequence of operations of the files written before the field
existed, so that they predict the same bits.
"""

from __future__ import annotations

import math

import numpy as np

from ..base.errors import MemoryBudgetError
from ..base.memory import format_bytes, resolve_budget
from ..base.random import W0_BLOCK, w0_blocks, w0_factor_rows, w0_rows
from . import products as P
from .kronecker import KroneckerData

_TEMP_BYTES = 8 * 2**20  # stream 1: cap on one intermediate of the contraction (kept: its bits depend on it)


# ---- stream 1 (files without a w0_stream field) --------------------------------------------
def _contract_block(w_block: np.ndarray, factors: tuple[np.ndarray, ...], dims: tuple[int, ...]) -> np.ndarray:
    """<w_r, x_j> for a block of rows w_block (b, d) and points given by factors (n, R, d_l)."""
    b = w_block.shape[0]
    n, rank = factors[0].shape[:2]
    t = w_block.reshape(-1, dims[-1]) @ factors[-1].reshape(n * rank, dims[-1]).T  # (b·d1···d_{k-1}, nR)
    for l in range(len(dims) - 2, -1, -1):
        t = t.reshape(-1, dims[l], n * rank)  # (b·d1···d_{l-1}, d_l, nR)
        t = np.einsum("xaj,ja->xj", t, factors[l].reshape(n * rank, dims[l]))  # (b·d1···d_{l-1}, nR)
    return t.reshape(b, n, rank).sum(axis=2)  # (b, n)


def _project_stream1(seed: int, width: int, data: KroneckerData, dtype) -> np.ndarray:
    dims = data.dims
    itemsize = np.dtype(dtype).itemsize
    factors = data.factors_in(dtype)
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


# ---- stream 2 --------------------------------------------------------------------------------
def kron_w0_factors(seed: int, start: int, stop: int, dims, terms: int, dtype) -> list[np.ndarray]:
    """Factors (b, K, d_l) of the Kronecker W0 rows start:stop, the K^{-1/2} folded into the first."""
    factors = [f.astype(dtype, copy=False) for f in w0_factor_rows(seed, start, stop, dims, terms)]
    if terms > 1:
        factors[0] = factors[0] * np.asarray(1.0 / math.sqrt(terms), dtype=dtype)
    return factors


def _neuron_blocks(width: int, rows: int):
    """Neuron ranges of ``rows`` (rounded down to whole Philox blocks of 16 when possible)."""
    step = max(W0_BLOCK, rows // W0_BLOCK * W0_BLOCK)
    for start in range(0, width, step):
        yield start, min(width, start + step)


def _require_block(row_bytes: int, cap: int, remedy: str) -> None:
    """W0 is drawn 16 neurons at a time: refuse when 16 of its rows exceed the working memory."""
    need = W0_BLOCK * row_bytes
    if need > cap:
        raise MemoryBudgetError(
            f"P0 needs {format_bytes(need)} of working memory for one block of 16 initial neurons, above its "
            f"share of the memory budget ({format_bytes(cap)}). {remedy}"
        )


def _gaussian_route(width: int, data: KroneckerData, rows: int, cols: int) -> str:
    """'dense' or 'factors', whichever the cost model predicts cheaper (the draw is common to both).

    The factor route runs a GEMM of inner dimension d_k, slow below ~64 (penalised), plus
    reductions over the other factors; the dense route builds the points once, or once per
    neuron block when they do not fit (``rows``, ``cols`` from the dense plan).
    """
    m, n, R, d, last = width, data.n, data.rank, data.d, data.dims[-1]
    factors = R * m * n * d * max(1.0, 64 / last) + P.ELEMENTWISE * R * m * n * (d // last)
    builds = 1 if cols >= n else P.passes(m, rows)
    return "dense" if P.dense_cost(m, n, 0, R, d, builds) < factors else "factors"


def _project_gaussian(seed, width, data, dtype, cap) -> np.ndarray:
    item, d = np.dtype(dtype).itemsize, data.d
    _require_block(d * item, cap, 'Use init="kronecker", whose initial neurons are never materialised.')
    out = np.empty((width, data.n), dtype=dtype)  # (m, n)
    rows, cols = P.plan_rows(width, data.n, d * item, d * item, cap, "P0 (dense route)", W0_BLOCK)
    if _gaussian_route(width, data, rows, cols) == "dense":
        points = data.factors_in(dtype)
        whole = P.materialise(points, dtype) if cols >= data.n else None  # (n, d) built once
        for r0, r1 in _neuron_blocks(width, rows):
            W = w0_rows(seed, r0, r1, d, dtype)  # (b, d)
            for c in range(0, data.n, cols):
                X = whole if whole is not None else P.materialise([f[c : c + cols] for f in points], dtype)
                np.matmul(W, X.T, out=out[r0:r1, c : c + X.shape[0]])
        return out
    dims, R = data.dims, data.rank
    head = d // dims[-1]
    rows = max(W0_BLOCK, (cap // 2) // (d * item))  # the W block takes half the cap, the intermediates the rest
    factors = data.factors_in(dtype)
    for r0, r1 in _neuron_blocks(width, rows):
        W = w0_rows(seed, r0, r1, d, dtype)  # (b, d)
        cols = max(1, (cap - W.nbytes) // ((r1 - r0) * head * R * item))
        for c in range(0, data.n, cols):
            out[r0:r1, c : c + cols] = _contract_block(W, tuple(f[c : c + cols] for f in factors), dims)
    return out


def _project_kronecker(seed, width, terms, data, dtype, cap) -> np.ndarray:
    dims, n, R, d, item = data.dims, data.n, data.rank, data.d, np.dtype(dtype).itemsize
    out = np.empty((width, n), dtype=dtype)  # (m, n)
    dense = P.dense_cost(width, n, terms, R, d) < P.factor_cost(width, n, terms, R, dims)
    dense = dense and W0_BLOCK * d * item <= cap // 2  # materialised rows must fit
    _require_block(terms * sum(dims) * item, cap, "Use a smaller init_rank or raise the memory budget.")
    if dense:
        rows, cols = P.plan_rows(width, n, d * item, d * item, cap, "P0 (dense route)", W0_BLOCK)
    else:  # one (b·K, c·R) product per factor and the running product: three at once
        rows, cols = P.plan_rows(width, n, terms * sum(dims) * item, R * sum(dims) * item, cap, "P0", W0_BLOCK)
        cols = max(1, min(cols, cap // (3 * max(rows, 1) * terms * R * item)))
    points = data.factors_in(dtype)
    whole = P.materialise(points, dtype) if dense and cols >= n else None
    for r0, r1 in _neuron_blocks(width, rows):
        w = kron_w0_factors(seed, r0, r1, dims, terms, dtype)  # k x (b, K, d_l)
        W = P.materialise(w, dtype) if dense else None  # (b, d)
        for c in range(0, n, cols):
            part = [f[c : c + cols] for f in points]
            if dense:
                X = whole if whole is not None else P.materialise(part, dtype)  # (c, d)
                np.matmul(W, X.T, out=out[r0:r1, c : c + X.shape[0]])
            else:
                out[r0:r1, c : c + part[0].shape[0]] = P.factor_products(w, part, dtype)
    return out


def project_w0(
    seed: int, width: int, data: KroneckerData, dtype=np.float64, *, init="gaussian", terms=None, stream=2,
    max_bytes=None,
) -> np.ndarray:  # fmt: skip
    """P0[r, j] = <w_r(0), x_j> for all neurons and points, shape (width, n), in ``dtype``.

    ``init`` "gaussian" (w_r ~ N(0, I_d)) or "kronecker" (``terms`` K Gaussian Kronecker
    products, scaled by K^{-1/2}); ``stream`` the way W0 is drawn (base/random.py). The
    temporaries stay within a working share of ``max_bytes`` (default: half the free memory).
    """
    if stream == 1:
        return _project_stream1(seed, width, data, dtype)
    cap = P.work_bytes(resolve_budget(max_bytes, "max_bytes"))
    with np.errstate(over="ignore", invalid="ignore"):
        if init == "kronecker":
            return _project_kronecker(seed, width, terms, data, dtype, cap)
        return _project_gaussian(seed, width, data, dtype, cap)


def dense_w0(seed: int, width: int, d: int, *, dims=None, init="gaussian", terms=None, stream=2) -> np.ndarray:
    """The initial weights materialised, shape (width, d), float64. Callers check the budget."""
    out = np.empty((width, d))  # (m, d)
    if stream == 1:
        for start, block in w0_blocks(seed, width, d):
            out[start : start + block.shape[0]] = block
        return out
    for r0, r1 in _neuron_blocks(width, 256):
        if init == "kronecker":
            out[r0:r1] = P.materialise(kron_w0_factors(seed, r0, r1, dims, terms, np.float64), np.float64)
        else:
            out[r0:r1] = w0_rows(seed, r0, r1, d, np.float64)
    return out
