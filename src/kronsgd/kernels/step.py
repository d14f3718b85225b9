"""numba kernels of one Kronecker SGD step. Arrays and scalars only; no validation here.

A step is split in two pieces so that serial, asynchronous and distributed engines are loops
over the same parts:

* compute: gather the batch's columns of P and bring them up to date with the pending
  records (``gather_columns``, ``correct_columns``), find the fired neurons of each batch
  point and their SGD coefficients (``forward_batch``, ``coefficients``): the update record;
* apply: group the record by neuron (``group_by_row``), then add records, in log order,
  to a range of columns of P (``fold_records``) and of alpha (``fold_alpha``), one or
  several records at a time.

Every kernel has a slow NumPy twin in tests/naive.py that the tests compare it with.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .intrinsics import prefetch

_JIT = dict(nopython=True, nogil=True, cache=True)


@nb.jit(**_JIT)
def forward_batch(P, a, batch, shift, inv_sqrt_m, fired_ptr, fired_rows, f):
    """Fired sets F_i = {r : P[r, batch[i]] > shift} and outputs f[i] = a^T σ(P[:, batch[i]]) / sqrt(m).

    P (m, n); a (m, C); batch (B,); writes fired_ptr (B + 1,), fired_rows in CSR form (rows
    ascending within a point) and f (B, C). Returns nnz = sum_i |F_i|; when it exceeds
    fired_rows.size the rows past the end were not written and the caller must grow and rerun
    (the kernel only reads P, so a rerun is safe).
    """
    m = P.shape[0]
    C = a.shape[1]
    cap = fired_rows.shape[0]
    t = 0
    fired_ptr[0] = 0
    for i in range(batch.shape[0]):
        j = batch[i]
        for c in range(C):
            f[i, c] = 0.0
        for r in range(m):
            z = P[r, j] - shift
            if z > 0.0:
                if t < cap:
                    fired_rows[t] = r
                t += 1
                for c in range(C):
                    f[i, c] += a[r, c] * z
        for c in range(C):
            f[i, c] *= inv_sqrt_m
        fired_ptr[i + 1] = t
    return t


@nb.jit(**_JIT)
def coefficients(a, residual, fired_ptr, fired_rows, scale, coefs):
    """coefs[t] = scale · sum_c a[r, c] · residual[i, c] for the t-th fired pair (i, r).

    With scale = -lr / sqrt(m) this is the SGD coefficient of x_i in the update of w_r.
    Returns sum_t |coefs[t]|, the largest total change one P entry can receive (per unit of |G|).
    """
    C = a.shape[1]
    total = 0.0
    for i in range(fired_ptr.shape[0] - 1):
        for t in range(fired_ptr[i], fired_ptr[i + 1]):
            r = fired_rows[t]
            acc = 0.0
            for c in range(C):
                acc += a[r, c] * residual[i, c]
            coefs[t] = scale * acc
            total += abs(coefs[t])
    return total


@nb.jit(**_JIT)
def group_by_row(m, fired_ptr, fired_rows, coefs, row_ptr, entry_owner, entry_coef, touched_rows, entry_row=None):
    """Counting sort of the fired pairs by neuron: row r's pairs are entries row_ptr[r]:row_ptr[r+1].

    Within a row, pairs keep batch order. entry_owner holds the batch position i and
    entry_coef the coefficient of each pair (and entry_row, when given, its row r);
    touched_rows (>= nnz) receives the rows that have pairs, ascending, so that folds visit
    only those. Returns their number.
    """
    for r in range(m + 1):
        row_ptr[r] = 0
    nnz = fired_ptr[fired_ptr.shape[0] - 1]
    for t in range(nnz):
        row_ptr[fired_rows[t] + 1] += 1
    touched = 0
    for r in range(m):
        if row_ptr[r + 1] > 0:
            touched_rows[touched] = r
            touched += 1
        row_ptr[r + 1] += row_ptr[r]
    for i in range(fired_ptr.shape[0] - 1):
        for t in range(fired_ptr[i], fired_ptr[i + 1]):
            r = fired_rows[t]
            slot = row_ptr[r]
            entry_owner[slot] = i
            entry_coef[slot] = coefs[t]
            if entry_row is not None:
                entry_row[slot] = r
            row_ptr[r] += 1
    for r in range(m, 0, -1):  # the scatter advanced each start to the next row's start
        row_ptr[r] = row_ptr[r - 1]
    row_ptr[0] = 0
    return touched


@nb.jit(**_JIT)
def gather_columns(P, batch, out):
    """out[r, i] = P[r, batch[i]]: the batch's columns of P, (m, B)."""
    for r in range(P.shape[0]):
        for i in range(batch.shape[0]):
            out[r, i] = P[r, batch[i]]


