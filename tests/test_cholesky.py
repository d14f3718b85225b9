"""The tiled Cholesky that replaces LAPACK's dpotrf at large n: equal to LAPACK, in place, failing as LAPACK does."""

import numpy as np
import pytest
import scipy.linalg

from kronsgd.estimators import kernel_ridge
from kronsgd.estimators.cholesky import factor_lower, solve_lower


def _spd(n, rank, seed=0, shift=1e-3):
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((n, rank))
    H = M @ M.T / rank
    H.flat[:: n + 1] += shift
    return H


@pytest.mark.parametrize(("n", "block"), [(1, 4), (3, 4), (4, 4), (17, 4), (64, 16), (130, 32), (300, 512)])
def test_tiles_equal_lapack(n, block):
    H = _spd(n, rank=max(1, n // 2), seed=n)
    Y = np.random.default_rng(1).standard_normal((n, 3))
    A = H.copy()
    L = factor_lower(A, block=block)
    assert L is A  # in place
    np.testing.assert_allclose(np.tril(L), np.linalg.cholesky(H), rtol=0, atol=1e-10)
    expected = scipy.linalg.cho_solve(scipy.linalg.cho_factor(H), Y)  # (n, 3)
    np.testing.assert_allclose(solve_lower(L, Y, block=block), expected, rtol=1e-9, atol=1e-9 * np.abs(expected).max())


def test_only_the_lower_triangle_is_read():
    H = _spd(50, 10)
    A = H.copy()
    A[np.triu_indices(50, 1)] = np.nan  # LAPACK's convention: the other triangle may hold anything
    np.testing.assert_allclose(np.tril(factor_lower(A, block=8)), np.linalg.cholesky(H), atol=1e-10)


def test_ill_conditioned_systems_as_accurate_as_lapack():
    H = _spd(400, 16, shift=0.0)  # rank 16: the ridge alone keeps it positive definite
    Y = np.random.default_rng(2).standard_normal((400, 2))
    for alpha in (1e-6, 1e-10):
        S = H.copy()
        S.flat[::401] += alpha
        lapack = scipy.linalg.cho_solve(scipy.linalg.cho_factor(S.copy()), Y)
        tiles = solve_lower(factor_lower(S.copy(), block=64), Y, block=64)
        lapack, tiles = (np.linalg.norm(S @ X - Y) / np.linalg.norm(Y) for X in (lapack, tiles))
        assert tiles <= 3 * lapack + 1e-14


def test_not_positive_definite_raises_linalg_error():
    H = _spd(40, 5, shift=0.0)
    H[30, 30] = -1.0  # a negative pivot in the fourth tile
    with pytest.raises(np.linalg.LinAlgError):
        factor_lower(H, block=8)


def test_cholesky_solve_switches_to_tiles_beyond_direct_max(monkeypatch):
    H = _spd(90, 30)
    Y = np.random.default_rng(3).standard_normal((90, 2))
    direct = kernel_ridge.cholesky_solve(H, Y, 0.01)
    calls = []
    monkeypatch.setattr(kernel_ridge, "DIRECT_MAX", 40)
    monkeypatch.setattr(kernel_ridge, "factor_lower", lambda A: calls.append(A.shape) or factor_lower(A, block=16))
    tiled = kernel_ridge.cholesky_solve(H, Y, 0.01)
    assert calls == [(90, 90)]
    np.testing.assert_allclose(tiled, direct, rtol=1e-10, atol=1e-12)


def test_cholesky_solve_by_tiles_falls_back_to_the_eigendecomposition(monkeypatch):
    """A kernel whose rounding makes H + αI indefinite: the tiles fail as LAPACK does, and the
    solve goes through the eigendecomposition with negative eigenvalues taken as 0."""
    rng = np.random.default_rng(4)
    M = rng.standard_normal((60, 3))
    H = M @ M.T  # rank 3
    H -= 1e-9 * np.eye(60)  # slightly indefinite
    Y = rng.standard_normal((60, 1))
    monkeypatch.setattr(kernel_ridge, "DIRECT_MAX", 10)
    rebuilt = []
    X = kernel_ridge.cholesky_solve(H.copy(), Y, 1e-12, rebuild=lambda: rebuilt.append(1) or H.copy())
    assert rebuilt == [1]
    lam, Q = np.linalg.eigh(H)
    np.testing.assert_allclose(X, Q @ ((Q.T @ Y) / (np.maximum(lam, 0) + 1e-12)[:, None]), rtol=1e-6)
