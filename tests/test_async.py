"""Asynchronous workers on threads: no update lost or applied twice, replayable, convergent, calm on errors."""

import threading
import traceback

import numpy as np
import pytest

from kronsgd import DivergenceError, KroneckerData, KronSGD, TwoLayerNet, ValidationError
from kronsgd.cli.demo import synthetic_task


def _task(n=96, dims=(6, 5), outputs=1, seed=0):
    rng = np.random.default_rng(seed)
    data = KroneckerData([rng.standard_normal((n, 2, d)) for d in dims])
    return data, rng.standard_normal((n, outputs))


def _trainer(workers, tau=None, dtype=np.float64, width=128, lr=0.3, batch=6, keep_log=False, data=None, y=None):
    if data is None:
        data, y = _task()
    net = TwoLayerNet(data.dims, width=width, outputs=y.shape[1], seed=3)
    return KronSGD(
        net, data, y, lr=lr, batch_size=batch, dtype=dtype, workers=workers, max_staleness=tau, keep_log=keep_log
    )


@pytest.mark.parametrize("workers,tau", [(2, None), (2, 0), (3, 1), (4, None), (4, 2)])
def test_preactivations_equal_a_recomputation_after_a_multi_worker_run(workers, tau):
    trainer = _trainer(workers, tau)
    trainer.run(300, log_every=37)
    assert trainer.counters()["steps"] == 300 and trainer.step_count == 300
    recomputed = trainer.net.preactivations(trainer.data, prepared=True)  # P0 + alpha G from scratch
    scale = np.abs(recomputed).max()
    np.testing.assert_allclose(trainer.P, recomputed, rtol=0, atol=1e-9 * scale)
    assert trainer.log.published == trainer.log.reserved == min(trainer.log.folded)