@nb.jit(inline="always", **_JIT)
def _add_records(cols, batch, g_rows, rec_size, row_ptr, owner, coef, slots, scratch, sign):
    """cols[r, s] += (sign · c) · G[batch_k[i], batch[s]] for every pair of every record in ``slots``, in order.

    sign is 1.0 or -1.0, both exact: with 1.0 the additions are the fold's, bit for bit.
    """
    m = cols.shape[0]
    B = batch.shape[0]
    for k in slots:
        for i in range(rec_size[k]):
            for s in range(B):
                scratch[i, s] = g_rows[k, i, batch[s]]
        for r in range(m):
            for t in range(row_ptr[k, r], row_ptr[k, r + 1]):
                i = owner[k, t]
                c = coef[k, t] if sign > 0.0 else -coef[k, t]  # in coef's dtype: the fold's bits
                for s in range(B):
                    cols[r, s] += c * scratch[i, s]


@nb.jit(**_JIT)
def correct_columns(cols, batch, g_rows, rec_size, row_ptr, owner, coef, slots, scratch):
    """Bring gathered columns up to date with the pending update records in ``slots`` (in order).

    cols (m, B) holds P[:, batch] as of before the records; the record in slot k added
    coef · g_rows[k, i] to the rows of its pairs (g_rows[k, i] is the Gram row of its i-th
    batch point). Pairs are applied record by record, row by row, in batch order: the same
    sequence of additions a fold makes, so the result is bit-identical to folding first.
    scratch (>= max rec_size, >= B) holds G[batch_k, batch].
    """
    _add_records(cols, batch, g_rows, rec_size, row_ptr, owner, coef, slots, scratch, 1.0)


@nb.jit(**_JIT)
def revert_columns(cols, batch, g_rows, rec_size, row_ptr, owner, coef, slots, scratch):
    """Take the records in ``slots`` (given newest first) back out of gathered columns.

    The inverse of ``correct_columns``: cols (m, B) holds P[:, batch] after the records;
    each record's additions are subtracted, record by record from the newest, giving the
    columns as they were before the oldest of them (to rounding: a subtraction does not undo
    an addition bit for bit). scratch (>= max rec_size, >= B).
    """
    _add_records(cols, batch, g_rows, rec_size, row_ptr, owner, coef, slots, scratch, -1.0)


@nb.jit(inline="always", **_JIT)  # a call per row of P costs more than the row when few are touched
def row_pairs(row_ptr, owner, coef, slots, per_record, r, gi, cc):
    """Row r's pairs from every record of ``slots``, in order, into gi (row of g_rows) and cc; returns their count."""
    count = 0
    for k in slots:
        for t in range(row_ptr[k, r], row_ptr[k, r + 1]):
            gi[count] = k * per_record + owner[k, t]
            cc[count] = coef[k, t]
            count += 1
    return count


@nb.jit(inline="always", **_JIT)
def fold_row(p, rows, gi, cc, count, col0, col1):
    """p += cc[t] · rows[gi[t], col0:col1] for t < count, one addition at a time, up to four pairs per pass."""
    t = 0
    while t + 4 <= count:
        g1, g2, g3, g4 = (
            rows[gi[t], col0:col1],
            rows[gi[t + 1], col0:col1],
            rows[gi[t + 2], col0:col1],
            rows[gi[t + 3], col0:col1],
        )
        c1, c2, c3, c4 = cc[t], cc[t + 1], cc[t + 2], cc[t + 3]
        for j in range(p.shape[0]):
            p[j] = (((p[j] + c1 * g1[j]) + c2 * g2[j]) + c3 * g3[j]) + c4 * g4[j]
        t += 4
    while t < count:
        g1, c1 = rows[gi[t], col0:col1], cc[t]
        for j in range(p.shape[0]):
            p[j] += c1 * g1[j]
        t += 1


@nb.jit(inline="always", **_JIT)
def next_row(r, m, touched, n_touched, slots, pos):
    """The row a fold visits after row r: r + 1 (every row, when touched is None), or the
    smallest row past r in the touched lists of ``slots`` (touched (L, cap), n_touched (L,),
    each ascending; pos (len(slots),) int64 tracks them). Returns m when there is none."""
    if touched is None:
        return r + 1
    best = m
    for q in range(slots.shape[0]):
        k = slots[q]
        while pos[q] < n_touched[k] and touched[k, pos[q]] <= r:
            pos[q] += 1
        if pos[q] < n_touched[k] and touched[k, pos[q]] < best:
            best = touched[k, pos[q]]
    return best


AHEAD = 8  # touched rows whose lines a fold prefetches ahead of the one it folds


