"""Set-up by route: dense blocks and factor contractions give the same numbers, inside the budget."""

import itertools

import numpy as np
import pytest

import kronsgd.data.contract as contract
from kronsgd import KroneckerData, MemoryBudgetError, TwoLayerNet
from kronsgd.data import products as P
from kronsgd.data.contract import dense_w0, project_w0

CASES = list(itertools.product([(5, 6), (3, 4, 5), (64, 2)], [1, 3]))


def _data(dims, rank, n, seed=0):
    rng = np.random.default_rng(seed)
    return KroneckerData([rng.standard_normal((n, rank, d)) for d in dims])


@pytest.mark.parametrize("dims,rank", CASES)
def test_materialise_is_to_dense(dims, rank):
    data = _data(dims, rank, 7)
    np.testing.assert_allclose(P.materialise(data.factors, np.float64), data.to_dense(), rtol=1e-13, atol=1e-13)
    assert P.materialise(data.factors, np.float32).dtype == np.float32


@pytest.mark.parametrize("dims,rank", CASES)
@pytest.mark.parametrize("route", ["factors", "dense"])
def test_gram_routes_agree_with_dense_products(dims, rank, route):
    a, b = _data(dims, rank, 20), _data(dims, rank, 7, seed=1)
    X, Y = a.to_dense(), b.to_dense()
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 1e-4)):
        for rows, budget in ((None, None), ([3, 1, 3], 40_000)):
            g = a.gram(rows=rows, other=b, dtype=dtype, route=route, max_bytes=budget)
            ref = (X if rows is None else X[rows]) @ Y.T
            assert g.dtype == dtype
            np.testing.assert_allclose(g, ref, rtol=tol, atol=tol * np.abs(ref).max())
        np.testing.assert_allclose(a.gram(dtype=dtype, route=route), X @ X.T, rtol=tol, atol=tol * 50)


@pytest.mark.parametrize("dims,rank", CASES)
@pytest.mark.parametrize("init,K", [("gaussian", None), ("kronecker", 1), ("kronecker", 5)])
def test_p0_of_every_route_and_budget_is_w0_times_x(monkeypatch, dims, rank, init, K):
    data = _data(dims, rank, 21)
    ref = dense_w0(3, 37, data.d, dims=dims, init=init, terms=K) @ data.to_dense().T  # (m, n)
    routes = ["dense", "factors"] if init == "gaussian" else [None]
    for route, budget, dtype in itertools.product(routes, (None, 400_000), (np.float32, np.float64)):
        if route is not None:
            monkeypatch.setattr(contract, "_gaussian_route", lambda *a, r=route: r)
        p0 = project_w0(3, 37, data, dtype, init=init, terms=K, max_bytes=budget)
        tol = 1e-5 if dtype == np.float32 else 1e-13
        assert p0.dtype == dtype and np.abs(p0 - ref).max() <= tol * np.abs(ref).max()


def test_a_budget_below_one_block_of_initial_neurons_is_refused():
    data = _data((128, 128), 1, 4)  # 16 Gaussian neurons take 2 MiB in float64, 16 Kronecker ones 0.5 MiB
    with pytest.raises(MemoryBudgetError, match=r"one block of 16 initial neurons.*init=\"kronecker\""):
        TwoLayerNet(data.dims, 32).preactivations(data, max_bytes=2**22)
    assert TwoLayerNet(data.dims, 32, init="kronecker").preactivations(data, max_bytes=2**22).shape == (32, 4)


@pytest.mark.parametrize("n_rows,n_cols,row,col,cap", [(100, 50, 64, 32, 4096), (5, 1000, 800, 8, 20000),
                                                       (1000, 1000, 4096, 4096, 2**20)])  # fmt: skip
def test_blocks_fit_the_cap(n_rows, n_cols, row, col, cap):
    rows, cols = P.plan_rows(n_rows, n_cols, row, col, cap, "test", min_rows=4)
    assert 1 <= rows <= n_rows and 1 <= cols <= n_cols and rows >= min(4, n_rows)
    assert rows * (row + 8 * cols) + cols * col <= cap


def test_cost_model_prefers_factors_only_where_they_are_cheaper():
    # R² Σ d_l against d: rank 1 at 256 x 256 from factors, rank 8 at 32 x 32 dense
    assert P.factor_cost(100, 100, 1, 1, (256, 256)) < P.dense_cost(100, 100, 1, 1, 256 * 256)
    assert P.factor_cost(100, 100, 8, 8, (32, 32)) > P.dense_cost(100, 100, 8, 8, 32 * 32)
