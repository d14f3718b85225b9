"""init="kronecker": the same exact SGD from a Kronecker-structured W0, its law, and its bad input."""

import json
import math

import numpy as np
import pytest

import kronsgd
from kronsgd import DenseSGD, KroneckerData, KronSGD, TwoLayerNet, ValidationError
from kronsgd.base.random import w0_factor_rows
from kronsgd.cli.main import main
from kronsgd.model.net import fire_fraction
from kronsgd.theory import kronecker_fire_fraction, min_eigenvalue, ntk_gram


def _task(dims, rank, n=40, outputs=1, seed=0):
    rng = np.random.default_rng(seed)
    data = KroneckerData([rng.standard_normal((n, rank, d)) for d in dims])
    test = KroneckerData([rng.standard_normal((9, rank, d)) for d in dims])
    return data, test, rng.standard_normal((n, outputs))


def _rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def test_dense_weights_are_the_sum_of_kronecker_products_of_the_drawn_factors():
    dims, K, m = (3, 4, 5), 3, 37
    net = TwoLayerNet(dims, width=m, seed=6, init="kronecker", init_rank=K)
    factors = [f.astype(np.float64) for f in w0_factor_rows(6, 0, 48, dims, K)]  # (48, K, d_l) each
    expected = np.zeros((m, math.prod(dims)))
    for r in range(m):
        for q in range(K):
            expected[r] += np.kron(np.kron(factors[0][r, q], factors[1][r, q]), factors[2][r, q]) / math.sqrt(K)
    np.testing.assert_allclose(net.dense_weights(), expected, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("dims,rank,K,gram", [((5, 6), 1, 1, "precomputed"), ((5, 6), 3, 4, "on_the_fly"),
                                              ((3, 4, 5), 2, 16, "precomputed")])  # fmt: skip
def test_kron_sgd_equals_the_dense_oracle_from_its_materialised_w0(dims, rank, K, gram):
    data, test, y = _task(dims, rank, outputs=2)
    kw = dict(lr=0.3, batch_size=4, seed=5, dtype=np.float64)
    nets = [TwoLayerNet(dims, width=64, outputs=2, seed=9, init="kronecker", init_rank=K) for _ in range(2)]
    kron = KronSGD(nets[0], data, y, gram=gram, **kw)
    dense = DenseSGD(nets[1], data, y, **kw)  # takes the net's materialised W0 (dense_weights)
    np.testing.assert_allclose(kron.P, dense.W @ dense.X.T, rtol=1e-12, atol=1e-12)
    kron.run(150, log_every=50)
    dense.run(150, log_every=50)
    assert kron.history[-1]["loss"] < kron.history[0]["loss"] and kron.counters()["nnz"] > 0
    assert _rel(kron.dense_weights(), dense.dense_weights()) <= 1e-9
    assert _rel(kron.predict(test), dense.predict(test)) <= 1e-9


def test_the_gaussian_and_kronecker_inits_are_different_nets():
    data, test, _ = _task((5, 6), 2)
    gauss = TwoLayerNet((5, 6), width=32, seed=1).preactivations(test)
    kron = TwoLayerNet((5, 6), width=32, seed=1, init="kronecker").preactivations(test)
    assert not np.allclose(gauss, kron)
    assert TwoLayerNet((5, 6), 8, init="kronecker").init_rank == 16


def test_fired_tree_and_scan_agree_for_the_kronecker_init():
    data, _, y = _task((5, 6), 2, n=48)
    runs = []
    for fired in ("scan", "tree"):
        net = TwoLayerNet((5, 6), width=256, seed=2, init="kronecker", init_rank=4)
        trainer = KronSGD(net, data, y, lr=0.3, batch_size=4, dtype=np.float64, fired=fired)
        trainer.run(40)
        runs.append(trainer.P)
    np.testing.assert_array_equal(runs[0], runs[1])


@pytest.mark.parametrize("K", [1, 4, 16, 64])
def test_fire_fraction_at_init_is_binomial_around_the_exact_law(K):
    """Each point's fired count over m independent neurons is Binomial(m, p_K): within 5 sd."""
    rng = np.random.default_rng(K)
    m, b = 20_000, 1.66  # b = the default threshold at m = 1024
    net = TwoLayerNet((8, 8), width=m, shift=b, seed=K, init="kronecker", init_rank=K)
    for rank in (1, 3):
        points = KroneckerData([rng.standard_normal((3, rank, 8)) for _ in range(2)])
        counts = (net.preactivations(points) > b).sum(axis=0)  # (3,) fired neurons per point
        p = kronecker_fire_fraction(points, b, K)  # (3,) exact
        assert np.all(np.abs(counts - m * p) <= 5 * np.sqrt(m * p * (1 - p)))
    # the law tends to the Gaussian one as K grows (and as the points' rank grows)
    assert np.all(np.abs(p - fire_fraction(b)) <= {1: 0.06, 4: 0.02, 16: 0.01, 64: 0.003}[K])


def test_exact_fire_fraction_matches_plain_numpy_sampling():
    rng = np.random.default_rng(3)
    x = [np.ones((1, 3)), np.ones((1, 4))]  # a rank-1 unit point: <w, x> = K^-1/2 Σ a_q c_q
    for K, b in ((1, 1.0), (3, 0.5)):
        z = (rng.standard_normal((400_000, K)) * rng.standard_normal((400_000, K))).sum(axis=1) / math.sqrt(K)
        p = kronecker_fire_fraction(x, b, K)[0]
        assert abs((z > b).mean() - p) <= 5 * math.sqrt(p * (1 - p) / z.size)


def test_kronecker_ntk_is_estimated_and_tends_to_the_gaussian_one():
    data, _, _ = _task((6, 6), 2, n=12)
    H = ntk_gram(data, 0.5, init="kronecker", init_rank=64, samples=20_000)
    G = ntk_gram(data, 0.5)
    assert H.shape == (12, 12) and np.allclose(H, H.T)
    assert np.abs(H - G).max() < 0.02  # Monte Carlo error ~ 0.5 / sqrt(20000) plus the K = 64 law
    assert np.allclose(np.diag(H), kronecker_fire_fraction(data, 0.5, 64))
    lam = min_eigenvalue(data, shift=0.5, init="kronecker", init_rank=64)
    assert lam.method == "exact" and abs(float(lam) - float(min_eigenvalue(data, shift=0.5))) < 0.02


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"init": "uniform"}, "init"),
        ({"init": None}, "init"),
        ({"init": "kronecker", "init_rank": 0}, "init_rank"),
        ({"init": "kronecker", "init_rank": 2.5}, "init_rank"),
        ({"init": "kronecker", "init_rank": "4"}, "init_rank"),
        ({"init": "kronecker", "init_rank": True}, "init_rank"),
        ({"init_rank": 4}, "init_rank"),
    ],
)
def test_bad_init_arguments_are_refused_by_name(kwargs, name):
    with pytest.raises(ValidationError, match=rf"^{name} must"):
        TwoLayerNet((3, 4), 8, **kwargs)


