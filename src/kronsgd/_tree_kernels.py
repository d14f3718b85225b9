"""numba kernels of the AsynchronousTree (DESIGN.md §5). Arrays and scalars only; no validation here.

Layout. For every training point j, a max tree over the m keys P[:, j]. The leaves ARE the
entries of P (no copy). Consecutive neurons are grouped in blocks of ``block`` leaves; the
tree is a perfect binary heap over M = 2^D block nodes (D = ceil(log2(ceil(m / block)))):

    bounds (2M, n)         row v holds the bound of heap node v for every point (row 0 unused)
    node 1                 the root; node v has children 2v and 2v + 1
    node M + b             block b: leaves (neurons) b·block .. b·block + block - 1

Rows are nodes and columns are points (node-major), like P: after a fold rewrote row r of P
over columns c0:c1, maintenance is a contiguous pass bounds[v, c0:c1] = max(bounds[v, c0:c1],
P[r, c0:c1]) up the path of r. Blocks past the last neuron hold -inf.

Invariant (asynchronous maintenance): bounds[v, j] >= bounds[2v, j], bounds[2v + 1, j] and a
block node's bound >= its leaves: every bound is an UPPER bound. A key that increases raises
the bounds on its path only while they are below it; a key that decreases changes nothing.
Queries stay exact because they check the leaves themselves.

Headroom: reading a row's block bounds (n values, as many as the row of P itself) for every
row a fold rewrites would double the fold's memory traffic. So each row r keeps a headroom
h[r] >= 0 with  bounds[block(r), c] - P[r, c] >= h[r]  for every column c of the range a
worker folds. A fold whose largest increase of the row is below h[r] only lowers h[r]; one
that exceeds it raises the bounds to key + lift, lift = max(slack, LIFT · increase), which
buys headroom for the next few updates, and recomputes h[r]. Builds add ``slack`` to the
block bounds for the same reason. Headroom arithmetic rounds toward safety (``_gap``).

Every kernel has a NumPy twin in tests/naive.py.
"""

from __future__ import annotations

import numba as nb
import numpy as np

_JIT = dict(nopython=True, nogil=True, cache=True)


LIFT = 4.0  # a raise buys headroom for about this many more increases of the same size


@nb.jit(**_JIT)
def _gap(bound, key):
    """A lower bound of the exact bound - key: the float64 difference, less its rounding error."""
    d = np.float64(bound) - np.float64(key)
    return d - abs(d) * 2.0**-50 - 1e-300


@nb.jit(**_JIT)
def build(P, bounds, block, slack, col0, col1):
    """Bounds of columns col0:col1 from P (m, n) into bounds (2M, n): block maxima + slack, then up."""
    m = P.shape[0]
    M = bounds.shape[0] // 2
    for b in range(M):
        row = bounds[M + b, col0:col1]
        r0 = b * block
        if r0 >= m:
            row[:] = -np.inf
            continue
        row[:] = P[r0, col0:col1]
        for r in range(r0 + 1, min(r0 + block, m)):
            p = P[r, col0:col1]
            for c in range(row.shape[0]):
                if p[c] > row[c]:
                    row[c] = p[c]
        for c in range(row.shape[0]):
            row[c] += slack
    for v in range(M - 1, 0, -1):
        row, left, right = bounds[v, col0:col1], bounds[2 * v, col0:col1], bounds[2 * v + 1, col0:col1]
        for c in range(row.shape[0]):
            row[c] = left[c] if left[c] > right[c] else right[c]


