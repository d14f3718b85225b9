"""KroneckerData: the vec convention, exact Gram blocks from factors, norms, subsets."""

import numpy as np
import pytest

import naive
from kronsgd import KroneckerData


def _factors(n, dims, rank, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n, rank, d)) for d in dims]


def test_vec_convention_is_numpy_kron_and_row_major_outer():
    rng = np.random.default_rng(1)
    u, v = rng.standard_normal((4, 3)), rng.standard_normal((4, 5))
    dense = KroneckerData([u, v]).to_dense()
    for i in range(4):
        np.testing.assert_array_equal(dense[i], np.kron(u[i], v[i]))
        np.testing.assert_array_equal(dense[i], np.outer(u[i], v[i]).reshape(-1))


@pytest.mark.parametrize("dims,rank", [((3, 4), 1), ((3, 4), 3), ((2, 3, 4), 1), ((2, 3, 4), 2), ((1, 7), 2)])
def test_to_dense_is_the_sum_of_kronecker_products(dims, rank):
    factors = _factors(6, dims, rank)
    data = KroneckerData(factors)
    assert (data.n, data.dims, data.rank, data.d) == (6, dims, rank, int(np.prod(dims)))
    expected = np.stack([sum(naive.kron_all([f[i, q] for f in factors]) for q in range(rank)) for i in range(6)])
    np.testing.assert_allclose(data.to_dense(), expected, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("dims,rank", [((3, 4), 1), ((4, 2), 3), ((2, 3, 4), 2)])
def test_gram_blocks_equal_dense_inner_products(dims, rank):
    data = KroneckerData(_factors(9, dims, rank, seed=2))
    other = KroneckerData(_factors(5, dims, rank + 1, seed=3))
    X, Y = data.to_dense(), other.to_dense()
    np.testing.assert_allclose(data.gram(), X @ X.T, rtol=1e-12, atol=1e-12)
    rows = [4, 0, 4, 8]
    np.testing.assert_allclose(data.gram(rows=rows), (X @ X.T)[rows], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(data.gram(rows=rows, other=other), X[rows] @ Y.T, rtol=1e-12, atol=1e-12)


def test_rank1_factors_given_as_2d_equal_rank_dimension_1():
    u, v = _factors(5, (3, 4), 1)
    np.testing.assert_array_equal(KroneckerData([u[:, 0], v[:, 0]]).to_dense(), KroneckerData([u, v]).to_dense())


def test_norms_and_normalized_keep_the_scale():
    data = KroneckerData(_factors(7, (3, 2, 4), 2, seed=4))
    X = data.to_dense()
    np.testing.assert_allclose(data.norms(), np.linalg.norm(X, axis=1), rtol=1e-13)
    unit = data.normalized()
    np.testing.assert_allclose(np.linalg.norm(unit.to_dense(), axis=1), 1.0, rtol=1e-13)
    np.testing.assert_allclose(unit.scale[:, None] * unit.to_dense(), X, rtol=1e-12, atol=1e-13)
    assert data.scale is None


def test_indexing_subsets_points():
    data = KroneckerData(_factors(8, (2, 3), 2, seed=5))
    X = data.to_dense()
    np.testing.assert_array_equal(data[[5, 1]].to_dense(), X[[5, 1]])
    np.testing.assert_array_equal(data[2:6].to_dense(), X[2:6])
    np.testing.assert_array_equal(data[-1].to_dense(), X[[-1]])
    mask = np.arange(8) % 3 == 0
    np.testing.assert_array_equal(data[mask].to_dense(), X[mask])
    assert len(data[mask]) == 3


def test_factors_are_copied_and_float64():
    u = np.ones((3, 2), dtype=np.float32)
    data = KroneckerData([u, np.arange(6).reshape(3, 2)])
    u[0, 0] = 99
    assert data.factors[0].dtype == np.float64 and data.factors[0][0, 0, 0] == 1.0


def test_factors_in_float32_keep_every_product_and_fit_the_type():
    """Rebalancing by powers of two changes no product: the float32 Gram and points are the same bits."""
    rng = np.random.default_rng(4)
    u, v = rng.standard_normal((6, 2, 5)), rng.standard_normal((6, 2, 7))
    u[0] *= 2.0**140  # a point whose first factor alone overflows float32, its second underflows
    v[0] *= 2.0**-140
    data = KroneckerData([u, v])
    f32 = data.factors_in(np.float32)
    assert all(np.isfinite(f).all() and f.dtype == np.float32 for f in f32)
    balanced = KroneckerData([f.astype(np.float64) for f in f32])
    cast = KroneckerData([f[1:].astype(np.float32).astype(np.float64) for f in (u, v)])  # the plain casts
    np.testing.assert_array_equal(balanced.to_dense()[1:], cast.to_dense())  # the same points, bit for bit
    assert np.abs(u[0]).max() > np.finfo(np.float32).max  # the plain cast of point 0 would overflow ...
    exact = data.to_dense()[0]
    np.testing.assert_allclose(balanced.to_dense()[0], exact, rtol=0, atol=1e-6 * np.abs(exact).max())  # ... it fits
    plain = KroneckerData([u[1:], v[1:]])
    np.testing.assert_array_equal(plain.gram(dtype=np.float32), data[1:].gram(dtype=np.float32))
    assert np.isfinite(data.gram(dtype=np.float32)).all()
