"""Delayed SGD (``delay=``) against a dense delayed-SGD oracle, and the staleness-aware step."""

from __future__ import annotations

import numpy as np
import pytest

import kronsgd
from kronsgd import KroneckerData, KronSGD, TwoLayerNet, ValidationError
from kronsgd.engine.delay import parse_delay


def _task(n=60, seed=0):
    rng = np.random.default_rng(seed)
    data = KroneckerData([rng.standard_normal((n, 2, 4)), rng.standard_normal((n, 2, 5))])
    return data, np.sin(2 * rng.standard_normal((n, 2)))


def _net(data):
    return TwoLayerNet(data.dims, width=96, outputs=2, shift=0.4, seed=5)


def dense_delayed_sgd(X, W, a, y, shift, lr, batches, taus, inverse=False):
    """W_{t+1} = W_t - lr_t ∇L_{S_t}(W_{t - τ_t}): the gradient at the model τ_t updates old, applied now.

    X (n, d) unit rows, W (m, d), a (m, C), y (n, C); lr_t = lr / (1 + τ_t) when ``inverse``.
    """
    m = W.shape[0]
    history = [W.copy()]
    for batch, tau in zip(batches, taus, strict=True):
        old = history[-1 - tau]  # the model after update t - τ
        x = X[batch]  # (B, d)
        z = x @ old.T  # (B, m)
        fired = z > shift
        f = np.where(fired, z - shift, 0.0) @ a / np.sqrt(m)  # (B, C)
        rate = lr / (1 + tau) if inverse else lr
        coef = (-rate / np.sqrt(m)) * ((f - y[batch]) @ a.T) * fired  # (B, m)
        history.append(history[-1] + coef.T @ x)
    return history[-1]


@pytest.mark.parametrize(  # 40: the log's ring of 45 slots wraps around during the 80 updates
    "delay,inverse",
    [(0, False), (3, False), (40, False), (("uniform", 7), False), (("geometric", 2.0), True),
     (("pareto", 1.2, 20), False), ((lambda t: (t * 7) % 5, 4), True)],
)  # fmt: skip
def test_delay_equals_the_dense_delayed_sgd_oracle(delay, inverse):
    data, y = _task()
    rng = np.random.default_rng(1)
    batches = [rng.choice(60, size=5, replace=False) for _ in range(80)]
    net = _net(data)
    trainer = KronSGD(net, data, y, lr=0.6, batch_size=5, dtype=np.float64, delay=delay, window=3,
                      staleness_lr="inverse" if inverse else "none", gram="on_the_fly")  # fmt: skip
    taus = [trainer.delay(t) for t in range(len(batches))]
    trainer.run(batches=batches)
    assert trainer.log.staleness == taus  # the history's staleness is the delay of each update
    if delay != 0:
        assert max(taus) > 0
    X = trainer.data.to_dense()
    W = dense_delayed_sgd(X, _net(data).dense_weights(), net.a, trainer.y, net.shift, 0.6, batches, taus, inverse)
    got = net.dense_weights()
    np.testing.assert_allclose(got, W, rtol=0, atol=1e-9 * np.abs(W).max())


def test_delay_zero_gives_the_bits_of_no_delay():
    data, y = _task()
    runs = []
    for delay in (None, 0):
        trainer = KronSGD(_net(data), data, y, lr=0.6, batch_size=5, dtype=np.float64, delay=delay, window=4)
        trainer.run(60)
        runs.append(trainer)
    np.testing.assert_array_equal(runs[0].P, runs[1].P)
    np.testing.assert_array_equal(runs[0].alpha, runs[1].alpha)


def test_a_delayed_run_resumes_to_the_same_bits(tmp_path):
    data, y = _task()
    kwargs = dict(lr=0.6, batch_size=5, dtype=np.float64, delay=("uniform", 9), staleness_lr="inverse")
    whole = KronSGD(_net(data), data, y, **kwargs)
    whole.run(70)
    first = KronSGD(_net(data), data, y, **kwargs)
    first.run(30, checkpoint=tmp_path / "d.ckpt")
    resumed = kronsgd.resume(tmp_path / "d.ckpt", data, y)
    assert resumed.delay.cap == 9 and resumed.staleness_lr == "inverse"
    resumed.run(40)
    np.testing.assert_array_equal(resumed.P, whole.P)
    np.testing.assert_array_equal(resumed.alpha, whole.alpha)


def test_a_callable_delay_must_be_passed_again_to_resume(tmp_path):
    data, y = _task()
    trainer = KronSGD(_net(data), data, y, lr=0.6, batch_size=5, dtype=np.float64, delay=lambda t: t % 3)
    trainer.run(10, checkpoint=tmp_path / "c.ckpt")
    with pytest.raises(ValidationError, match=r"delay= a callable.*resume\(path, data, y, delay=f\)"):
        kronsgd.resume(tmp_path / "c.ckpt", data, y)
    resumed = kronsgd.resume(tmp_path / "c.ckpt", data, y, delay=lambda t: t % 3)
    resumed.run(5)
    assert resumed.step_count == 15


