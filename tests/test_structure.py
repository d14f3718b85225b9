"""KroneckerData.from_dense: nearest Kronecker factors of dense samples (Van Loan–Pitsianis)."""

import math

import numpy as np
import pytest

from kronsgd import KroneckerData, ValidationError
from kronsgd.data import structure as _structure


def kron_samples(n, dims, rank, seed=0, weights=None):
    """Dense (n, d) samples x_i = Σ_q w_q · u_i^(q,1) ⊗ ... ⊗ u_i^(q,k), built by numpy.kron itself."""
    rng = np.random.default_rng(seed)
    factors = [rng.standard_normal((n, rank, d)) for d in dims]
    weights = np.ones(rank) if weights is None else np.asarray(weights)
    X = np.zeros((n, math.prod(dims)))
    for i in range(n):
        for q in range(rank):
            term = np.ones(1)
            for f in factors:
                term = np.kron(term, f[i, q])
            X[i] += weights[q] * term
    return X


def relative_error(data, X):
    return np.linalg.norm(data.to_dense() - X, axis=1) / np.linalg.norm(X, axis=1)


# ---- exact recovery --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("dims", "rank", "shape"),
    [
        ((8, 8), 2, "auto"),
        ((6, 10), 3, "auto"),  # non-square, found among (2, 30), (3, 20), (4, 15), (5, 12), (6, 10)
        ((10, 6), 2, (10, 6)),  # d1 > d2
        ((5, 7), 4, "5x7"),
        ((3, 16), 1, (3, 16)),
    ],
)
def test_two_factors_are_recovered_exactly_with_their_rank(dims, rank, shape):
    X = kron_samples(30, dims, rank)
    data = KroneckerData.from_dense(X, shape=shape, energy=1.0)  # 1.0: keep all but rounding
    assert data.dims == dims
    assert data.rank == rank and data.level_ranks == (rank,)
    assert data.residual.shape == (30,) and data.residual.max() <= 1e-10
    assert relative_error(data, X).max() <= 1e-10
    assert data.energy == pytest.approx(1.0, abs=1e-12) and data.energy_target == 1.0
    default = KroneckerData.from_dense(X, shape=dims)  # 0.99 over the data set: weak terms may go
    assert default.rank <= rank and default.energy >= 0.99


@pytest.mark.parametrize(("dims", "rank"), [((3, 4, 5), 2), ((8, 8, 16), 2), ((2, 3, 4, 2), 2), ((4, 5, 3), 1)])
def test_more_factors_are_recovered_exactly_by_recursive_splits(dims, rank):
    X = kron_samples(12, dims, rank, seed=1)
    data = KroneckerData.from_dense(X, shape=dims, energy=1.0)
    k = len(dims)
    assert data.dims == dims
    assert data.level_ranks == (rank,) * (k - 1)  # rank R in that shape needs R terms per split
    assert data.rank == rank ** (k - 1)
    assert data.residual.max() <= 1e-10
    assert relative_error(data, X).max() <= 1e-10


def test_an_int_rank_is_kept_at_every_split():
    X = kron_samples(10, (4, 3, 5), 3, seed=2)
    data = KroneckerData.from_dense(X, shape=(4, 3, 5), rank=3)
    assert data.level_ranks == (3, 3) and data.rank == 9
    assert relative_error(data, X).max() <= 1e-10
    low = KroneckerData.from_dense(X, shape=(4, 3, 5), rank=1)
    assert low.rank == 1 and low.residual.min() > 1e-3  # rank 1 cannot hold three generic terms


