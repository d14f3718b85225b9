"""Malformed input thrown at the public API: a kronsgd error or a correct result, nothing else."""

import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kronsgd import DenseSGD, KroneckerData, KronSGD, KronsgdError, TwoLayerNet
from naive import kron_all

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


# ---- valid input succeeds ----------------------------------------------------------------
@st.composite
def valid_runs(draw):
    """Points, targets, a net and trainer options that are all valid: the run must succeed.

    Valid means: k >= 2 factors of finite numbers, every point of nonzero norm (the factors'
    rank-R sum does not cancel), targets finite with one row per point, and options inside
    their documented ranges. Factor entries are 0 or of magnitude 1e-3 to 10 (points whose
    factors, once scaled, leave float32's range are the two cases below). Unnormalised nets
    get points of norm at most 1, as the learning rates drawn here assume.
    """
    k, n, rank = draw(st.integers(2, 3)), draw(st.integers(1, 12)), draw(st.integers(1, 3))
    dims = draw(st.lists(st.integers(1, 5), min_size=k, max_size=k))
    normalize = draw(st.booleans())
    signed = st.tuples(st.booleans(), st.floats(1e-3, 10)).map(lambda t: -t[1] if t[0] else t[1])
    factors = [draw(hnp.arrays(np.float64, (n, rank, d), elements=st.one_of(st.just(0.0), signed))) for d in dims]
    dense = np.stack([sum(kron_all([f[i, q] for f in factors]) for q in range(rank)) for i in range(n)])  # (n, d)
    sizes = np.array([sum(np.prod([np.linalg.norm(f[i, q]) for f in factors]) for q in range(rank)) for i in range(n)])
    assume(np.all(np.linalg.norm(dense, axis=1) > 1e-3 * sizes))  # no point (nearly) cancels to zero
    if not normalize:
        factors[0] = factors[0] / np.linalg.norm(dense, axis=1).max()
    outputs = draw(st.integers(1, 3))
    y_shape = (n,) if outputs == 1 and draw(st.booleans()) else (n, outputs)
    y = draw(hnp.arrays(np.float64, y_shape, elements=st.floats(-100, 100)))
    net = {"width": draw(st.integers(1, 16)), "outputs": outputs, "normalize": normalize,
           "shift": draw(st.one_of(st.none(), st.floats(0, 3))), "seed": draw(st.integers(0, 2**63 - 1))}  # fmt: skip
    workers = draw(st.integers(1, min(3, n)))
    batch = draw(st.integers(1, n // workers))
    fired = draw(st.sampled_from(["auto", "scan", "tree"]))
    options = {
        "lr": draw(st.floats(1e-3, 1.0)) / batch,  # stable for points of norm <= 1
        "batch_size": batch,
        "seed": draw(st.integers(0, 2**32)),
        "dtype": draw(st.sampled_from([np.float32, np.float64, "float32", "float64"])),
        "gram": draw(st.sampled_from(["auto", "precomputed", "on_the_fly"])),
        "window": draw(st.sampled_from(["auto", 1])) if fired == "tree" else draw(st.one_of(st.just("auto"),
                                                                                             st.integers(1, 4))),
        "workers": workers,
        "max_staleness": draw(st.one_of(st.none(), st.integers(0, 3))),
        "keep_log": draw(st.booleans()),
        "fired": fired,
    }  # fmt: skip
    run = {"steps": draw(st.integers(0, 15)), "log_every": draw(st.one_of(st.none(), st.integers(0, 6)))}
    return factors, y, net, options, run


@SETTINGS
@given(problem=valid_runs())
def test_valid_input_trains_and_predicts(problem):
    factors, y, net_options, options, run = problem
    data = KroneckerData(factors)
    for cls in (KronSGD, DenseSGD):
        net = TwoLayerNet(data.dims, **net_options)
        if cls is KronSGD:
            trainer = KronSGD(net, data, y, **options)
        else:
            trainer = DenseSGD(net, data, y, lr=options["lr"], batch_size=options["batch_size"], seed=options["seed"])
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a numpy RuntimeWarning on valid input is a bug
            history = trainer.run(run["steps"], log_every=run["log_every"])
            out = trainer.predict(data)
        assert history[-1]["step"] == run["steps"] == trainer.counters()["steps"]
        assert all(np.isfinite(h["loss"]) for h in history)
        assert out.shape == y.shape[:1] + (() if net.outputs == 1 else (net.outputs,)) and np.isfinite(out).all()
        if cls is KronSGD:  # the maintained pre-activations are the weights' own: P = P0 + alpha G
            recomputed = net.preactivations(trainer.data, prepared=True)  # (m, n)
            tolerance = 1e-9 if trainer.dtype == np.float64 else 1e-4
            np.testing.assert_allclose(trainer.P, recomputed, rtol=0, atol=tolerance * (1 + np.abs(recomputed).max()))


UNBALANCED = {  # valid points whose factors, cast one by one to float32, would overflow: x = 1 and x = 2.85e-99
    "normalize=False": ([np.array([[[6.9e80]]]), np.array([[[1.4e-81]]])], False),
    "normalize=True, rank 2": ([np.array([[[1.0], [0.0]]]), np.array([[[2.85e-99], [1.0]]])], True),
}


@pytest.mark.parametrize("case", UNBALANCED.values(), ids=UNBALANCED.keys())
def test_float32_runs_on_points_with_unbalanced_factors(case):
    factors, normalize = case
    data = KroneckerData(factors)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer = KronSGD(TwoLayerNet((1, 1), width=4, shift=0.0, normalize=normalize), data, np.ones(1), lr=0.5,
                          batch_size=1, dtype=np.float32)  # fmt: skip
        trainer.run(3)
    assert np.isfinite(trainer.P).all()