def test_estimator_takes_the_init_and_refuses_bad_ones():
    pytest.importorskip("sklearn")
    from kronsgd import KronMLPRegressor

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((60, 16)), rng.standard_normal(60)
    reg = KronMLPRegressor(width=64, init="kronecker", init_rank=4, random_state=0, max_iter=2).fit(X, y)
    assert reg.model_.init == "kronecker" and reg.model_.init_rank == 4 and reg.predict(X).shape == (60,)
    for params, name in (({"init": "orthogonal"}, "init"), ({"init_rank": 3}, "init_rank"),
                         ({"init": "kronecker", "init_rank": 0}, "init_rank")):  # fmt: skip
        with pytest.raises(ValidationError, match=f"The '{name}' parameter of KronMLPRegressor"):
            KronMLPRegressor(**params).fit(X, y)


def test_cli_trains_with_the_kronecker_init(tmp_path, capsys):
    rng = np.random.default_rng(1)
    path, model = tmp_path / "data.npz", tmp_path / "model.npz"
    np.savez(path, factor_0=rng.standard_normal((40, 4)), factor_1=rng.standard_normal((40, 6)), y=rng.random(40))
    args = ["train", str(path), "--out", str(model), "--width", "64", "--steps", "20", "--batch", "8"]
    assert main([*args, "--init", "kronecker", "--init-rank", "4", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert summary["init"] == "kronecker" and summary["init_rank"] == 4
    net = kronsgd.load(model)
    assert (net.init, net.init_rank) == ("kronecker", 4)
    assert main([*args, "--init-rank", "4"]) == 2
    assert "--init-rank 4 needs --init kronecker" in capsys.readouterr().err
    assert main([*args, "--init", "sparse"]) == 2


def test_torch_export_of_a_kronecker_net_matches_predict():
    torch = pytest.importorskip("torch")
    data, test, y = _task((4, 5), 2)
    net = TwoLayerNet((4, 5), width=48, seed=3, init="kronecker", init_rank=3)
    KronSGD(net, data, y, lr=0.3, batch_size=8, dtype=np.float64).run(30)
    out = net.to_torch()(torch.from_numpy(test.to_dense())).detach().numpy()
    np.testing.assert_allclose(out, net.predict(test), rtol=1e-10, atol=1e-10)


def test_each_neuron_has_its_own_factors_whatever_range_is_drawn():
    full = w0_factor_rows(4, 0, 48, (5, 7), 3)  # (48, 3, d_l) each
    for start, stop in ((0, 20), (16, 48), (32, 37)):
        part = w0_factor_rows(4, start, stop, (5, 7), 3)
        for f, g in zip(full, part, strict=True):
            np.testing.assert_array_equal(f[start:stop], g)
    assert not np.array_equal(full[0], w0_factor_rows(5, 0, 48, (5, 7), 3)[0])
