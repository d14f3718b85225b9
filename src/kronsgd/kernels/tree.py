"""numba kernels of the AsynchronousTree (DESIGN.md §5). Arrays and scalars only; no validation here.

Layout. For every training point j, a 16-ary max tree over the m keys P[:, j], stored point
by point, so that a query reads one contiguous region of memory:

    tree (n, S)         row j holds every level of point j's tree, level 0 first
    level 0             tree[j, r] >= P[r, j] for r < m: an upper bound of every key (a
                        point-major copy of P, raised lazily, see Headroom)
    level l >= 1        entry i >= entries 16i .. 16i + 15 of level l - 1
    off (L + 2,)        level l is tree[:, off[l]:off[l + 1]]; level L has a single entry

The bounds are float32 whatever P's dtype (rounded up, ``up32``): half the memory and one
cache line per node for float64 P too. Level l holds s_l = ceil(m / 16^l) entries, padded
with -inf to a multiple of 16, and starts on a multiple of 16 entries; ``empty_tree`` aligns
the array to 64 bytes, so the 16 children of a node share one cache line. A query confirms each candidate from P
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
Headroom arithmetic rounds toward safety (``_gap``). The folds that keep the tree valid are
in tree_fold.py.

Every kernel has a NumPy twin in tests/naive.py.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba.cpython.unsafe.numbers import trailing_zeros

from .intrinsics import FANOUT, compare16, prefetch

_JIT = dict(nopython=True, nogil=True, cache=True)

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


def empty_tree(n: int, m: int) -> np.ndarray:
    """A float32 (n, S) array for the tree of n points over m keys, 64-byte aligned, filled with -inf."""
    S = int(layout(m)[-1])
    raw = np.empty(n * S * 4 + 64, np.uint8)
    skip = -raw.ctypes.data % 64
    tree = raw[skip : skip + n * S * 4].view(np.float32).reshape(n, S)
    tree.fill(-np.inf)
    return tree


@nb.jit(**_JIT)
def up32(x):
    """The smallest float32 >= x (float32 rounds to nearest: step up when that went below)."""
    v = np.float32(x)
    if v < x:
        v = np.nextafter(v, np.float32(np.inf))
    return v


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
            tree[c, r] = up32(P[r, c] + slack)
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
        col[r] = up32(P[r, j] + slack)
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
    """The tree's twin of ``step.forward_batch``: same fired sets, same outputs, same bits.

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
