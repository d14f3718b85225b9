"""The NTK from factors at BLAS speed: blocked Gram routes, the orthant table and its kernel."""

import numpy as np
import pytest

from kronsgd import KroneckerData
from kronsgd.theory import fire_fraction, ntk_cross, ntk_gram, orthant_probability, orthant_table
from kronsgd.theory.gram import inner_product_cost, kernel_matrix


def points(n, dims, rank, seed):
    rng = np.random.default_rng(seed)
    return KroneckerData([rng.standard_normal((n, rank, d)) for d in dims])


def naive_table_ntk(rho, table):
    """NumPy twin of kernels.orthant.ntk_from_correlations: find the panel, evaluate its polynomial."""
    s = np.arcsin(np.clip(rho, -1.0, 1.0)) + np.pi / 2  # (N,)
    p = np.clip(np.searchsorted(table.edges, s, side="right") - 1, 0, table.coefs.shape[0] - 1)  # (N,)
    lo, hi = table.edges[p], table.edges[p + 1]
    t = (2 * s - lo - hi) / (hi - lo)
    powers = t[:, None] ** np.arange(table.coefs.shape[1])  # (N, degree + 1)
    return rho * np.sum(table.coefs[p] * powers, axis=1)


RHO = np.concatenate([np.linspace(-1, 1, 4001), -1 + np.logspace(-16, -1, 200), 1 - np.logspace(-16, -1, 200)])


@pytest.mark.parametrize("shift", [0.0, 1e-3, 0.05, 0.5, 1.0, np.sqrt(0.4 * np.log(1024)), 3.0, 6.0])
def test_orthant_table_equals_the_quadrature(shift):
    table = orthant_table(shift)
    exact = orthant_probability(RHO, shift)  # (N,)
    fast = table.ntk_inplace(RHO.reshape(1, -1).copy())[0]  # (N,) ρ · Pr
    np.testing.assert_allclose(fast, RHO * exact, rtol=0, atol=2e-12 * fire_fraction(shift))
    np.testing.assert_allclose(fast, naive_table_ntk(RHO, table), rtol=0, atol=1e-15 * fire_fraction(shift))
    assert np.all(np.diff(table.edges) > 0) and table.edges[0] == 0 and table.edges[-1] == np.pi


