"""numba kernels of the AsynchronousTree (DESIGN.md §5). Arrays and scalars only; no validation here.

Layout. For every training point j, a 16-ary max tree over the m keys P[:, j], stored point
by point, so that a query reads one contiguous region of memory:

    tree (n, S)         row j holds every level of point j's tree, level 0 first
    level 0             tree[j, r] >= P[r, j] for r < m: an upper bound of every key (a
                        point-major copy of P, raised lazily, see Headroom)
    level l >= 1        entry i >= entries 16i .. 16i + 15 of level l - 1
    off (L + 2,)        level l is tree[:, off[l]:off[l + 1]]; level L has a single entry

Level l holds s_l = ceil(m / 16^l) entries, padded with -inf to a multiple of 16, and starts
on a multiple of 16 entries; ``empty_tree`` aligns the array to 64 bytes, so the 16 children
of a node share one cache line (two in float64). A query confirms each candidate from P
itself, so it is exact whatever the bounds; it reads about one line per level per reported
neuron plus that key. (The first layout, leaves = P and a node-major binary heap over blocks
of 8, read a line per bound and per key of every entered block: 23 lines per reported neuron
at m = 2^20 and 0.1 % fired, 687 µs a query, slower than NumPy's scan of a contiguous column;
this layout reads 3.2 lines per neuron there, measured by the same benchmarks/bench_tree.py.)

Invariant (asynchronous maintenance): every entry is an UPPER bound of its children and a
level-0 entry of its key. A key that increases raises the bounds on its path only while they
are below it; a key that decreases changes nothing; queries never rely on tightness.

Headroom: reading a row's n level-0 bounds (scattered, one line each) for every row a fold
rewrites would cost more than the fold. So each row r keeps a headroom h[r] >= 0 with
tree[c, r] - P[r, c] >= h[r] for every column c of the range a worker folds. A fold whose
largest increase of the row is below h[r] only lowers h[r]; one that exceeds it raises the
row's bounds to key + lift, lift = max(slack, LIFT · increase), which buys headroom for many
more updates, and recomputes h[r]. Builds add ``slack`` to the keys for the same reason.
Headroom arithmetic rounds toward safety (``_gap``).

Every kernel has a NumPy twin in tests/naive.py.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba import types
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import overload

from . import _kernels as K
from ._intrinsics import FANOUT, compare16, prefetch

_JIT = dict(nopython=True, nogil=True, cache=True)

LIFT = 16.0  # a raise buys headroom for about this many more increases of the same size
AHEAD = 32  # nodes whose line a query prefetches ahead of the one it reads


def layout(m: int) -> np.ndarray:
    """off (L + 2,) int64: level l of a tree over m keys is columns off[l]:off[l + 1] of the tree array."""
    sizes = [max(1, m)]
    while sizes[-1] > 1:
        sizes.append(-(-sizes[-1] // FANOUT))
    padded = [-(-s // FANOUT) * FANOUT for s in sizes]
    return np.concatenate([[0], np.cumsum(padded)]).astype(np.int64)


def start_level(m: int, top: int) -> int:
    """The level a query scans whole: the lowest one with at most ``top`` entries."""
    level, size = 0, max(1, m)
    while size > top:
        size, level = -(-size // FANOUT), level + 1
    return level


def empty_tree(n: int, m: int, dtype) -> np.ndarray:
    """An (n, S) array for the tree of n points over m keys, 64-byte aligned, filled with -inf."""
    S = int(layout(m)[-1])
    itemsize = np.dtype(dtype).itemsize
    raw = np.empty(n * S * itemsize + 64, np.uint8)
    skip = -raw.ctypes.data % 64
    tree = raw[skip : skip + n * S * itemsize].view(dtype).reshape(n, S)
    tree.fill(-np.inf)
    return tree


@nb.jit(**_JIT)
def _gap(bound, key):
    """A lower bound of the exact bound - key: the float64 difference, less its rounding error."""
    d = np.float64(bound) - np.float64(key)
    return d - abs(d) * 2.0**-50 - 1e-300


@nb.jit(**_JIT)
def _levels_up(col, off, m):
    """Levels 1.. of one point's tree from its level 0: each entry the max of its 16 children."""
    size = max(1, m)
    for level in range(1, off.shape[0] - 1):
        below, here = off[level - 1], off[level]
        size = (size + FANOUT - 1) // FANOUT
        for i in range(size):
            best = col[below + FANOUT * i]
            for c in range(1, FANOUT):
                v = col[below + FANOUT * i + c]
                if v > best:
                    best = v
            col[here + i] = best
        for i in range(size, off[level + 1] - here):
            col[here + i] = -np.inf