@pytest.mark.parametrize("workers", [2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_replaying_the_log_reproduces_the_run_exactly(workers, dtype):
    trainer = _trainer(workers, tau=3, dtype=dtype, keep_log=True)
    trainer.run(120, log_every=50)
    records = trainer.records
    assert [r.seq for r in records] == sorted(r.seq for r in records) and len(records) == 120
    for r in records:  # every update was made by the owner of its points
        w = trainer.workers[r.worker]
        assert w.start <= r.batch.min() and r.batch.max() < w.stop
    replay = _trainer(1, dtype=dtype)
    replay.replay(records)
    np.testing.assert_array_equal(replay.alpha, trainer.alpha)
    np.testing.assert_array_equal(replay.P, trainer.P)


def test_every_logged_update_is_in_alpha_exactly_once():
    trainer = _trainer(3, keep_log=True)
    trainer.run(90)
    expected = np.zeros_like(trainer.alpha)
    for r in trainer.records:
        np.add.at(expected, (r.rows, r.batch[r.owner]), r.coef)
    np.testing.assert_allclose(trainer.alpha, expected, rtol=1e-12, atol=1e-15)


def test_one_worker_without_staleness_is_the_sequential_algorithm_bit_for_bit():
    a, b = _trainer(1, tau=0), _trainer(1)
    a.run(80, log_every=9)
    b.run(80, log_every=20)
    np.testing.assert_array_equal(a.P, b.P)
    np.testing.assert_array_equal(a.alpha, b.alpha)
    assert a.history[-1]["staleness_max"] == 0


def test_staleness_is_measured_and_bounded():
    trainer = _trainer(3, tau=1)
    history = trainer.run(200, log_every=50)
    for entry in history[1:]:
        assert 0 <= entry["staleness_mean"] <= entry["staleness_max"] <= 1
        assert sum(entry["staleness_hist"]) == 50
    assert max(trainer.log.staleness) <= 1


def test_steps_count_updates_over_all_workers():
    trainer = _trainer(2)
    trainer.run(50)
    c = trainer.counters()
    assert c["steps"] == 50 and c["samples"] == 50 * 6
    assert [h["step"] for h in trainer.history][-1] == 50
    assert sum(trainer.log.steps_by_worker) == 50  # however the threads were scheduled


def test_two_workers_converge_like_the_sequential_run():
    # Final losses of one run vary by about ±8% with the batch seed alone, so compare the
    # mean over three seeds: staleness should cost far less than the 10% allowed.
    data, y = synthetic_task(n=512, dims=(8, 8), seed=2)
    means = {}
    for workers in (1, 2):
        losses = []
        for seed in range(3):
            net = TwoLayerNet((8, 8), width=512, seed=1)
            trainer = KronSGD(net, data, y, lr=1.0, batch_size=16, workers=workers, dtype=np.float64, seed=seed)
            losses.append(trainer.run(600, log_every=0)[-1]["loss"])
        means[workers] = np.mean(losses)
    start = 0.5 * np.sum(y**2)  # the loss of f = 0; the net starts near it
    assert means[1] < 0.2 * start  # the task is learned, so the comparison means something
    assert abs(means[2] - means[1]) <= 0.10 * means[1]


def test_divergence_with_large_staleness_is_a_clear_error_not_a_hang():
    trainer = _trainer(3, tau=50, lr=1e6)
    before = threading.active_count()
    with pytest.raises(DivergenceError, match=r"diverged.*lr"):
        trainer.run(500)
    assert threading.active_count() == before
    assert np.isfinite(trainer.P).all() and np.isfinite(trainer.alpha).all()
    recomputed = trainer.net.preactivations(trainer.data, prepared=True)
    np.testing.assert_allclose(trainer.P, recomputed, rtol=0, atol=1e-9 * np.abs(recomputed).max())


def test_a_failing_worker_stops_the_others_and_surfaces_its_traceback():
    trainer = _trainer(3, tau=2)
    victim = trainer.workers[1]
    original, calls = victim.compute, []

    def failing_compute(batch):
        calls.append(1)
        if len(calls) == 7:
            raise RuntimeError("worker one broke")
        return original(batch)

    victim.compute = failing_compute
    before = threading.active_count()
    with pytest.raises(RuntimeError, match="worker one broke") as info:
        trainer.run(400)
    assert "failing_compute" in "".join(traceback.format_tb(info.value.__traceback__))
    assert threading.active_count() == before
    assert trainer.step_count < 400
    recomputed = trainer.net.preactivations(trainer.data, prepared=True)
    np.testing.assert_allclose(trainer.P, recomputed, rtol=0, atol=1e-9 * np.abs(recomputed).max())
    victim.compute = original
    trainer.run(30)  # the trainer is still usable
    assert trainer.step_count >= 30


def test_updates_that_outgrow_the_log_slots_are_handled():
    data, y = _task(n=64)
    # The slots are sized for unit-norm points (a neuron fires with chance about Φ̄(b) = 8%). These
    # points keep their norms of about 7, so about 40% of the neurons fire: far above the estimate.
    net = TwoLayerNet(data.dims, width=128, seed=3, normalize=False)
    trainer = KronSGD(net, data, y, lr=1e-4, batch_size=8, workers=2, dtype=np.float64, keep_log=True)
    initial = trainer.log.pair_cap
    trainer.run(60)
    largest = max(r.rows.size for r in trainer.records)
    assert largest > initial  # some update did not fit the first slots, so the test exercises growth
    assert trainer.log.pair_cap >= largest and trainer.log.coef.shape[1] == trainer.log.pair_cap  # the slots grew
    assert len(trainer.records) == trainer.step_count == 60  # the oversized steps were retried, not dropped
    expected = np.zeros_like(trainer.alpha)  # and applied once each
    for r in trainer.records:
        np.add.at(expected, (r.rows, r.batch[r.owner]), r.coef)
    np.testing.assert_allclose(trainer.alpha, expected, rtol=1e-12, atol=1e-15)
    recomputed = trainer.net.preactivations(trainer.data, prepared=True)
    np.testing.assert_allclose(trainer.P, recomputed, rtol=0, atol=1e-9 * np.abs(recomputed).max())


def test_bad_worker_settings_are_refused():
    data, y = _task(n=20)
    net = TwoLayerNet(data.dims, width=16)
    with pytest.raises(ValidationError, match=r"workers must be an int in the range \[1, 20\]"):
        KronSGD(net, data, y, lr=0.1, batch_size=2, workers=0)
    with pytest.raises(ValidationError, match=r"batch_size must be at most the smallest shard.*Got 8"):
        KronSGD(net, data, y, lr=0.1, batch_size=8, workers=3)
    with pytest.raises(ValidationError, match=r"max_staleness must be an int"):
        KronSGD(net, data, y, lr=0.1, batch_size=2, workers=2, max_staleness=-1)
    trainer = KronSGD(net, data, y, lr=0.1, batch_size=2, workers=2)
    with pytest.raises(ValidationError, match="batches= drives one worker"):
        trainer.run(batches=[[0, 1]])
    with pytest.raises(ValidationError, match="replay\\(\\) runs on a trainer with workers=1"):
        trainer.replay([])


def test_a_record_costs_the_same_bytes_whatever_d_is():
    """Records of runs at d = 16, 4096 and 2^20 cost 8 bytes per batch point and 4 + 4 + 8 per fired
    pair, sent (pickled) or kept: nothing grows with d."""
    import pickle

    rng = np.random.default_rng(8)
    batches = [rng.choice(48, size=6, replace=False) for _ in range(25)]
    rows = []
    for side in (4, 64, 1024):  # d = side², rank 1
        data = KroneckerData([rng.standard_normal((48, side)), rng.standard_normal((48, side))])
        net = TwoLayerNet(data.dims, width=80, seed=1, shift=0.5)
        trainer = KronSGD(net, data, rng.standard_normal(48), lr=0.2, batch_size=6, dtype=np.float64,
                          keep_log=True, gram="on_the_fly")  # fmt: skip
        trainer.run(batches=batches)
        for r in trainer.records:
            rows.append((side * side, r.batch.size, r.rows.size, r.nbytes, len(pickle.dumps(r))))
    d, B, nnz, nbytes, pickled = (np.array(c) for c in zip(*rows, strict=True))
    assert len(set(nnz.tolist())) > 5 and set(d.tolist()) == {16, 4096, 2**20}
    np.testing.assert_array_equal(nbytes, 8 * B + 16 * nnz)  # int64 batch, int32 rows and owners, float64 coefs
    # what crosses the network: the same affine function of (B, nnz) at every d, to the byte
    design = np.column_stack([np.ones_like(B), B, nnz, d]).astype(float)
    fit, *_ = np.linalg.lstsq(design, pickled.astype(float), rcond=None)
    assert abs(fit[3]) < 1e-9 and np.abs(design @ fit - pickled).max() < 1.0