@pytest.mark.parametrize(
    "dims,rank,route",
    [((3, 4), 1, "factors"), ((3, 4), 3, "dense"), ((2, 3, 4), 2, "dense"), ((16, 16), 2, "factors")],
)
def test_kernel_matrix_equals_the_dense_gram_in_any_blocks(dims, rank, route):
    data, other = points(13, dims, rank, seed=0), points(6, dims, rank + 1, seed=1)
    assert inner_product_cost(data, data)[0] == route
    X, Y = data.to_dense(), other.to_dense()  # (n, d), (n2, d)
    # 1-point blocks (dense rows rebuilt per block), 4-point blocks, whole blocks
    for block_bytes in (8 * rank * rank * data.d, 8 * 4 * rank**2 * 4 * max(data.d, 16), 2**26):
        sym = kernel_matrix(data, block_bytes=block_bytes)
        np.testing.assert_allclose(sym, X @ X.T, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(sym, sym.T)
        cross = kernel_matrix(data, other, block_bytes=block_bytes)
        np.testing.assert_allclose(cross, X @ Y.T, rtol=1e-12, atol=1e-12)


def test_transform_sees_every_block_once_with_its_place():
    data = points(10, (3, 4), 1, seed=2)
    expected = data.to_dense() @ data.to_dense().T  # (n, n)
    seen = []

    def mark(block, i0, j0):
        seen.append((i0, j0))
        np.testing.assert_allclose(block, expected[i0 : i0 + block.shape[0], j0 : j0 + block.shape[1]], rtol=1e-12)
        block[:] = i0 + 100 * j0

    out = kernel_matrix(data, transform=mark, block_bytes=8 * 16)  # 4 x 4 point blocks (R = 1)
    assert seen == [(0, 0), (0, 4), (0, 8), (4, 4), (4, 8), (8, 8)]  # the upper triangle of a 3 x 3 grid
    assert out[5, 1] == 400 and out[1, 5] == 400 and out[9, 9] == 808  # mirrored below the diagonal


@pytest.mark.parametrize("shift", [0.0, 0.9, 1.7])
def test_ntk_gram_and_cross_equal_the_exact_formula(shift):
    data = points(40, (5, 6), 2, seed=3)
    X = data.to_dense()
    U = X / np.linalg.norm(X, axis=1, keepdims=True)  # (n, d)
    rho = np.clip(U @ U.T, -1.0, 1.0)
    np.fill_diagonal(rho, 1.0)
    expected = rho * orthant_probability(rho, shift)  # (n, n)
    H = ntk_gram(data, shift)
    np.testing.assert_allclose(H, expected, rtol=0, atol=1e-12 * fire_fraction(shift))
    cross = ntk_cross(data[:7], data, shift)  # (7, n)
    off = ~np.eye(40, dtype=bool)[:7]  # a point against itself: ρ = 1 - 1e-16 moves arcsin by 1e-8
    np.testing.assert_allclose(cross[off], expected[:7][off], rtol=0, atol=1e-12 * fire_fraction(shift))
    np.testing.assert_allclose(cross[~off], expected[:7][~off], rtol=1e-7)
    assert np.linalg.eigvalsh(H)[0] > -1e-12


def test_ntk_cross_checks_dims():
    from kronsgd import ValidationError

    with pytest.raises(ValidationError, match=r"other must have the factor dims \(3, 4\)"):
        ntk_cross(points(2, (3, 4), 1, 0), points(2, (4, 3), 1, 0), 1.0)


def naive_upper_bivariate(h, k, r):
    """Pr[Z1 > h, Z2 > k] = Φ̄(h)Φ̄(k) + (1/2π) ∫_0^{arcsin r} exp(-(h² + k² - 2hk sin t) / (2 cos² t)) dt."""
    import warnings

    from scipy import integrate, stats

    f = lambda t: np.exp(-(h * h + k * k - 2 * h * k * np.sin(t)) / (2 * np.cos(t) ** 2))  # noqa: E731
    with warnings.catch_warnings():  # quad warns that it cannot reach 1e-16; it reaches ~1e-17
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        tail = integrate.quad(f, 0.0, np.arcsin(r), epsabs=1e-16, epsrel=1e-14, limit=500)[0]
    return stats.norm.sf(h) * stats.norm.sf(k) + tail / (2 * np.pi)


def test_bivariate_kernel_equals_its_quadrature_twin():
    from kronsgd.kernels.bivariate import upper_bivariate

    rng = np.random.default_rng(0)
    for _ in range(150):
        h, k = rng.uniform(-3, 4, 2)
        near_one = rng.choice([-1.0, 1.0]) * (1 - 10 ** rng.uniform(-12, -1))
        r = rng.choice([rng.uniform(-1, 1), near_one])
        assert abs(upper_bivariate(h, k, r) - naive_upper_bivariate(h, k, r)) < 1e-14, (h, k, r)
    for b in (0.0, 0.4, 1.7):  # equal thresholds: the orthant probability
        rho = np.linspace(-1, 1, 41)
        fast = np.array([upper_bivariate(b, b, r) for r in rho])
        np.testing.assert_allclose(fast, orthant_probability(rho, b), rtol=0, atol=1e-15)


@pytest.mark.parametrize("shift", [0.0, 1.2])
def test_ntk_of_points_of_any_norm(shift):
    data = points(12, (3, 4), 2, seed=5)
    zero = KroneckerData([np.zeros((1, 2, 3)), np.zeros((1, 2, 4))])
    both = KroneckerData([np.concatenate([f, z]) for f, z in zip(data.factors, zero.factors, strict=True)])
    X = both.to_dense()  # (13, d), the last point 0
    G, s = X @ X.T, np.linalg.norm(X, axis=1)
    expected = np.zeros((13, 13))
    for i in range(12):
        for j in range(12):
            r = 1.0 if i == j else np.clip(G[i, j] / (s[i] * s[j]), -1, 1)
            expected[i, j] = G[i, j] * naive_upper_bivariate(shift / s[i], shift / s[j], r)
    H = ntk_gram(both, shift, normalize=False, block_bytes=8 * 4 * 5 * 5)  # 5-point blocks
    np.testing.assert_allclose(H, expected, rtol=1e-12, atol=1e-14 * np.abs(expected).max())
    np.testing.assert_array_equal(H, H.T)
    cross = ntk_cross(both[[0, 12, 3]], both, shift, normalize=False)
    np.testing.assert_allclose(cross[[0, 2]][:, :12], expected[[0, 3]][:, :12], rtol=1e-7)  # ρ_ii = 1 ± 1e-16
    assert np.all(cross[1] == 0) and np.all(cross[:, 12] == 0)
    unit = ntk_gram(data, shift)  # scaling every point to norm 1 first gives the normalised kernel
    scaled = KroneckerData([data.normalized().factors[0], data.normalized().factors[1]])
    np.testing.assert_allclose(ntk_gram(scaled, shift, normalize=False), unit, rtol=1e-9, atol=1e-15)
