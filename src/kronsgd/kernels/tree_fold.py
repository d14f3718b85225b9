"""numba kernels that keep the AsynchronousTree valid while updates are folded into P.

The layout, the invariant and the headroom are described in tree.py: a fold spends
each rewritten row's headroom and raises the row's bounds (key + LIFT · rise) only when the
headroom runs out; raising walks up a point's tree only while it raises something.
Arrays and scalars only; no validation here. NumPy twins in tests/naive.py.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba import types
from numba.extending import overload

from . import step as K
from .intrinsics import FANOUT, prefetch
from .tree import AHEAD, _gap, up32

_JIT = dict(nopython=True, nogil=True, cache=True)

LIFT = 16.0  # a raise buys headroom for about this many more increases of the same size


@nb.jit(**_JIT)
def _raise_path(col, off, r, key):
    """Raise the bounds on the path of key r in one point's tree to at least ``key``, while below it."""
    i = r
    if not key > col[i]:
        return
    col[i] = key
    for level in range(1, off.shape[0] - 1):
        i //= FANOUT
        v = off[level] + i
        if not key > col[v]:
            return
        col[v] = key


@nb.jit(**_JIT)
def raise_bounds(P, tree, off, rows, col0, col1):
    """Restore the invariant after the keys of ``rows`` (P rows rewritten over col0:col1) changed.

    For every column, raises the path of each row to its key (rounded up to float32), only
    while it raises something.
    (No headroom: the plain rule, for tests and measurements.)
    """
    for c in range(col0, col1):
        col = tree[c]
        for r in rows:
            _raise_path(col, off, r, up32(P[r, c]))


def _int_view(a):
    """The bits of a float array as integers of its size (numba only)."""


@overload(_int_view, inline="always")
def _int_view_impl(a):
    if a.dtype == types.float32:
        return lambda a: a.view(np.int32)
    return lambda a: a.view(np.int64)


@nb.jit(inline="always", **_JIT)
def _largest_rise(p, old, eps, tiny):
    """An upper bound >= 0 of max_j (p[j] - old[j]) as real numbers; overwrites old.

    The differences are rounded in p's dtype, hence the relative ``eps`` and the absolute
    ``tiny`` (above a subnormal's rounding). A positive float orders like its bits as an integer, and every
    negative one is below 0 there: an integer max, which vectorises, finds the largest rise.
    """
    if p.shape[0] == 0:
        return 0.0
    for j in range(p.shape[0]):
        old[j] = p[j] - old[j]
    bits = _int_view(old)
    top = bits.dtype.type(0)
    for j in range(bits.shape[0]):
        top = max(top, bits[j])
    bits[0] = top
    rise = np.float64(old[0])
    return rise + rise * eps + tiny if rise > 0.0 else 0.0


@nb.jit(**_JIT)
def fold_and_raise(P, tree, off, g_rows, row_ptr, owner, coef, slots, col0, col1, headroom, slack, counts, touched,
                   n_touched):  # fmt: skip
    """``step.fold_records`` that keeps the tree valid in the same sweep, while each row is in cache.

    The additions to P are those of fold_records in the same order (identical bits). Then a
    touched row whose largest increase fits its headroom (m,) only spends headroom; another
    raises its bounds to key + lift and gets new headroom. counts (2,) int64 receives (rows
    whose bounds were raised, rows that only spent headroom). touched, n_touched: the
    records' touched-row lists, or None for a sweep of all m rows (see fold_records).
    Returns the rows touched.
    """
    m = P.shape[0]
    rows, per_record, gi, cc, pos = K.fold_scratch(P, g_rows, slots)
    w = col1 - col0
    old = np.empty(w, dtype=P.dtype)
    target = np.empty(w, dtype=np.float32)
    eps = 2.0**-22 if P.itemsize == 4 else 2.0**-50  # a difference's relative rounding, with room
    tiny = 2.0**-140 if P.itemsize == 4 else 1e-300
    counts[0] = counts[1] = 0
    flat_P = P.reshape(-1)
    dense = K.dense_lists(m, touched, n_touched, slots)
    r = -1
    while True:
        r = K.next_row(r, m, touched, n_touched, slots, pos)
        if r >= m:
            break
        if dense:
            K.prefetch_rows_ahead(flat_P, P.shape[1], touched, n_touched, slots, pos, col0, col1, headroom, 0)
        count = K.row_pairs(row_ptr, owner, coef, slots, per_record, r, gi, cc)
        if count == 0:
            continue
        p = P[r, col0:col1]
        for j in range(w):  # (a loop: numba's slice assignment checks overlap and costs more than the fold)
            old[j] = p[j]
        K.fold_row(p, rows, gi, cc, count, col0, col1)
        rise = _largest_rise(p, old, eps, tiny)
        h = headroom[r] - rise
        h -= abs(h) * 2.0**-50 + 1e-300  # rounded down
        if h >= 0.0:
            headroom[r] = h
            counts[1] += 1
            continue
        lift = max(slack, LIFT * rise)
        for j in range(w):
            target[j] = up32(p[j] + lift)  # a float32 bound, never below the key
        for j in range(min(AHEAD, w)):
            prefetch(tree[col0 + j], r)
        h = np.inf
        for j in range(w):
            if j + AHEAD < w:
                prefetch(tree[col0 + j + AHEAD], r)
            col = tree[col0 + j]
            _raise_path(col, off, r, target[j])
            gap = _gap(col[r], p[j])
            if gap < h:
                h = gap
        headroom[r] = h if h >= 0.0 else 0.0
        counts[0] += 1
    return counts[0] + counts[1]
