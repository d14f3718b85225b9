"""The numba kernels against their NumPy twins (tests/naive.py), over shapes and dtypes."""

import numpy as np
import pytest

import naive
from kronsgd import _kernels as K

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


@pytest.mark.parametrize("m,n,B,C", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_apply_matches_twin(m, n, B, C, dtype):
    P, a, G, batch, y = _state(m, n, B, C, dtype, seed=3 * m + n)
    fired_ptr, fired_rows, coefs, _, nnz = _record(P, a, batch, y, 0.2, 0.5, dtype)
    row_ptr = np.zeros(m + 1, np.int64)
    owner, index = np.zeros(max(nnz, 1), np.int64), np.zeros(max(nnz, 1), np.int64)
    touched = K.group_by_row(m, fired_ptr, fired_rows, row_ptr, owner, index)
    assert touched == np.unique(fired_rows[:nnz]).size

    P_k, alpha_k = P.copy(), np.zeros((m, n), dtype)
    K.apply_rows(P_k, G, batch, row_ptr, owner, index, coefs, 0, n)
    K.apply_alpha(alpha_k, batch, fired_ptr, fired_rows, coefs)

    P_ref, alpha_ref = P.copy(), np.zeros((m, n), dtype)
    fired = [fired_rows[fired_ptr[i] : fired_ptr[i + 1]] for i in range(B)]
    per_point = [coefs[fired_ptr[i] : fired_ptr[i + 1]] for i in range(B)]
    naive.apply_update(P_ref, alpha_ref, G, batch, fired, per_point)
    # same operations in the same order (each row's pairs in batch order): identical bits
    np.testing.assert_array_equal(P_k, P_ref)
    np.testing.assert_array_equal(alpha_k, alpha_ref)


def test_apply_rows_respects_the_column_range():
    m, n = 20, 12
    P, a, G, batch, y = _state(m, n, 4, 1, np.float64, seed=11)
    fired_ptr, fired_rows, coefs, _, nnz = _record(P, a, batch, y, 0.0, 1.0, np.float64)
    row_ptr, owner, index = np.zeros(m + 1, np.int64), np.zeros(nnz, np.int64), np.zeros(nnz, np.int64)
    K.group_by_row(m, fired_ptr, fired_rows, row_ptr, owner, index)
    whole, halves = P.copy(), P.copy()
    K.apply_rows(whole, G, batch, row_ptr, owner, index, coefs, 0, n)
    K.apply_rows(halves, G, batch, row_ptr, owner, index, coefs, 0, 5)
    assert not np.array_equal(halves, whole)
    np.testing.assert_array_equal(halves[:, 5:], P[:, 5:])
    K.apply_rows(halves, G, batch, row_ptr, owner, index, coefs, 5, n)
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