def test_random_delays_are_reproducible_and_follow_their_model():
    make = lambda delay: parse_delay(delay, seed=3)  # noqa: E731 - the schedule KronSGD(delay=..., seed=3) uses
    uniform = make(("uniform", 6))
    draws = [uniform(t) for t in range(1000, 4000)]
    assert draws == [make(("uniform", 6))(t) for t in range(1000, 4000)]  # same seed, same delays
    assert set(draws) == set(range(7)) and abs(np.mean(draws) - 3.0) < 0.15
    geometric = [make(("geometric", 4.0))(t) for t in range(1000, 6000)]
    assert abs(np.mean(geometric) - 4.0) < 0.3
    pareto = np.array([make(("pareto", 1.5, 10**6))(t) for t in range(1000, 6000)])
    assert abs(np.mean(pareto >= 3) - 4.0**-1.5) < 0.03  # P(τ >= k) = (1 + k)^-shape
    assert make(5)(2) == 2 and make(5)(9) == 5  # update t looks back at most t updates


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"delay": -1}, r"delay must be an int in the range \[0, inf\)"),
        ({"delay": 2.5}, r"delay must be an int >= 0, a callable"),
        ({"delay": ("uniform", -3)}, r"tau_max must be an int in the range \[0, inf\)"),
        ({"delay": ("geometric", 0.0)}, r"delay \(.geometric., mean\): mean must be > 0.0. Got 0.0"),
        ({"delay": ("pareto", 1.5)}, r"'pareto' takes 2 parameter\(s\). Got 1"),
        ({"delay": ("sometimes", 3)}, r"delay's model must be 'uniform', 'geometric', 'pareto'"),
        ({"delay": 2, "workers": 2}, r"delay= reproduces staleness on one sequential worker"),
        ({"delay": 2, "fired": "tree"}, r"with delay= use fired='scan'"),
        ({"staleness_lr": "sqrt"}, r"staleness_lr must be one of"),
    ],
)
def test_bad_delays_are_refused_naming_the_argument(kwargs, match):
    data, y = _task()
    with pytest.raises(ValidationError, match=match):
        KronSGD(_net(data), data, y, lr=0.1, batch_size=5, **kwargs)


@pytest.mark.parametrize(
    "bad,match",
    [(lambda t: -1, r"\[0, 1024\].*At step 7 it returned -1"), (lambda t: 2.5, r"must return an int. At step 7"),
     (lambda t: 5000, r"\[0, 1024\].*At step 7 it returned 5000")],
)  # fmt: skip
def test_a_callable_that_returns_a_bad_delay_fails_at_that_step(bad, match):
    data, y = _task()
    calls = []

    def delay(t):
        calls.append(t)
        return bad(t) if t == 7 else 1

    trainer = KronSGD(_net(data), data, y, lr=0.1, batch_size=5, delay=delay)
    with pytest.raises(ValidationError, match=match):
        trainer.run(20)
    assert trainer.step_count == 7  # the steps before it stand, consistently
    recomputed = trainer.net.preactivations(trainer.data, prepared=True)
    np.testing.assert_allclose(trainer.P, recomputed, rtol=0, atol=1e-4 * np.abs(recomputed).max())


def test_threads_take_the_staleness_aware_step_exactly():
    """Two workers, one slowed so that its updates are stale: each update s is the gradient at
    W_{s - τ_s} scaled by lr / (1 + τ_s), as a hand-written oracle computes it."""
    import time

    import naive

    data, y = _task(n=80)
    net = _net(data)
    W = net.dense_weights()
    trainer = KronSGD(net, data, y, lr=0.6, batch_size=5, dtype=np.float64, workers=2, max_staleness=6,
                      staleness_lr="inverse", keep_log=True, seed=2)  # fmt: skip
    slow, compute, log = trainer.workers[0], trainer.workers[0].compute, trainer.log

    def dawdle(batch):  # worker 0 waits, between reading its columns and logging, for another update
        update = compute(batch)
        deadline = time.monotonic() + 0.05
        while log.published <= slow.snapshot and time.monotonic() < deadline:
            time.sleep(1e-5)
        return update

    slow.compute = dawdle
    trainer.run(120, log_every=40)
    records = trainer.records
    assert max(r.staleness for r in records) > 0  # some updates really were stale
    X = trainer.data.to_dense()
    iterates = [W]
    for s, r in enumerate(records):
        grad = naive.batch_gradient(X, iterates[s - r.staleness], net.a, trainer.y, net.shift, r.batch)
        iterates.append(iterates[-1] - 0.6 / (1 + r.staleness) * grad)
    np.testing.assert_allclose(net.dense_weights(), iterates[-1], rtol=0, atol=1e-9 * np.abs(iterates[-1]).max())