@nb.jit(**_JIT)
def headroom_of(P, bounds, block, headroom, col0, col1):
    """headroom[r] = min over columns col0:col1 of (block bound - key), rounded down; (m,) float64."""
    M = bounds.shape[0] // 2
    for r in range(P.shape[0]):
        p, row = P[r, col0:col1], bounds[M + r // block, col0:col1]
        h = np.inf
        for c in range(p.shape[0]):
            g = _gap(row[c], p[c])
            if g < h:
                h = g
        headroom[r] = h if h >= 0.0 else 0.0


@nb.jit(**_JIT)
def rebuild_column(P, bounds, block, slack, j, headroom):
    """Bounds of column j alone from P (strided reads); the headroom of its rows shrinks to fit."""
    m = P.shape[0]
    M = bounds.shape[0] // 2
    for b in range(M):
        best = -np.inf
        for r in range(b * block, min(b * block + block, m)):
            if P[r, j] > best:
                best = P[r, j]
        bounds[M + b, j] = best + slack
        for r in range(b * block, min(b * block + block, m)):
            g = _gap(bounds[M + b, j], P[r, j])
            if g < headroom[r]:
                headroom[r] = g if g >= 0.0 else 0.0
    for v in range(M - 1, 0, -1):
        left, right = bounds[2 * v, j], bounds[2 * v + 1, j]
        bounds[v, j] = left if left > right else right


@nb.jit(**_JIT)
def tight_visits(k, M, block):
    """The most reads (bounds and leaves) a query reporting k neurons makes on a tight tree.

    On a tight tree every node whose bound passes the threshold has a reported leaf below
    it, so level l holds at most min(2^l, k) such nodes, each reading its two children.
    """
    reads = 1  # the root
    width = 1
    while width < M:
        reads += 2 * min(width, k)
        width *= 2
    return reads + block * min(M, k)


@nb.jit(**_JIT)
def query(P, bounds, block, j, threshold, out, start, frontier):
    """Neurons r with P[r, j] > threshold, ascending, written to out[start:]; returns (end, reads).

    Breadth-first, level by level: the bounds of a level's surviving nodes are independent
    loads the processor can overlap. A subtree whose bound is <= threshold is skipped.
    frontier (2, M) int64 is scratch. ``end`` counts every reported neuron even past
    out.size (only the ones that fit are written), so a caller can grow ``out`` and rerun.
    """
    m = P.shape[0]
    M = bounds.shape[0] // 2
    cap = out.shape[0]
    cur, nxt = frontier[0], frontier[1]
    reads = 1
    t = start
    if not bounds[1, j] > threshold:
        return t, reads
    cur[0] = 1
    count = 1
    width = 1
    while width < M:  # internal levels: keep the children whose bound passes
        found = 0
        for s in range(count):  # branch-free appends: the loads do not wait on predictions
            v = 2 * cur[s]
            left, right = bounds[v, j] > threshold, bounds[v + 1, j] > threshold
            nxt[found] = v
            found += left
            nxt[found] = v + 1
            found += right
        reads += 2 * count
        cur, nxt = nxt, cur
        count = found
        width *= 2
    for s in range(count):  # blocks: check the leaves themselves
        r0 = (cur[s] - M) * block
        r1 = min(r0 + block, m)
        for r in range(r0, r1):
            if P[r, j] > threshold:
                if t < cap:
                    out[t] = r
                t += 1
        reads += r1 - r0
    return t, reads


@nb.jit(**_JIT)
def tree_forward(P, bounds, block, slack, a, batch, shift, inv_sqrt_m, fired_ptr, fired_rows, f, frontier, waste,
                 headroom, stats):  # fmt: skip
    """The tree's twin of ``_kernels.forward_batch``: same fired sets, same outputs, same bits.

    P (m, n); bounds (2M, n); a (m, C); batch (B,) column indices of P; writes fired_ptr
    (B + 1,), fired_rows (CSR, ascending within a point) and f (B, C), summing a[r] (P[r, j]
    - shift) in ascending r exactly as the scan does. Returns nnz (possibly > fired_rows.size:
    grow and rerun; the bounds may have been rebuilt, which never changes an answer).

    Rebuild rule: the reads of a query beyond twice ``tight_visits`` of what it reported
    (slack alone stays within that) are waste, accumulated per column in waste (n,) int64;
    when a column's waste exceeds the cost of rebuilding it (m leaf reads and 2M node
    writes) the column is rebuilt and its waste reset, so a loose column costs at most about
    one rebuild in wasted reads. headroom (m,) is the querying worker's (see the module doc).
    stats (3,) int64 receives (reads, reported, rebuilds) of this call.
    """
    m = P.shape[0]
    M = bounds.shape[0] // 2
    C = a.shape[1]
    cap = fired_rows.shape[0]
    stats[0] = stats[1] = stats[2] = 0
    t = 0
    fired_ptr[0] = 0
    for i in range(batch.shape[0]):
        j = batch[i]
        end, reads = query(P, bounds, block, j, shift, fired_rows, t, frontier)
        for c in range(C):
            f[i, c] = 0.0
        for s in range(t, min(end, cap)):
            r = fired_rows[s]
            z = P[r, j] - shift
            for c in range(C):
                f[i, c] += a[r, c] * z
        for c in range(C):
            f[i, c] *= inv_sqrt_m
        k = end - t
        stats[0] += reads
        stats[1] += k
        waste[j] += max(0, reads - 2 * tight_visits(k, M, block))
        if waste[j] > m + 2 * M:
            rebuild_column(P, bounds, block, slack, j, headroom)
            waste[j] = 0
            stats[2] += 1
        t = end
        fired_ptr[i + 1] = t
    return t


@nb.jit(**_JIT)
def _raise_path(bounds, v, target, col0, active):
    """Raise the bounds from node v up to the root to at least ``target`` (w,) on columns col0:col0 + w.

    The first level compares every column; each level above only the columns raised below
    it (``active``, scratch of w ints): an ancestor of a bound that was already >= the
    target is >= it too.
    """
    row = bounds[v, col0 : col0 + target.shape[0]]
    count = 0
    for c in range(target.shape[0]):
        if target[c] > row[c]:
            row[c] = target[c]
            active[count] = c
            count += 1
    v //= 2
    while count > 0 and v >= 1:
        kept = 0
        for s in range(count):
            c = active[s]
            if target[c] > bounds[v, col0 + c]:
                bounds[v, col0 + c] = target[c]
                active[kept] = c
                kept += 1
        count = kept
        v //= 2


@nb.jit(**_JIT)
def raise_bounds(P, bounds, block, rows, col0, col1):
    """Restore the invariant after the keys of ``rows`` (P rows rewritten over col0:col1) changed.

    Walks up from each row's block: bounds[v, c] = max(bounds[v, c], P[r, c]), per column
    only while it raises something. (No headroom: the plain rule, for tests and measurements.)
    """
    M = bounds.shape[0] // 2
    active = np.empty(col1 - col0, dtype=np.int64)
    for r in rows:
        _raise_path(bounds, M + r // block, P[r, col0:col1], col0, active)


@nb.jit(**_JIT)
def fold_and_raise(P, bounds, block, g_rows, row_ptr, owner, coef, slots, col0, col1, headroom, slack, counts):
    """``_kernels.fold_records`` that keeps the tree valid in the same sweep, while each row is in cache.

    The additions to P are those of fold_records in the same order (identical bits). Then a
    touched row whose largest increase fits its headroom (m,) only spends headroom; another
    raises its bounds to key + lift and gets new headroom. counts (2,) int64 receives (rows
    whose bounds were raised, rows that only spent headroom). Returns the rows touched.
    """
    m = P.shape[0]
    n = g_rows.shape[2]
    M = bounds.shape[0] // 2
    rows = g_rows.reshape(-1, n)  # (L·B, n): slot k's row i is k·B + i
    per_record = g_rows.shape[1]
    w = col1 - col0
    active = np.empty(w, dtype=np.int64)
    old = np.empty(w, dtype=P.dtype)
    target = np.empty(w, dtype=P.dtype)
    counts[0] = counts[1] = 0
    touched = 0
    for r in range(m):
        hit = False
        for k in slots:
            hit = hit or row_ptr[k, r + 1] > row_ptr[k, r]
        if not hit:
            continue
        touched += 1
        p = P[r, col0:col1]
        old[:] = p
        for k in slots:
            for t in range(row_ptr[k, r], row_ptr[k, r + 1]):
                g = rows[k * per_record + owner[k, t], col0:col1]
                c = coef[k, t]
                for j in range(w):
                    p[j] += c * g[j]
        rise = 0.0 if w == 0 else -np.inf
        for j in range(w):
            d = np.float64(p[j]) - np.float64(old[j])
            if d > rise:
                rise = d
        rise += abs(rise) * 2.0**-50 + 1e-300  # rounded up
        h = headroom[r] - rise
        h -= abs(h) * 2.0**-50 + 1e-300  # rounded down
        if h >= 0.0:
            headroom[r] = h
            counts[1] += 1
            continue
        lift = max(slack, LIFT * rise)
        for j in range(w):
            target[j] = p[j] + lift
        _raise_path(bounds, M + r // block, target, col0, active)
        row = bounds[M + r // block, col0:col1]
        h = np.inf
        for j in range(w):
            gap = _gap(row[j], p[j])
            if gap < h:
                h = gap
        headroom[r] = h if h >= 0.0 else 0.0
        counts[0] += 1
    return touched
