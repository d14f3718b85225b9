"""TwoLayerNet: reproducible implicit W0, exact projections, the fire fraction at initialisation."""

import math

import numpy as np
import pytest

from kronsgd import KroneckerData, TwoLayerNet
from kronsgd.data.contract import dense_w0, project_w0
from kronsgd.model.net import fire_fraction


def _data(n, dims, rank, seed=0):
    rng = np.random.default_rng(seed)
    return KroneckerData([rng.standard_normal((n, rank, d)) for d in dims])


def test_w0_is_gaussian_reproducible_and_block_independent():
    w = dense_w0(seed=7, width=40, d=30)
    np.testing.assert_array_equal(w, dense_w0(seed=7, width=40, d=30))
    np.testing.assert_array_equal(w[:20], dense_w0(seed=7, width=20, d=30))  # a prefix of neurons is the same
    assert not np.allclose(w, dense_w0(seed=8, width=40, d=30))
    big = dense_w0(seed=1, width=256, d=200)
    assert abs(big.mean()) < 5 / math.sqrt(big.size) and abs(big.std() - 1) < 0.01


@pytest.mark.parametrize("dims,rank", [((4, 6), 1), ((5, 3), 3), ((2, 3, 4), 1), ((3, 2, 2), 2)])
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 1e-4)])
def test_projection_equals_dense_product(dims, rank, dtype, rtol):
    data = _data(11, dims, rank)
    pre = project_w0(seed=3, width=37, data=data, dtype=dtype)
    assert pre.dtype == dtype and pre.shape == (37, 11)
    expected = dense_w0(3, 37, data.d) @ data.to_dense().T
    np.testing.assert_allclose(pre, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


def test_defaults_and_read_only_attributes():
    net = TwoLayerNet((8, 8), width=1024, outputs=3, seed=2)
    assert net.shift == pytest.approx(math.sqrt(0.4 * math.log(1024)))
    assert net.a.shape == (1024, 3) and set(np.unique(net.a)) == {-1.0, 1.0}
    assert abs(net.a.mean()) < 0.1
    with pytest.raises(AttributeError):
        net.shift = 0.0
    with pytest.raises(ValueError):
        net.a[0, 0] = 5.0


def test_predict_matches_dense_forward_pass():
    data = _data(9, (3, 5), 2, seed=1)
    net = TwoLayerNet((3, 5), width=50, outputs=2, shift=0.3, seed=4)
    x = data.normalized().to_dense()
    z = x @ net.dense_weights().T
    expected = np.maximum(z - 0.3, 0) @ net.a / math.sqrt(50)
    np.testing.assert_allclose(net.predict(data), expected, rtol=1e-12, atol=1e-12)
    assert net.predict(data[:1]).shape == (1, 2)
    assert TwoLayerNet((3, 5), width=50).predict(data).shape == (9,)


def test_predict_accepts_factor_lists():
    data = _data(4, (3, 5), 1, seed=2)
    net = TwoLayerNet((3, 5), width=20)
    np.testing.assert_array_equal(net.predict(list(data.factors)), net.predict(data))


@pytest.mark.parametrize("shift", [0.0, 0.5, math.sqrt(0.4 * math.log(1024)), math.sqrt(0.4 * math.log(4096)), 2.5])
def test_fire_fraction_at_init_matches_gaussian_tail(shift):
    # Orthonormal inputs e_a ⊗ e_b make the columns of P0 independent: each entry is
    # <w_r, x_j> ~ N(0, 1) independently, so the count of fired pairs is Binomial(m·n, Φ̄(b)).
    d1, d2 = 4, 5
    eye1, eye2 = np.eye(d1), np.eye(d2)
    data = KroneckerData([np.repeat(eye1, d2, axis=0), np.tile(eye2, (d1, 1))])
    m = 4000
    pre = TwoLayerNet((d1, d2), width=m, shift=shift, seed=11).preactivations(data)
    p = fire_fraction(shift)
    trials = pre.size
    observed = np.count_nonzero(pre > shift) / trials
    assert abs(observed - p) <= 5 * math.sqrt(p * (1 - p) / trials)  # 5 sigma: a false alarm ~ 1 in 10^6


def test_fire_fraction_of_the_default_shift():
    assert fire_fraction(math.sqrt(0.4 * math.log(1024))) == pytest.approx(0.048, abs=0.001)
    assert fire_fraction(math.sqrt(0.4 * math.log(4096))) == pytest.approx(0.034, abs=0.001)