@nb.jit(**_JIT)
def build(P, tree, off, slack, col0, col1):
    """The trees of points col0:col1 from P (m, n): level 0 = keys + slack (-inf past m), then up."""
    m = P.shape[0]
    for r in range(m):
        for c in range(col0, col1):
            tree[c, r] = P[r, c] + slack
    for c in range(col0, col1):
        for r in range(m, off[1]):
            tree[c, r] = -np.inf
        _levels_up(tree[c], off, m)


@nb.jit(**_JIT)
def headroom_of(P, tree, headroom, col0, col1):
    """headroom[r] = min over columns col0:col1 of (level-0 bound - key), rounded down; (m,) float64."""
    for r in range(P.shape[0]):
        h = np.inf
        for c in range(col0, col1):
            g = _gap(tree[c, r], P[r, c])
            if g < h:
                h = g
        headroom[r] = h if h >= 0.0 else 0.0


@nb.jit(**_JIT)
def rebuild_column(P, tree, off, slack, j, headroom):
    """The tree of point j alone from P (strided reads); the headroom of its rows shrinks to fit."""
    m = P.shape[0]
    col = tree[j]
    for r in range(m):
        col[r] = P[r, j] + slack
        g = _gap(col[r], P[r, j])
        if g < headroom[r]:
            headroom[r] = g if g >= 0.0 else 0.0
    _levels_up(col, off, m)


@nb.jit(**_JIT)
def tight_visits(k, m, off, start):
    """The most reads a query reporting k neurons makes on a tight tree (bounds = keys).

    Reads count cache-line-sized units: the lines of the level scanned whole, one per node
    entered (its 16 children), one per key confirmed. On a tight tree a node is entered only
    when a reported key lies below it, so level l >= 1 enters at most min(s_l, k) nodes, and
    exactly the k reported keys are confirmed.
    """
    reads = (off[start + 1] - off[start]) // FANOUT
    size = max(1, m)
    for _ in range(start):
        size = (size + FANOUT - 1) // FANOUT
        reads += min(size, k)
    return reads + k


@nb.jit(**_JIT)
def _children(col, base, i, threshold):
    """Bit c set when child c of node i (its entries start at col[base + 16 i]) exceeds threshold."""
    return compare16(col, base + FANOUT * i, threshold)


@nb.jit(**_JIT)
def query(P, tree, off, start, j, threshold, out, begin, frontier):
    """Neurons r with P[r, j] > threshold, ascending, written to out[begin:]; returns (end, reads).

    Breadth-first: the level ``start`` is scanned whole, then each level's surviving nodes
    are entered in order, their 16 children compared at once; the lines of nodes AHEAD of
    the current one are prefetched, so the loads overlap instead of waiting in turn. The
    candidates of level 0 are confirmed against P itself. frontier (2, off[1]) int64 is
    scratch. ``end`` counts every reported neuron even past out.size (only the ones that
    fit are written), so a caller can grow ``out`` and rerun.
    """
    col = tree[j]
    cap = out.shape[0]
    cur, nxt = frontier[0], frontier[1]
    base = off[start]
    count = 0
    lines = (off[start + 1] - base) // FANOUT
    for g in range(lines):  # the level scanned whole, 16 entries at a time
        mask = _children(col, base, g, threshold)
        while mask:
            cur[count] = FANOUT * g + trailing_zeros(mask)
            count += 1
            mask &= mask - np.uint32(1)
    reads = lines
    for level in range(start, 0, -1):  # enter the surviving nodes of `level`: their children survive or not
        below = off[level - 1]
        for s in range(min(AHEAD, count)):
            prefetch(col, below + FANOUT * cur[s])
        found = 0
        for s in range(count):
            if s + AHEAD < count:
                prefetch(col, below + FANOUT * cur[s + AHEAD])
            i = cur[s]
            mask = _children(col, below, i, threshold)
            while mask:
                nxt[found] = FANOUT * i + trailing_zeros(mask)
                found += 1
                mask &= mask - np.uint32(1)
        reads += count
        cur, nxt = nxt, cur
        count = found
    t = begin  # cur[:count]: rows whose level-0 bound passes; confirm them from P
    for s in range(min(AHEAD, count)):
        prefetch(P[cur[s]], j)
    for s in range(count):
        if s + AHEAD < count:
            prefetch(P[cur[s + AHEAD]], j)
        r = cur[s]
        if P[r, j] > threshold:
            if t < cap:
                out[t] = r
            t += 1
    return t, reads + count


