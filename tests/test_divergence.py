"""A diverging run stops with DivergenceError and leaves the model at its last finite state.

Never a silent NaN, never a raw numpy overflow warning or FloatingPointError, whatever the
caller's warning filters.
"""

import contextlib
import warnings

import numpy as np
import pytest

from kronsgd import DenseSGD, DivergenceError, KroneckerData, KronSGD, TwoLayerNet

N, DIMS, WIDTH, STEPS = 20, (3, 4), 32, 500
DIVERGED = r"(?s)(diverged|non-finite).*\blr\b.*1e\+06"  # what happened, and the argument to change


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    data = KroneckerData([rng.standard_normal((N, d)) for d in DIMS])
    return data, 10.0 * rng.standard_normal(N)  # (N,) targets far from the initial outputs


def _trainer(cls, dtype, lr, seed=0):
    data, y = _problem(seed)
    return cls(TwoLayerNet(DIMS, WIDTH, seed=1), data, y, lr=lr, batch_size=4, dtype=dtype)


def _weights(trainer):
    """Copies of the trained state: P and alpha for KronSGD, W for DenseSGD."""
    if isinstance(trainer, KronSGD):
        return {"P": trainer.P.copy(), "alpha": trainer.alpha.copy()}
    return {"W": trainer.W.copy()}


@pytest.mark.parametrize("warning_filter", ["error", "ignore"])  # "error" is what pytest's config sets
@pytest.mark.parametrize("log_every", [None, 1])  # caught in a step, or by the full loss of the log
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cls", [KronSGD, DenseSGD])
def test_huge_learning_rate_raises_and_keeps_the_last_finite_state(cls, dtype, log_every, warning_filter):
    trainer = _trainer(cls, dtype, lr=1e6)
    data, _ = _problem()
    with warnings.catch_warnings():
        warnings.simplefilter(warning_filter, RuntimeWarning)
        with pytest.raises(DivergenceError, match=DIVERGED):
            trainer.run(STEPS, log_every=log_every)
        prediction = trainer.predict(data)  # (N,)

    assert 0 < trainer.step_count < STEPS
    assert trainer.history and all(np.isfinite(entry["loss"]) for entry in trainer.history)
    for name, array in _weights(trainer).items():
        assert np.isfinite(array).all(), f"{name} has non-finite entries after the error"
    assert np.isfinite(prediction).all()


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-9), (np.float32, 1e-4)])
def test_after_divergence_p_still_equals_the_weights_it_tracks(dtype, rtol):
    trainer = _trainer(KronSGD, dtype, lr=1e6)
    with pytest.raises(DivergenceError):
        trainer.run(STEPS)
    recomputed = trainer.net.preactivations(trainer.data, prepared=True)  # (m, n) from W0's seed and alpha
    scale = np.abs(recomputed).max()
    assert scale > 1e6  # it did move far before it stopped
    np.testing.assert_allclose(trainer.P, recomputed, rtol=0, atol=rtol * scale)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cls", [KronSGD, DenseSGD])
def test_state_after_divergence_is_the_state_after_the_reported_step(cls, dtype):
    diverged = _trainer(cls, dtype, lr=1e6)
    with pytest.raises(DivergenceError, match=DIVERGED) as info:
        diverged.run(STEPS)
    replay = _trainer(cls, dtype, lr=1e6)  # same seeds, so the same batches
    with contextlib.suppress(DivergenceError):  # the full-loss check may fire again at the same step
        replay.run(diverged.step_count)
    assert replay.step_count == diverged.step_count, str(info.value)
    for name, array in _weights(diverged).items():
        np.testing.assert_array_equal(array, _weights(replay)[name], err_msg=name)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cls", [KronSGD, DenseSGD])
def test_a_normal_learning_rate_trains_without_error(cls, dtype):
    trainer = _trainer(cls, dtype, lr=0.5)
    history = trainer.run(100)
    losses = [entry["loss"] for entry in history]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    for array in _weights(trainer).values():
        assert np.isfinite(array).all()


def test_dense_float32_prediction_stays_finite_after_a_moderate_divergence():
    trainer = _trainer(DenseSGD, np.float32, lr=10.0, seed=1)  # diverges slowly: W creeps up to ~3e38
    data, _ = _problem(seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(DivergenceError, match=r"(?s)diverged.*\blr\b"):
            trainer.run(3000)
        prediction = trainer.predict(data)
    assert np.isfinite(trainer.W).all()
    assert np.isfinite(prediction).all()