def test_numpy_kron_convention_and_balanced_factors():
    rng = np.random.default_rng(3)
    u, v = rng.standard_normal(4), 5.0 * rng.standard_normal(6)
    data = KroneckerData.from_dense(np.kron(u, v)[None, :], shape=(4, 6), rank=1)
    a, b = data.factors[0][0, 0], data.factors[1][0, 0]  # (4,), (6,)
    np.testing.assert_allclose(np.kron(a, b), np.kron(u, v), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(abs(a @ u), np.linalg.norm(a) * np.linalg.norm(u), rtol=1e-12)  # a ∥ u
    assert np.linalg.norm(a) == pytest.approx(np.linalg.norm(b), rel=1e-12)  # sqrt(s) u, sqrt(s) v


def test_gram_of_the_factors_equals_the_dense_gram():
    X = kron_samples(15, (6, 4), 2, seed=4)
    data = KroneckerData.from_dense(X)
    np.testing.assert_allclose(data.gram(), X @ X.T, rtol=1e-10, atol=1e-10)


def test_a_stack_of_matrices_keeps_its_own_shape():
    X = kron_samples(10, (4, 9), 2, seed=5)
    data = KroneckerData.from_dense(X.reshape(10, 4, 9))  # auto would otherwise pick among (2, 18), (3, 12), (4, 9)
    assert data.dims == (4, 9) and data.rank == 2
    np.testing.assert_allclose(data.to_dense(), X, rtol=1e-10, atol=1e-10)
    assert KroneckerData.from_dense(X.reshape(10, 4, 9), shape=(6, 6)).dims == (6, 6)


# ---- noise -----------------------------------------------------------------------------
def test_residual_tracks_the_noise_between_sound_bounds():
    n, dims, R, sigma = 40, (8, 12), 2, 1e-2
    clean = kron_samples(n, dims, R, seed=6)
    noise = sigma * np.random.default_rng(7).standard_normal(clean.shape)
    X = clean + noise
    data = KroneckerData.from_dense(X, shape=dims, rank=R)
    norms = np.linalg.norm(X, axis=1)
    # Eckart–Young: the best rank-R fit is at least as close as the clean rank-R samples
    upper = np.linalg.norm(noise, axis=1) / norms
    # Weyl: s_{q+R}(E) <= s_q(M + E) for the rank-R clean M, so the discarded part holds s_{q>2R}(E)
    s_noise = np.linalg.svd(noise.reshape(n, *dims), compute_uv=False)  # (n, 8)
    lower = np.sqrt((s_noise[:, 2 * R :] ** 2).sum(axis=1)) / norms
    assert np.all(data.residual <= upper * (1 + 1e-9))
    assert np.all(data.residual >= lower * (1 - 1e-9))
    np.testing.assert_allclose(relative_error(data, X), data.residual, rtol=1e-8)
    assert KroneckerData.from_dense(X, shape=dims).rank == R  # the noise holds far less than 1% of the energy


def test_energy_target_sets_the_rank():
    weights = [4.0, 2.0, 1.0, 0.25]  # shares of the energy about 0.75, 0.19, 0.05, 0.003 (random factors)
    X = kron_samples(200, (8, 8), 4, seed=8, weights=weights)
    ranks = [KroneckerData.from_dense(X, shape=(8, 8), energy=e).rank for e in (0.5, 0.9, 0.99, 1.0)]
    assert ranks == sorted(ranks) and ranks[0] == 1 and ranks[-1] == 4
    data = KroneckerData.from_dense(X, shape=(8, 8), energy=0.9)
    assert data.energy >= 0.9


def test_zero_samples_have_zero_residual():
    X = kron_samples(5, (3, 4), 1, seed=9)
    X[2] = 0.0
    data = KroneckerData.from_dense(X, shape=(3, 4))
    assert data.residual[2] == 0.0 and np.all(np.isfinite(data.residual))
    np.testing.assert_allclose(data.to_dense(), X, atol=1e-12)
    assert KroneckerData.from_dense(np.zeros((3, 4)), shape=(2, 2)).rank == 1


# ---- shape="auto" ----------------------------------------------------------------------
def test_auto_shape_scores_every_pair_and_keeps_the_cheapest():
    X = kron_samples(20, (8, 8), 2, seed=10)
    dims, candidates = _structure.choose_shape(X, None, 0.99)
    assert dims == (8, 8)
    assert [c.shape for c in candidates] == [(2, 32), (4, 16), (8, 8)]
    assert min(candidates, key=lambda c: c.stored).stored == 2 * (8 + 8)


def test_a_prime_dimension_accepts_the_trivial_shape():
    X = np.random.default_rng(11).standard_normal((6, 7))
    data = KroneckerData.from_dense(X)
    assert data.dims == (1, 7) and data.rank == 1
    np.testing.assert_allclose(data.to_dense(), X, rtol=1e-12, atol=1e-12)
    assert _structure.factor_pairs(1) == [(1, 1)] and _structure.factor_pairs(12) == [(2, 6), (3, 4)]


def test_auto_shape_with_an_int_rank_skips_pairs_too_thin_for_it():
    X = kron_samples(20, (4, 9), 3, seed=12)
    data = KroneckerData.from_dense(X, rank=3)  # (2, 18) cannot hold rank 3
    assert data.dims == (4, 9) and data.rank == 3


def test_chunked_parallel_svd_matches_one_call(monkeypatch):
    X = kron_samples(40, (6, 5), 3, seed=13) + 1e-3 * np.random.default_rng(14).standard_normal((40, 30))
    whole = KroneckerData.from_dense(X, shape=(6, 5), rank=2)
    monkeypatch.setattr(_structure, "_CHUNK_BYTES", 8 * 6 * 5 * 3)  # 3 matrices per chunk, 14 chunks
    chunked = KroneckerData.from_dense(X, shape=(6, 5), rank=2)
    np.testing.assert_allclose(chunked.residual, whole.residual, rtol=1e-12)
    np.testing.assert_allclose(chunked.to_dense(), whole.to_dense(), rtol=1e-10, atol=1e-12)


def test_float32_and_list_input_are_accepted():
    X = kron_samples(4, (2, 3), 1, seed=15)
    assert KroneckerData.from_dense(X.astype(np.float32)).dims == (2, 3)
    assert KroneckerData.from_dense(X.tolist()).rank == 1


# ---- errors ----------------------------------------------------------------------------
X64 = np.random.default_rng(16).standard_normal((5, 64))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"shape": (5, 13)}, r"shape \(5, 13\) multiplies to 65, but X has d = 64"),
        ({"shape": (3, 20)}, r"multiplies to 60, but X has d = 64 features per sample.*'8x8'"),
        ({"shape": "8y8"}, r"shape must be 'auto', a tuple of k >= 2 positive ints.*Got '8y8'"),
        ({"shape": (64,)}, r"shape must be 'auto', a tuple of k >= 2.*Got \(64,\)"),
        ({"shape": (0, 64)}, r"shape must be"),
        ({"shape": 64}, r"shape must be"),
        ({"shape": (8, 8), "rank": 9}, r"rank must be 'auto' or an int in \[1, 8\] for shape \(8, 8\).*Got 9"),
        ({"shape": (4, 16), "rank": 5}, r"rank must be .*\[1, 4\].*min\(d1, d2\) = 4\. Got 5"),
        ({"shape": (2, 4, 8), "rank": 3}, r"split 2 x 32 has rank at most min\(d1, d2\) = 2\. Got 3"),
        ({"rank": 9}, r"rank must be 'auto' or an int in \[1, 8\] for X with d = 64.*Got 9"),
        ({"rank": 0}, r"rank must be an int in the range \[1, inf\)\. Got 0"),
        ({"rank": "five"}, r"rank must be 'auto' or an int >= 1\. Got 'five'"),
        ({"rank": True}, r"rank must be 'auto' or an int"),
        ({"energy": 0.0}, r"energy must be a number in \(0, 1\].*Got 0\.0"),
        ({"energy": 1.5}, r"energy must be a number in \(0, 1\].*Got 1\.5"),
        ({"energy": -0.1}, r"energy must be a number in \(0, 1\]"),
        ({"energy": float("nan")}, r"energy must be a number in \(0, 1\].*Got nan"),
        ({"energy": "high"}, r"energy must be a number in \(0, 1\].*Got 'high'"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValidationError, match=match):
        KroneckerData.from_dense(X64, **kwargs)


@pytest.mark.parametrize(
    ("X", "match"),
    [
        (np.ones(8), r"X must be an \(n, d\) array of samples or an \(n, d1, d2\) stack.*Got shape \(8,\)"),
        (np.ones((2, 2, 2, 2)), r"X must be an \(n, d\) array.*Got shape \(2, 2, 2, 2\)"),
        (np.ones((0, 4)), r"X must not be empty\. Got shape \(0, 4\)"),
        (np.ones((3, 0)), r"X must not be empty\. Got shape \(3, 0\)"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), r"X must be finite, but has 1 NaN or infinite.*index \(0, 1\)"),
        (np.array([[1.0, 2.0], [np.inf, 1.0]]), r"X must be finite.*index \(1, 0\), value .*inf"),
        ("data.npy", r"X must be a numeric array"),
        ([[1.0, 2.0], [3.0]], r"X must be a numeric array"),
    ],
)
def test_bad_samples_are_named(X, match):
    with pytest.raises(ValidationError, match=match):
        KroneckerData.from_dense(X)
