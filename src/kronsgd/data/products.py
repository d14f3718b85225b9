"""Inner products of Kronecker points at BLAS speed: which route, and how to stream it.

Two routes give <a_i, b_j> for two sets of points held as factors (DESIGN.md §3):

- factors: Π_l <u_i^(q,l), v_j^(q',l)> summed over the R_a · R_b term pairs; one GEMM per
  factor, R_a · R_b · Σ d_l multiply-adds per entry, plus an elementwise product per factor;
- dense: materialise blocks of points (R · d work per point, a batched matmul of inner
  dimension R) and take one GEMM of d multiply-adds per entry.

The cheaper one by the counts below is taken. Blocks are sized so that the temporaries stay
inside a working-memory cap, and the cap inside the caller's budget.
"""

from __future__ import annotations

import math

import numpy as np

from ..base.errors import MemoryBudgetError
from ..base.memory import format_bytes

WORK_BYTES = 1024 * 2**20  # cap on the temporaries of one product (dense blocks, GEMM outputs)
ELEMENTWISE = 16.0  # a memory-bound elementwise op, in GEMM multiply-adds (bench_setup: 8 was too few)
_MATERIALISE = 2.0  # cost per multiply-add of building dense points (a matmul of inner dimension R)


def work_bytes(budget: int | None) -> int:
    """The working-memory cap: WORK_BYTES, less when the budget is tighter (a quarter of it)."""
    return WORK_BYTES if budget is None else max(1, min(WORK_BYTES, budget // 4))


def entry_cost(dims, rank: int) -> int:
    """Multiply-adds of one Gram entry by the cheaper route: R² · Σ d_l from factors, or d dense."""
    return min(math.prod(dims), rank * rank * sum(dims))


def factor_cost(n1: int, n2: int, r1: int, r2: int, dims) -> float:
    """Predicted cost (GEMM multiply-adds) of n1 x n2 inner products from factors."""
    pairs = n1 * n2 * r1 * r2
    passes = len(dims) + (1 if r1 * r2 > 1 else 0)  # a product per factor, then the sum over term pairs
    return pairs * sum(dims) + ELEMENTWISE * pairs * passes


def dense_cost(n1: int, n2: int, r1: int, r2: int, d: int, passes: int = 1) -> float:
    """Predicted cost of the same products on materialised points (``passes`` builds of the second set)."""
    return n1 * n2 * d + _MATERIALISE * (n1 * r1 + passes * n2 * r2) * d


def materialise(factors, dtype) -> np.ndarray:
    """Dense points (n, d) in ``dtype`` from factors, each (n, R, d_l); row-major numpy.kron order.

    The first k - 1 factors are expanded elementwise (size d / d_k per term), the last one is
    applied by a batched matmul of inner dimension R: (n, d/d_k, R) @ (n, R, d_k).
    """
    n, rank = factors[0].shape[:2]
    head = factors[0].astype(dtype, copy=False)  # (n, R, d_1)
    for f in factors[1:-1]:
        head = (head[:, :, :, None] * f.astype(dtype, copy=False)[:, :, None, :]).reshape(n, rank, -1)
    last = factors[-1].astype(dtype, copy=False)  # (n, R, d_k)
    out = np.matmul(head.transpose(0, 2, 1), last)  # (n, d/d_k, d_k)
    return out.reshape(n, -1)


def factor_products(left, right, dtype) -> np.ndarray:
    """<a_i, b_j> summed over term pairs, from factors: left (n1, R1, d_l), right (n2, R2, d_l)."""
    n1, r1 = left[0].shape[:2]
    n2, r2 = right[0].shape[:2]
    block = None
    for f, g in zip(left, right, strict=True):
        a = f.astype(dtype, copy=False).reshape(n1 * r1, -1)  # (n1·R1, d_l)
        b = g.astype(dtype, copy=False).reshape(n2 * r2, -1)  # (n2·R2, d_l)
        prod = a @ b.T  # (n1·R1, n2·R2)
        if block is None:
            block = prod
        else:
            block *= prod
    if r1 == 1 and r2 == 1:
        return block
    return block.reshape(n1, r1, n2, r2).sum(axis=(1, 3))  # (n1, n2)


def plan_rows(
    n_rows: int, n_cols: int, row_bytes: int, col_bytes: int, cap: int, what: str, min_rows: int = 1
) -> tuple[int, int]:
    """Rows and columns per block so that a row block, a column block and their product fit ``cap``.

    All columns at once when they fit in half the cap (they are built once); otherwise a
    quarter of the cap for columns and the rest for rows, so that the columns are built again
    as few times as possible (once per row block). At least ``min_rows`` rows (fewer columns
    then); MemoryBudgetError when even that does not fit.
    """
    out_item = 8
    share = cap // 2 if n_cols * col_bytes <= cap // 2 else cap // 4
    cols = max(1, min(n_cols, share // max(1, col_bytes)))
    rows = max(1, min(n_rows, (cap - cols * col_bytes) // max(1, row_bytes + cols * out_item)))
    low = min(min_rows, n_rows)
    if rows < low:  # give the rows what they need, the columns what is left
        rows = low
        cols = max(1, min(n_cols, (cap - rows * row_bytes) // max(1, col_bytes + rows * out_item)))
    if rows * (row_bytes + cols * out_item) + cols * col_bytes > cap:
        raise MemoryBudgetError(
            f"{what} needs at least {format_bytes(low * row_bytes + col_bytes + out_item)} of working memory, "
            f"above its share of the memory budget ({format_bytes(cap)}). Raise the budget."
        )
    return rows, cols


def passes(n_rows: int, rows: int) -> int:
    return math.ceil(n_rows / rows)
