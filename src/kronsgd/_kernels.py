"""numba kernels of one Kronecker SGD step. Arrays and scalars only; no validation here.

A step is split in two pieces so that serial, asynchronous and distributed engines are loops
over the same parts:

* ``compute``: from the current pre-activations P (m, n), find the fired neurons of each batch
  point and their SGD coefficients c (the "update record": batch, fired rows, coefficients);
* ``apply``: add an update record to P on a range of columns, and to alpha.

Every kernel has a slow NumPy twin in tests/naive.py that the tests compare it with.
"""

from __future__ import annotations

import numba as nb

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
def group_by_row(m, fired_ptr, fired_rows, row_ptr, entry_owner, entry_index):
    """Counting sort of the fired pairs by neuron: row r's pairs are entries row_ptr[r]:row_ptr[r+1].

    Within a row, pairs keep batch order. entry_owner holds the batch position i, entry_index
    the position t in fired_rows/coefs. Returns the number of distinct rows touched.
    """
    for r in range(m + 1):
        row_ptr[r] = 0
    nnz = fired_ptr[fired_ptr.shape[0] - 1]
    for t in range(nnz):
        row_ptr[fired_rows[t] + 1] += 1
    touched = 0
    for r in range(m):
        if row_ptr[r + 1] > 0:
            touched += 1
        row_ptr[r + 1] += row_ptr[r]
    for i in range(fired_ptr.shape[0] - 1):
        for t in range(fired_ptr[i], fired_ptr[i + 1]):
            r = fired_rows[t]
            slot = row_ptr[r]
            entry_owner[slot] = i
            entry_index[slot] = t
            row_ptr[r] += 1
    for r in range(m, 0, -1):  # the scatter advanced each start to the next row's start
        row_ptr[r] = row_ptr[r - 1]
    row_ptr[0] = 0
    return touched


@nb.jit(**_JIT)
def apply_rows(P, G, g_index, row_ptr, entry_owner, entry_index, coefs, col0, col1):
    """P[r, col0:col1] += sum over row r's pairs (i, t) of coefs[t] · G[g_index[i], col0:col1].

    G holds the Gram rows of the batch points: row g_index[i] is <x_batch[i], x_j> for all j.
    Each touched P row is read and written once; its pairs are applied in batch order.
    """
    m = P.shape[0]
    for r in range(m):
        for s in range(row_ptr[r], row_ptr[r + 1]):
            g = g_index[entry_owner[s]]
            c = coefs[entry_index[s]]
            for j in range(col0, col1):
                P[r, j] += c * G[g, j]


@nb.jit(**_JIT)
def apply_alpha(alpha, batch, fired_ptr, fired_rows, coefs):
    """alpha[r, batch[i]] += coefs[t] for every fired pair: w_r gains coefs[t] · x_batch[i]."""
    for i in range(batch.shape[0]):
        j = batch[i]
        for t in range(fired_ptr[i], fired_ptr[i + 1]):
            alpha[fired_rows[t], j] += coefs[t]


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
