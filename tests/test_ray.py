"""The Ray backend against a real local Ray cluster (2 CPUs), started by these tests."""

import threading
import time

import numpy as np
import pytest

from kronsgd import KroneckerData, KronSGD, TwoLayerNet, ValidationError
from kronsgd.cli.demo import synthetic_task

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module", autouse=True)
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


def _task(n=96, seed=0):
    rng = np.random.default_rng(seed)
    data = KroneckerData([rng.standard_normal((n, 2, 6)), rng.standard_normal((n, 2, 5))])
    return data, rng.standard_normal(n)


def _ray_trainer(workers=2, tau=None, data=None, y=None, **kwargs):
    if data is None:
        data, y = _task()
    net = TwoLayerNet(data.dims, width=96, seed=3)
    return KronSGD(
        net, data, y, lr=0.3, batch_size=6, dtype=np.float64, workers=workers, max_staleness=tau,
        backend="ray", **kwargs,
    )  # fmt: skip


def _assert_invariant(trainer):
    recomputed = trainer.net.preactivations(trainer.data, prepared=True)  # P0 + alpha G from scratch
    np.testing.assert_allclose(trainer.P, recomputed, rtol=0, atol=1e-9 * np.abs(recomputed).max())


def test_two_ray_workers_keep_the_invariant_and_match_the_replayed_log():
    trainer = _ray_trainer(2, tau=4, keep_log=True)
    history = trainer.run(120, log_every=40)
    assert trainer.step_count == 120 and [h["step"] for h in history] == [0, 40, 80, 120]
    assert all("staleness_mean" in h for h in history[1:])
    _assert_invariant(trainer)
    records = trainer.records
    assert len(records) == 120
    data, y = _task()
    replay = KronSGD(TwoLayerNet(data.dims, width=96, seed=3), data, y, lr=0.3, batch_size=6, dtype=np.float64)
    replay.replay(records)
    np.testing.assert_array_equal(replay.alpha, trainer.alpha)
    np.testing.assert_allclose(replay.P, trainer.P, rtol=0, atol=1e-12 * np.abs(trainer.P).max())
    np.testing.assert_allclose(trainer.predict(data), replay.predict(data), rtol=1e-12)


def test_ray_converges_like_the_sequential_run():
    # One run's final loss varies by several percent with the batch seed alone: compare means.
    data, y = synthetic_task(n=512, dims=(8, 8), seed=2)
    means = {}
    for backend, workers, seeds in (("threads", 1, range(4)), ("ray", 2, range(2))):
        losses = []
        for seed in seeds:
            net = TwoLayerNet((8, 8), width=512, seed=1)
            trainer = KronSGD(net, data, y, lr=1.0, batch_size=16, workers=workers, backend=backend, seed=seed)
            losses.append(trainer.run(400, log_every=0)[-1]["loss"])
        means[backend] = np.mean(losses)
    assert means["threads"] < 0.3 * 0.5 * np.sum(y**2)  # the task is learned: the comparison means something
    assert abs(means["ray"] - means["threads"]) <= 0.10 * means["threads"]


def test_a_killed_worker_actor_is_replaced_and_no_update_is_lost_or_doubled():
    data, y = _task(n=160)
    trainer = _ray_trainer(2, tau=8, keep_log=True, data=data, y=y)
    engine, steps, kill_at = trainer._ray, 1500, 300
    victim, finished, killed_at = engine.actors[1], threading.Event(), []

    def kill_once_the_log_holds_kill_at_records():
        while not finished.is_set():
            _, logged, _ = ray.get(engine.log.fetch.remote(steps))  # (no records, the log's length, stopped)
            if logged >= kill_at:
                ray.kill(victim, no_restart=True)
                killed_at.append(logged)
                return
            time.sleep(0.002)

    killer = threading.Thread(target=kill_once_the_log_holds_kill_at_records)
    killer.start()
    try:
        trainer.run(steps, log_every=0)
    finally:
        finished.set()
        killer.join()
    assert killed_at and kill_at <= killed_at[0] < steps  # the actor died in the middle of the run
    assert trainer._ray.incarnations[1] >= 1  # the actor was really replaced
    assert trainer.step_count == 1500 and len(trainer.records) == 1500
    _assert_invariant(trainer)
    expected = np.zeros_like(trainer.alpha)  # every logged update in alpha exactly once
    for r in trainer.records:
        np.add.at(expected, (r.rows, r.batch[r.owner]), r.coef)
    np.testing.assert_allclose(trainer.alpha, expected, rtol=1e-12, atol=1e-15)


def test_record_size_depends_on_nnz_only():
    trainer = _ray_trainer(2, keep_log=True)
    trainer.run(20)
    for r in trainer.records:
        assert r.nbytes == r.batch.nbytes + r.rows.size * (r.rows.itemsize + r.owner.itemsize + r.coef.itemsize)
        assert r.nbytes < 8 * r.batch.size + 24 * r.rows.size + 1


def test_ray_settings_are_validated():
    data, y = _task(n=40)
    net = TwoLayerNet(data.dims, width=16)
    with pytest.raises(ValidationError, match="backend must be one of 'threads', 'ray'"):
        KronSGD(net, data, y, lr=0.1, batch_size=2, backend="mpi")
    trainer = _ray_trainer(2, data=data, y=y)
    with pytest.raises(ValidationError, match="batches= drives one worker"):
        trainer.run(batches=[[0, 1]])


def test_ray_workers_start_from_the_kronecker_init():
    data, y = _task()
    net = TwoLayerNet(data.dims, width=96, seed=3, init="kronecker", init_rank=4)
    trainer = KronSGD(net, data, y, lr=0.3, batch_size=6, dtype=np.float64, workers=2, backend="ray", keep_log=True)
    trainer.run(40)
    _assert_invariant(trainer)  # the actors' P0 came from the same Kronecker W0 as the net's
    replay = KronSGD(
        TwoLayerNet(data.dims, width=96, seed=3, init="kronecker", init_rank=4), data, y, lr=0.3, batch_size=6,
        dtype=np.float64,
    )  # fmt: skip
    replay.replay(trainer.records)
    np.testing.assert_allclose(replay.P, trainer.P, rtol=0, atol=1e-12 * np.abs(trainer.P).max())
