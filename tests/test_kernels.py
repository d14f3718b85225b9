"""The numba kernels against their NumPy twins (tests/naive.py), over shapes and dtypes."""

import numpy as np
import pytest

import naive
from kronsgd.kernels import step as K

CASES = [  # (m, n, B, C)
    (1, 1, 1, 1),
    (7, 5, 3, 1),
    (64, 40, 8, 3),
    (300, 33, 33, 2),
]


def _state(m, n, B, C, dtype, seed):
    rng = np.random.default_rng(seed)
    P = rng.standard_normal((m, n)).astype(dtype)
    a = rng.choice([-1.0, 1.0], size=(m, C))
    G = rng.standard_normal((n, n)).astype(dtype)
    batch = rng.choice(n, size=B, replace=False).astype(np.int64)
    y = rng.standard_normal((n, C))
    return P, a, G, batch, y


def _record(P, a, batch, y, shift, lr, dtype):
    """Run forward_batch + coefficients; return (fired_ptr, fired_rows, coefs, f, nnz)."""
    m, B, C = P.shape[0], batch.size, a.shape[1]
    fired_ptr = np.zeros(B + 1, np.int64)
    fired_rows = np.zeros(m * B + 1, np.int64)
    f = np.zeros((B, C))
    nnz = K.forward_batch(P, a, batch, shift, 1 / np.sqrt(m), fired_ptr, fired_rows, f)
    coefs = np.zeros(max(nnz, 1), dtype)
    residual = f - y[batch]
    K.coefficients(a, residual, fired_ptr, fired_rows, -lr / np.sqrt(m), coefs)
    return fired_ptr, fired_rows, coefs, f, nnz


