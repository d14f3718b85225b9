"""Malformed input thrown at the public API: a kronsgd error or a correct result, nothing else."""

import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kronsgd import DenseSGD, KroneckerData, KronSGD, KronsgdError, TwoLayerNet

EXAMPLES = int(os.environ.get("KRONSGD_FUZZ_EXAMPLES", "100"))  # raise it for a longer hunt
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

odd_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=3),
    st.complex_numbers(max_magnitude=3),
    st.lists(st.integers(-3, 3), max_size=3),
)
element_values = st.floats(allow_nan=True, allow_infinity=True, width=64)
dtypes = st.sampled_from([np.float64, np.float32, np.float16, np.int64, np.int8, np.bool_, np.complex128, object])


@st.composite
def arrays(draw, max_dims=4):
    dtype = draw(dtypes)
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=5))
    if dtype is object:
        return np.empty(shape, dtype=object)
    if dtype is np.complex128:
        return np.full(shape, 1 + 1j)
    values = draw(hnp.arrays(np.float64, shape, elements=element_values))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return values.astype(dtype)


@st.composite
def factor_lists(draw):
    if (
        draw(st.integers(0, 4)) > 0
    ):  # mostly plausible shapes, finite values of any scale, now and then one hostile entry
        k, n, rank = draw(st.integers(2, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 2))
        dims = draw(st.lists(st.integers(1, 4), min_size=k, max_size=k))
        scale = draw(st.sampled_from([1.0, 1e-300, 1e300, 1e154, 1e-160]))
        factors = [draw(hnp.arrays(np.float64, (n, rank, d), elements=st.floats(-10, 10))) * scale for d in dims]
        if draw(st.integers(0, 4)) == 0:
            hostile = draw(st.sampled_from([np.nan, np.inf, -np.inf, 0.0]))
            factors[draw(st.integers(0, k - 1))].flat[0] = hostile
        return factors
    return [draw(arrays()) for _ in range(draw(st.integers(0, 4)))]


def _calm(call):
    """Run ``call``; a KronsgdError is fine, any other exception fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a numpy RuntimeWarning is a silent wrong answer in the making
        try:
            return call()
        except KronsgdError:
            return None


@SETTINGS
@given(factors=st.one_of(factor_lists(), odd_scalars, arrays()))
def test_kronecker_data_from_anything(factors):
    data = _calm(lambda: KroneckerData(factors))
    if data is not None:
        assert data.n >= 1 and len(data.dims) >= 2 and all(np.isfinite(f).all() for f in data.factors)
        gram = _calm(data.gram)
        if gram is not None:
            assert gram.shape == (data.n, data.n) and np.isfinite(gram).all()
        unit = _calm(data.normalized)
        if unit is not None:
            np.testing.assert_allclose(unit.norms(), 1.0, rtol=1e-9)


@SETTINGS
@given(dims=st.one_of(odd_scalars, st.lists(odd_scalars, max_size=3)), width=odd_scalars, outputs=odd_scalars,
       shift=odd_scalars, seed=odd_scalars)  # fmt: skip
def test_two_layer_net_from_anything(dims, width, outputs, shift, seed):
    net = _calm(lambda: TwoLayerNet(dims, width, outputs=outputs, shift=shift, seed=seed))
    if net is not None:
        assert net.width >= 1 and net.outputs >= 1 and net.shift >= 0 and net.a.shape == (net.width, net.outputs)


@pytest.mark.parametrize("cls", [KronSGD, DenseSGD])
@SETTINGS
@given(factors=factor_lists(), draw=st.data())
def test_trainers_from_anything(cls, factors, draw):
    data = _calm(lambda: KroneckerData(factors))
    if data is None:
        return
    n = data.n
    shapes = st.sampled_from([(n,), (n, 1), (n, 2), (n + 1,)])
    finite_y = hnp.arrays(np.float64, shapes, elements=st.floats(-1e6, 1e6))
    hostile_y = hnp.arrays(np.float64, shapes, elements=element_values)
    y = draw.draw(st.one_of(finite_y, hostile_y, arrays(max_dims=3), odd_scalars))
    lr = draw.draw(st.one_of(st.floats(1e-3, 10.0), st.sampled_from([1e300, 1e-300]), odd_scalars))
    batch = draw.draw(st.one_of(st.integers(1, n + 1), odd_scalars))
    steps = draw.draw(st.one_of(st.integers(0, 6), odd_scalars))
    dtype = draw.draw(st.sampled_from([np.float32, np.float64, "float16", None, 3]))
    shift = draw.draw(st.sampled_from([None, 0.0, 3.0]))
    net = TwoLayerNet(data.dims, width=8, seed=0, shift=shift)
    trainer = _calm(lambda: cls(net, data, y, lr=lr, batch_size=batch, dtype=dtype))
    if trainer is None:
        return
    history = _calm(lambda: trainer.run(steps, log_every=0))
    if history is not None:
        assert all(np.isfinite(h["loss"]) for h in history)
    out = _calm(lambda: trainer.predict(data))  # also after a divergence: the last finite state
    assert out is not None and out.shape[0] == n and np.isfinite(out).all()