@nb.jit(**_JIT)  # not inlined: its body in the fold's loop slowed every row down, prefetching or not
def prefetch_rows_ahead(flat_P, n, touched, n_touched, slots, pos, col0, col1, flat_extra, extra_base):
    """Prefetch P[r', col0:col1] and extra[extra_base + r'] for the row AHEAD places on in the
    first slot's touched list (flat_P: P.reshape(-1), P (m, n); flat_extra 1-D; flat views
    made once, since a view per row costs more than the prefetch saves).

    Worth it when at least one row in 16 is touched (``dense_lists``): there the rows' misses
    no longer overlap on their own (a fold of 150,000 of 2^20 rows took 14.5 ms without, 9 ms
    with), while for sparse lists the calls cost more than they save.
    """
    k = slots[0]
    q = pos[0] + AHEAD
    if q < n_touched[k]:
        r = touched[k, q]
        for c in range(col0, col1, 16):  # 16 float32 per line; float64 rows get every other line
            prefetch(flat_P, r * n + c)
        prefetch(flat_extra, extra_base + r)


@nb.jit(inline="always", **_JIT)
def fold_scratch(P, g_rows, slots):
    """What a fold of ``slots`` works with: the Gram rows as (L·B, n) (slot k's row i is k·B + i),
    B, one row's pairs flattened in order (gi, cc) and the positions in the touched lists."""
    rows = g_rows.reshape(-1, g_rows.shape[2])
    per_record = g_rows.shape[1]
    gi = np.empty(slots.shape[0] * per_record + 1, dtype=np.int64)
    cc = np.empty(slots.shape[0] * per_record + 1, dtype=P.dtype)
    return rows, per_record, gi, cc, np.zeros(slots.shape[0], dtype=np.int64)


@nb.jit(inline="always", **_JIT)
def dense_lists(m, touched, n_touched, slots):
    """True when the first slot's touched list holds at least one row in 16 (see prefetch_rows_ahead)."""
    if touched is None:
        return False  # a sweep of every row: the hardware prefetcher follows it
    return 16 * n_touched[slots[0]] >= m


@nb.jit(**_JIT)
def fold_records(P, g_rows, row_ptr, owner, coef, slots, col0, col1, touched=None, n_touched=None):
    """Apply the update records in ``slots`` (in order) to P[:, col0:col1].

    P[r, j] += coef · g_rows[k, i, j] for every pair. Row by row: all the pairs of row r, from
    every record, are applied while that row of P is in cache, up to four per pass over the
    row, so each element is loaded and stored once per four pairs. Each entry still receives
    its additions one at a time, record by record in batch order: the bits do not depend on
    how many records are folded at once. With the records' touched-row lists (as written by
    ``group_by_row``) only those rows are visited, not all m. Returns the number of rows touched.
    """
    m = P.shape[0]
    rows, per_record, gi, cc, pos = fold_scratch(P, g_rows, slots)
    flat_P, flat_ptr, base = P.reshape(-1), row_ptr.reshape(-1), slots[0] * row_ptr.shape[1]
    dense = dense_lists(m, touched, n_touched, slots)
    touched_count = 0
    r = next_row(-1, m, touched, n_touched, slots, pos)
    while r < m:
        if dense:
            prefetch_rows_ahead(flat_P, P.shape[1], touched, n_touched, slots, pos, col0, col1, flat_ptr, base)
        count = row_pairs(row_ptr, owner, coef, slots, per_record, r, gi, cc)
        if count > 0:
            touched_count += 1
            fold_row(P[r, col0:col1], rows, gi, cc, count, col0, col1)  # a slice from 0: no wraparound checks
        r = next_row(r, m, touched, n_touched, slots, pos)
    return touched_count


@nb.jit(**_JIT)
def fold_alpha(alpha, offset, batch, row_ptr, pair_row, owner, coef, slots, col0, col1):
    """Apply the records in ``slots`` (in order) to the points col0:col1 of alpha: the implicit weights' fold.

    alpha (m, n_a) holds points offset .. offset + n_a - 1. alpha[pair_row[k, t], j - offset]
    += coef[k, t], j = batch[k, owner[k, t]], for every pair t of record k (row_ptr[k, m] of
    them) whose point j falls in the range: one sequential pass over the pairs (no per-row
    lookups), in the order the fold of P gives P its additions.
    """
    m = row_ptr.shape[1] - 1
    for q in range(slots.shape[0]):
        k = slots[q]
        for t in range(row_ptr[k, m]):
            j = batch[k, owner[k, t]]
            if col0 <= j < col1:
                alpha[pair_row[k, t], j - offset] += coef[k, t]


@nb.jit(**_JIT)
def full_outputs(P, a, shift, inv_sqrt_m, out):
    """out[j] = a^T σ(P[:, j]) / sqrt(m) for every point; P (m, n), out (n, C) float64.

    Streams P row by row. Returns the number of (neuron, point) pairs that fire.
    """
    m, n = P.shape
    C = a.shape[1]
    fired = 0
    for j in range(n):
        for c in range(C):
            out[j, c] = 0.0
    for r in range(m):
        for j in range(n):
            z = P[r, j] - shift
            if z > 0.0:
                fired += 1
                for c in range(C):
                    out[j, c] += a[r, c] * z
    for j in range(n):
        for c in range(C):
            out[j, c] *= inv_sqrt_m
    return fired