@pytest.mark.parametrize("m,n,B,C", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shift", [0.0, 0.7])
def test_forward_and_coefficients_match_twin(m, n, B, C, dtype, shift):
    P, a, _, batch, y = _state(m, n, B, C, dtype, seed=m + n)
    fired_ptr, fired_rows, coefs, f, nnz = _record(P, a, batch, y, shift, 0.3, dtype)
    fired, f_ref = naive.fired_and_outputs(P.astype(np.float64), a, batch, shift)
    assert nnz == sum(F.size for F in fired)
    for i, F in enumerate(fired):
        np.testing.assert_array_equal(fired_rows[fired_ptr[i] : fired_ptr[i + 1]], F)
    np.testing.assert_allclose(f, f_ref, rtol=1e-12, atol=1e-12)
    ref = np.concatenate(naive.coefficients(a, f_ref - y[batch], fired, 0.3, m) + [np.zeros(0)])
    np.testing.assert_allclose(coefs[:nnz], ref.astype(dtype), rtol=1e-6 if dtype == np.float32 else 1e-12)


def test_forward_reports_overflow_without_writing_past_the_buffer():
    P = np.ones((10, 4))
    fired_ptr, fired_rows, f = np.zeros(3, np.int64), np.full(5, -7, np.int64), np.zeros((2, 1))
    nnz = K.forward_batch(P, np.ones((10, 1)), np.array([0, 1]), 0.5, 1.0, fired_ptr, fired_rows, f)
    assert nnz == 20  # reported in full so the caller can grow the buffer
    np.testing.assert_array_equal(fired_rows, [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(fired_ptr, [0, 10, 20])


def _pair_rows(row_ptr):
    """(L, cap) the row of every pair of each record, from its CSR row pointers (the twin of group_by_row's)."""
    out = np.zeros((row_ptr.shape[0], max(1, int(row_ptr[:, -1].max()))), np.int32)
    for k, ptr in enumerate(row_ptr):
        out[k, : ptr[-1]] = np.repeat(np.arange(ptr.size - 1), np.diff(ptr))
    return out


def _records(P, a, G, y, batches, shift, dtype):
    """Compute update records for ``batches`` (each from P as it is), in window layout."""
    m, n = P.shape
    B = max(b.size for b in batches)
    g_rows = np.zeros((len(batches), B, n), dtype)
    row_ptr = np.zeros((len(batches), m + 1), np.int64)
    owner = np.zeros((len(batches), m * B + 1), np.int64)
    coef = np.zeros((len(batches), m * B + 1), dtype)
    touched = np.full((len(batches), m * B + 1), -1, np.int64)
    n_touched = np.zeros(len(batches), np.int64)
    fired_all = []
    for k, batch in enumerate(batches):
        fired_ptr, fired_rows, coefs, _, nnz = _record(P, a, batch, y, shift, 0.5, dtype)
        n_touched[k] = K.group_by_row(m, fired_ptr, fired_rows, coefs, row_ptr[k], owner[k], coef[k], touched[k])
        np.testing.assert_array_equal(touched[k, : n_touched[k]], np.unique(fired_rows[:nnz]))
        g_rows[k, : batch.size] = G[batch]
        fired_all.append((fired_ptr, fired_rows, coefs))
    return g_rows, row_ptr, owner, coef, fired_all, (touched, n_touched)  # lists: for folds visiting only those


@pytest.mark.parametrize("m,n,B,C", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fold_matches_twin(m, n, B, C, dtype):
    P, a, G, batch, y = _state(m, n, B, C, dtype, seed=3 * m + n)
    records = _records(P, a, G, y, [batch], 0.2, dtype)
    g_rows, row_ptr, owner, coef, [(fired_ptr, fired_rows, coefs)], (touched, n_touched) = records

    P_k, alpha_k = P.copy(), np.zeros((m, n), dtype)
    K.fold_records(P_k, g_rows, row_ptr, owner, coef, np.arange(1), 0, n)
    K.fold_alpha(alpha_k, 0, batch[None], row_ptr, _pair_rows(row_ptr), owner, coef, np.arange(1), 0, n)

    P_ref, alpha_ref = P.copy(), np.zeros((m, n), dtype)
    fired = [fired_rows[fired_ptr[i] : fired_ptr[i + 1]] for i in range(B)]
    per_point = [coefs[fired_ptr[i] : fired_ptr[i + 1]] for i in range(B)]
    naive.apply_update(P_ref, alpha_ref, G, batch, fired, per_point)
    # same operations in the same order (each row's pairs in batch order): identical bits
    np.testing.assert_array_equal(P_k, P_ref)
    np.testing.assert_array_equal(alpha_k, alpha_ref)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fold_alpha_applies_only_its_points_with_an_offset(dtype):
    """A worker holding points 3:9 as alpha[:, 0:6] gets exactly those columns of the full fold."""
    m, n, B = 40, 12, 5
    P, a, G, _, y = _state(m, n, B, 2, dtype, seed=11)
    batches = [np.array([0, 4, 8, 9, 11]), np.array([3, 5, 6, 7, 1])]
    g_rows, row_ptr, owner, coef, _, (touched, n_touched) = _records(P, a, G, y, batches, 0.0, dtype)
    slots, batch = np.arange(2), np.stack(batches)
    full = np.zeros((m, n), dtype)
    K.fold_alpha(full, 0, batch, row_ptr, _pair_rows(row_ptr), owner, coef, slots, 0, n)
    shard = np.zeros((m, 6), dtype)
    K.fold_alpha(shard, 3, batch, row_ptr, _pair_rows(row_ptr), owner, coef, slots, 3, 9)
    np.testing.assert_array_equal(shard, full[:, 3:9])
    assert np.count_nonzero(full[:, 3:9]) > 0 and np.count_nonzero(full[:, :3]) > 0  # both sides got pairs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_folding_records_together_or_one_by_one_gives_the_same_bits(dtype):
    m, n = 120, 30
    P, a, G, _, y = _state(m, n, 1, 2, dtype, seed=5)
    rng = np.random.default_rng(6)
    batches = [rng.choice(n, size=s, replace=False) for s in (7, 3, 9, 1)]
    g_rows, row_ptr, owner, coef, _, lists = _records(P, a, G, y, batches, 0.1, dtype)
    together, one_by_one, visiting = P.copy(), P.copy(), P.copy()
    touched = K.fold_records(together, g_rows, row_ptr, owner, coef, np.arange(len(batches)), 0, n)
    for k in range(len(batches)):
        K.fold_records(one_by_one, g_rows, row_ptr, owner, coef, np.array([k]), 0, n)
    visited = K.fold_records(visiting, g_rows, row_ptr, owner, coef, np.arange(len(batches)), 0, n, *lists)
    np.testing.assert_array_equal(together, one_by_one)
    np.testing.assert_array_equal(visiting, together)  # only the touched rows visited: the same bits
    assert touched == visited == np.count_nonzero(np.any(together != P, axis=1))


def test_a_fold_over_the_touched_lists_merges_slots_in_ring_order():
    m, n = 60, 12
    P, a, G, _, y = _state(m, n, 1, 2, np.float64, seed=9)
    rng = np.random.default_rng(10)
    batches = [rng.choice(n, size=s, replace=False) for s in (4, 6, 2)]
    g_rows, row_ptr, owner, coef, _, (touched, n_touched) = _records(P, a, G, y, batches, 0.1, np.float64)
    slots = np.array([1, 2, 0])  # records 1, 2, 0 in that order, as a ring hands them out after a wrap
    swept, visited = P.copy(), P.copy()
    assert K.fold_records(swept, g_rows, row_ptr, owner, coef, slots, 0, n) == K.fold_records(
        visited, g_rows, row_ptr, owner, coef, slots, 0, n, touched, n_touched
    )
    np.testing.assert_array_equal(visited, swept)
    empty = np.zeros(3, np.int64)  # lists that say no row is touched: nothing is visited, nothing changes
    untouched = P.copy()
    assert K.fold_records(untouched, g_rows, row_ptr, owner, coef, slots, 0, n, touched, empty) == 0
    np.testing.assert_array_equal(untouched, P)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_corrected_columns_equal_the_folded_matrix(dtype):
    m, n = 90, 25
    P, a, G, _, y = _state(m, n, 1, 1, dtype, seed=7)
    rng = np.random.default_rng(8)
    batches = [rng.choice(n, size=s, replace=False) for s in (5, 8, 2)]
    g_rows, row_ptr, owner, coef, _, _ = _records(P, a, G, y, batches, 0.0, dtype)
    folded = P.copy()
    K.fold_records(folded, g_rows, row_ptr, owner, coef, np.arange(3), 0, n)
    query = np.array([3, 0, 24, 3, 11])
    cols = np.zeros((m, query.size), dtype)
    K.gather_columns(P, query, cols)
    np.testing.assert_array_equal(cols, P[:, query])
    K.correct_columns(
        cols, query, g_rows, np.array([5, 8, 2]), row_ptr, owner, coef, np.arange(3), np.zeros((8, 5), dtype)
    )
    np.testing.assert_array_equal(cols, folded[:, query])


def test_fold_respects_the_column_range():
    m, n = 20, 12
    P, a, G, batch, y = _state(m, n, 4, 1, np.float64, seed=11)
    g_rows, row_ptr, owner, coef, _, _ = _records(P, a, G, y, [batch], 0.0, np.float64)
    whole, halves = P.copy(), P.copy()
    K.fold_records(whole, g_rows, row_ptr, owner, coef, np.arange(1), 0, n)
    K.fold_records(halves, g_rows, row_ptr, owner, coef, np.arange(1), 0, 5)
    assert not np.array_equal(halves, whole)
    np.testing.assert_array_equal(halves[:, 5:], P[:, 5:])
    K.fold_records(halves, g_rows, row_ptr, owner, coef, np.arange(1), 5, n)
    np.testing.assert_array_equal(halves, whole)


@pytest.mark.parametrize("m,n,B,C", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_full_outputs_match_twin(m, n, B, C, dtype):
    P, a, *_ = _state(m, n, B, C, dtype, seed=m * n)
    out = np.zeros((n, C))
    fired = K.full_outputs(P, a, 0.4, 1 / np.sqrt(m), out)
    out_ref, fired_ref = naive.full_outputs(P.astype(np.float64), a, 0.4)
    assert fired == fired_ref
    np.testing.assert_allclose(out, out_ref, rtol=1e-12, atol=1e-12)


def test_group_by_row_writes_each_pairs_row_when_asked():
    m, n, B = 30, 8, 4
    P, a, G, batch, y = _state(m, n, B, 1, np.float64, seed=21)
    fired_ptr, fired_rows, coefs, _, nnz = _record(P, a, batch, y, 0.0, 0.5, np.float64)
    row_ptr, owner, coef = np.zeros(m + 1, np.int64), np.zeros(nnz, np.int64), np.zeros(nnz)
    rows = np.full(nnz, -1, np.int32)
    K.group_by_row(m, fired_ptr, fired_rows, coefs, row_ptr, owner, coef, np.zeros(nnz, np.int64), rows)
    np.testing.assert_array_equal(rows, _pair_rows(row_ptr[None])[0, :nnz])
    assert nnz > 10