@nb.jit(**_JIT)
def tree_forward(P, tree, off, start, slack, a, batch, shift, inv_sqrt_m, fired_ptr, fired_rows, f, frontier, waste,
                 headroom, stats):  # fmt: skip
    """The tree's twin of ``_kernels.forward_batch``: same fired sets, same outputs, same bits.

    P (m, n); tree (n, S); a (m, C); batch (B,) column indices of P; writes fired_ptr
    (B + 1,), fired_rows (CSR, ascending within a point) and f (B, C), summing a[r] (P[r, j]
    - shift) in ascending r exactly as the scan does. Returns nnz (possibly > fired_rows.size:
    grow and rerun; the bounds may have been rebuilt, which never changes an answer).

    Rebuild rule: the reads of a query beyond twice ``tight_visits`` of what it reported
    (slack alone stays within that) are waste, accumulated per column in waste (n,) int64;
    when a column's waste exceeds the cost of rebuilding it (about m reads) the column is
    rebuilt and its waste reset, so a loose column costs at most about one rebuild in wasted
    reads. headroom (m,) is the querying worker's (see the module doc). stats (3,) int64
    receives (reads, reported, rebuilds) of this call.
    """
    m = P.shape[0]
    C = a.shape[1]
    cap = fired_rows.shape[0]
    stats[0] = stats[1] = stats[2] = 0
    t = 0
    fired_ptr[0] = 0
    for i in range(batch.shape[0]):
        j = batch[i]
        end, reads = query(P, tree, off, start, j, shift, fired_rows, t, frontier)
        for c in range(C):
            f[i, c] = 0.0
        last = min(end, cap)
        for s in range(t, min(t + AHEAD, last)):
            prefetch(a[fired_rows[s]], 0)
        for s in range(t, last):
            if s + AHEAD < last:
                prefetch(a[fired_rows[s + AHEAD]], 0)
            r = fired_rows[s]
            z = P[r, j] - shift
            for c in range(C):
                f[i, c] += a[r, c] * z
        for c in range(C):
            f[i, c] *= inv_sqrt_m
        k = end - t
        stats[0] += reads
        stats[1] += k
        waste[j] += max(0, reads - 2 * tight_visits(k, m, off, start))
        if waste[j] > m:
            rebuild_column(P, tree, off, slack, j, headroom)
            waste[j] = 0
            stats[2] += 1
        t = end
        fired_ptr[i + 1] = t
    return t


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

    For every column, raises the path of each row to its key, only while it raises something.
    (No headroom: the plain rule, for tests and measurements.)
    """
    for c in range(col0, col1):
        col = tree[c]
        for r in rows:
            _raise_path(col, off, r, P[r, c])


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
    """``_kernels.fold_records`` that keeps the tree valid in the same sweep, while each row is in cache.

    The additions to P are those of fold_records in the same order (identical bits). Then a
    touched row whose largest increase fits its headroom (m,) only spends headroom; another
    raises its bounds to key + lift and gets new headroom. counts (2,) int64 receives (rows
    whose bounds were raised, rows that only spent headroom). touched, n_touched: the
    records' touched-row lists, or None for a sweep of all m rows (see fold_records).
    Returns the rows touched.
    """
    m = P.shape[0]
    n = g_rows.shape[2]
    rows = g_rows.reshape(-1, n)  # (L·B, n): slot k's row i is k·B + i
    per_record = g_rows.shape[1]
    gi = np.empty(slots.shape[0] * per_record + 1, dtype=np.int64)  # one row's pairs, flattened in order
    cc = np.empty(slots.shape[0] * per_record + 1, dtype=P.dtype)
    w = col1 - col0
    old = np.empty(w, dtype=P.dtype)
    target = np.empty(w, dtype=P.dtype)
    eps = 2.0**-22 if P.itemsize == 4 else 2.0**-50  # a difference's relative rounding, with room
    tiny = 2.0**-140 if P.itemsize == 4 else 1e-300
    counts[0] = counts[1] = 0
    pos = np.zeros(slots.shape[0], dtype=np.int64)
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
            target[j] = p[j] + lift  # in P's dtype: rounded, never below the key
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
