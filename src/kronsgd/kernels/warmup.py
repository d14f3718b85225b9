"""Compile the step's kernels for a dtype before the first step (or load them from numba's cache).

Each kernel is called once on tiny arrays of the same types, layouts and dimensions as the
engine passes, so the first real step runs compiled code and its time is the step's own.
"""

from __future__ import annotations

import numpy as np

from . import step as K
from . import tree as TK
from . import tree_fold as TF

_DONE: set[tuple[str, bool]] = set()


def compile_step_kernels(dtype, tree: bool = False) -> None:
    """Compile forward, coefficients, grouping, gather, correction and both folds (and the tree's) for ``dtype``."""
    dtype = np.dtype(dtype)
    if (dtype.name, tree) in _DONE:
        return
    m, n, B, L, cap = 4, 3, 1, 2, 4
    P = np.zeros((m, n), dtype)  # (m, n)
    alpha = np.zeros((m, n), dtype)
    a = np.ones((m, 1))  # (m, C) float64
    batch = np.zeros(B, np.int64)
    fired_ptr, fired_rows, coefs = np.zeros(B + 1, np.int64), np.zeros(cap, np.int64), np.zeros(cap, dtype)
    f = np.zeros((B, 1))
    cols = np.zeros((m, B), dtype)
    K.gather_columns(P, batch, cols)
    K.forward_batch(cols, a, np.arange(B), 0.5, 0.5, fired_ptr, fired_rows, f)
    K.coefficients(a, f, fired_ptr, fired_rows, -1.0, coefs)
    g_rows = np.zeros((L, B, n), dtype)
    row_ptr, owner, coef = np.zeros((L, m + 1), np.int64), np.zeros((L, cap), np.int64), np.zeros((L, cap), dtype)
    touched, n_touched, slots = np.zeros((L, cap), np.int64), np.zeros(L, np.int64), np.arange(1, dtype=np.int64)
    pair_row = np.zeros((L, cap), np.int32)
    K.group_by_row(m, fired_ptr, fired_rows, coefs, row_ptr[0], owner[0], coef[0], touched[0])  # (to_record)
    n_touched[0] = K.group_by_row(m, fired_ptr, fired_rows, coefs, row_ptr[0], owner[0], coef[0], touched[0],
                                  pair_row[0])  # fmt: skip
    K.correct_columns(cols, batch, g_rows, np.ones(L, np.int64), row_ptr, owner, coef, slots, np.zeros((B, B), dtype))
    K.fold_records(P, g_rows, row_ptr, owner, coef, slots, 0, n, touched, n_touched)
    K.fold_alpha(alpha, 0, np.zeros((L, B), np.int64), row_ptr, pair_row, owner, coef, slots, 0, n)
    K.full_outputs(P, a, 0.5, 0.5, np.zeros((n, 1)))
    if tree:
        off = TK.layout(m)
        bounds = TK.empty_tree(n, m)
        headroom = np.zeros(m)
        TK.build(P, bounds, off, 0.0, 0, n)
        TK.tree_forward(P, bounds, off, TK.start_level(m, 4096), 0.0, a, batch, 0.5, 0.5, fired_ptr, fired_rows, f,
                        np.zeros((2, int(off[1])), np.int64), np.zeros(n, np.int64), headroom,
                        np.zeros(3, np.int64))  # fmt: skip
        TF.fold_and_raise(P, bounds, off, g_rows, row_ptr, owner, coef, slots, 0, n, headroom, 0.0,
                          np.zeros(2, np.int64), touched, n_touched)  # fmt: skip
    _DONE.add((dtype.name, tree))
