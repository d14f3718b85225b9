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


def test_transform_sees_every_block_once_and_knows_the_diagonal():
    data = points(10, (3, 4), 1, seed=2)
    seen = []

    def mark(block, on_diagonal):
        seen.append((block.shape, on_diagonal))
        if on_diagonal:
            assert np.allclose(np.diag(block), data.norms() ** 2 if block.shape[0] == 10 else np.diag(block))
        block[:] = 1.0

    out = kernel_matrix(data, transform=mark, block_bytes=8 * 16)  # 4 x 4 point blocks (R = 1)
    assert np.all(out == 1.0)
    assert sum(d for _, d in seen) == 3 and len(seen) == 6  # 3 diagonal + 3 upper blocks of a 3 x 3 grid


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
