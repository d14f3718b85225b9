"""The Ray backend on a real three-node Ray cluster on this machine (one CPU per node), started once here.

Workers are spread over the nodes; the ordering actor stays beside the driver. The tests
check the invariant P = P0 + αG, replay, the bounded log, a node killed mid-run, an actor
that always dies, and checkpoints resumed on Ray and on threads.
"""

import sys
import threading
import time

import numpy as np
import pytest

import kronsgd
from kronsgd import KroneckerData, KronSGD, KronsgdError, TwoLayerNet, ValidationError
from kronsgd.cli.demo import synthetic_task

ray = pytest.importorskip("ray")
from ray import cloudpickle  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from kronsgd.engine.ray_worker import ShardWorker  # noqa: E402

# a node is declared dead after about 3 s without heartbeats (the default is 30 s or more)
_HEALTH = {"health_check_period_ms": 1000, "health_check_failure_threshold": 3, "health_check_initial_delay_ms": 0}


@pytest.fixture(scope="module")
def cluster():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                            "_system_config": _HEALTH})  # fmt: skip
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


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


def _assert_alpha_is_the_log(trainer):
    expected = np.zeros_like(trainer.alpha)  # every logged update in alpha exactly once
    for r in trainer.records:
        np.add.at(expected, (r.rows, r.batch[r.owner]), r.coef)
    np.testing.assert_allclose(trainer.alpha, expected, rtol=1e-12, atol=1e-15)


def _nodes(trainer):
    return ray.get([actor.node.remote() for actor in trainer._ray.actors])


def test_workers_on_two_nodes_keep_the_invariant_and_match_the_replayed_log(cluster):
    trainer = _ray_trainer(2, tau=4, keep_log=True)
    assert len(set(_nodes(trainer))) == 2  # the shards really live on different nodes
    history = trainer.run(120, log_every=40)
    assert trainer.step_count == 120 and [h["step"] for h in history] == [0, 40, 80, 120]
    assert all(h["staleness_max"] <= 4 for h in history[1:])  # the log refused what was too stale
    _assert_invariant(trainer)
    records = trainer.records
    assert [r.seq for r in records] == list(range(120))
    data, y = _task()
    replay = KronSGD(TwoLayerNet(data.dims, width=96, seed=3), data, y, lr=0.3, batch_size=6, dtype=np.float64)
    replay.replay(records)
    np.testing.assert_array_equal(replay.alpha, trainer.alpha)
    np.testing.assert_allclose(replay.P, trainer.P, rtol=0, atol=1e-12 * np.abs(trainer.P).max())
    for r in records:  # a record's bytes depend on nnz and the batch only
        assert r.nbytes == r.batch.nbytes + r.rows.size * (r.rows.itemsize + r.owner.itemsize + r.coef.itemsize)
    trainer._ray.close()


def test_ray_converges_like_the_sequential_run(cluster):
    # One run's final loss varies by several percent with the batch seed alone: compare means. Ray's
    # staleness grows with the machine's load (groups of records in flight), so it is bounded here:
    # the test is of the engine, not of how busy the machine is (bench_delay.py measures staleness).
    data, y = synthetic_task(n=512, dims=(8, 8), seed=2)
    means = {}
    for backend, workers, seeds, tau in (("threads", 1, range(4), None), ("ray", 2, range(2), 8)):
        losses = []
        for seed in seeds:
            net = TwoLayerNet((8, 8), width=512, seed=1)
            trainer = KronSGD(net, data, y, lr=1.0, batch_size=16, workers=workers, backend=backend, seed=seed,
                              max_staleness=tau)  # fmt: skip
            losses.append(trainer.run(400, log_every=0)[-1]["loss"])
            if trainer._ray is not None:
                trainer._ray.close()
        means[backend] = np.mean(losses)
    assert means["threads"] < 0.3 * 0.5 * np.sum(y**2)  # the task is learned: the comparison means something
    assert abs(means["ray"] - means["threads"]) <= 0.10 * means["threads"]


def test_snapshots_bound_the_log_whatever_the_run_length(cluster):
    trainer = _ray_trainer(2, snapshot_every=5)
    trainer.run(400, log_every=100)
    engine = trainer._ray
    assert engine.peak <= 2 * 5  # the ordering actor never held more than 2 x snapshot_every records
    assert engine.held <= 2 * 5 and trainer.step_count == 400
    _assert_invariant(trainer)
    engine.close()


class AlwaysDies(ShardWorker):
    """A worker whose process ends as soon as it is asked to work."""

    def run(self, end):
        import os

        os._exit(1)


def test_an_actor_that_always_dies_stops_the_run_after_max_restarts(cluster):
    trainer = _ray_trainer(2, max_restarts=2, keep_log=True)
    trainer.run(30, log_every=0)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the replacement class travels by value
    try:
        trainer._ray._worker_cls = ray.remote(num_cpus=0)(AlwaysDies)
        ray.kill(trainer._ray.actors[1], no_restart=True)
        with pytest.raises(KronsgdError, match="worker 1 died 3 times, more than max_restarts=2"):
            trainer.run(200, log_every=0)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert trainer._ray.incarnations[1] == 3
    assert trainer.step_count == len(trainer.records) >= 30
    _assert_invariant(trainer)  # the lost shard was rebuilt in the driver: P and alpha are whole
    _assert_alpha_is_the_log(trainer)
    trainer._ray.close()


def test_a_ray_checkpoint_resumes_on_ray_and_on_threads(cluster, tmp_path):
    data, y = _task()
    trainer = _ray_trainer(2, tau=6, data=data, y=y, keep_log=True, snapshot_every=7, max_restarts=2)
    path = tmp_path / "ray.ckpt"
    trainer.run(60, log_every=20, checkpoint=path, checkpoint_every=30)
    saved_P, saved_alpha = trainer.P.copy(), trainer.alpha.copy()
    trainer._ray.close()
    on_ray = kronsgd.resume(path, data, y)
    assert on_ray.backend == "ray" and on_ray.step_count == 60
    assert (on_ray._ray.snapshot_every, on_ray._ray.max_restarts) == (7, 2)  # the saved run's settings
    # the actors start from the restored columns (P0 + alpha G would differ in the last bits)
    np.testing.assert_array_equal(on_ray.P, saved_P)
    np.testing.assert_array_equal(on_ray.alpha, saved_alpha)
    on_ray.run(40, log_every=0)
    assert on_ray.step_count == 100 and [r.seq for r in on_ray.records] == list(range(100))
    _assert_invariant(on_ray)
    _assert_alpha_is_the_log(on_ray)
    on_ray._ray.close()
    on_threads = kronsgd.resume(path, data, y, backend="threads")
    assert on_threads.backend == "threads" and on_threads._ray is None
    np.testing.assert_array_equal(on_threads.P, saved_P)
    on_threads.run(40, log_every=0)
    assert on_threads.step_count == 100
    _assert_invariant(on_threads)


def test_one_ray_worker_at_staleness_0_is_the_sequential_run_and_resumes_to_its_bits(cluster, tmp_path):
    data, y = _task()
    on_ray = _ray_trainer(1, tau=0, data=data, y=y, snapshot_every=16)
    on_ray.run(60, log_every=30, checkpoint=tmp_path / "seq.ckpt")
    on_ray._ray.close()
    whole = KronSGD(TwoLayerNet(data.dims, width=96, seed=3), data, y, lr=0.3, batch_size=6, dtype=np.float64)
    whole.run(60, log_every=30)
    np.testing.assert_array_equal(on_ray.P, whole.P)  # same batches, same compute, same fold: same bits
    np.testing.assert_array_equal(on_ray.alpha, whole.alpha)
    whole.run(40, log_every=0)
    for backend in ("threads", "ray"):
        resumed = kronsgd.resume(tmp_path / "seq.ckpt", data, y, backend=backend)
        resumed.run(40, log_every=0)
        np.testing.assert_array_equal(resumed.P, whole.P)
        np.testing.assert_array_equal(resumed.alpha, whole.alpha)
        if resumed._ray is not None:
            resumed._ray.close()


def test_ray_settings_are_validated(cluster):
    data, y = _task(n=40)
    net = TwoLayerNet(data.dims, width=16)
    with pytest.raises(ValidationError, match="backend must be one of 'threads', 'ray'"):
        KronSGD(net, data, y, lr=0.1, batch_size=2, backend="mpi")
    with pytest.raises(ValidationError, match="max_restarts"):
        KronSGD(net, data, y, lr=0.1, batch_size=2, backend="ray", max_restarts=-1)
    with pytest.raises(ValidationError, match="snapshot_every"):
        KronSGD(net, data, y, lr=0.1, batch_size=2, backend="ray", snapshot_every=0)
    trainer = _ray_trainer(2, data=data, y=y)
    with pytest.raises(ValidationError, match="batches= drives one worker"):
        trainer.run(batches=[[0, 1]])
    trainer._ray.close()


def test_ray_workers_start_from_the_kronecker_init(cluster):
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
    trainer._ray.close()


def test_a_node_killed_mid_run_is_survived_without_losing_or_doubling_an_update(cluster):
    data, y = _task(n=160)
    trainer = _ray_trainer(2, tau=8, keep_log=True, data=data, y=y, snapshot_every=16)
    driver = ray.get_runtime_context().get_node_id()
    nodes = _nodes(trainer)
    w = next(w for w, node in enumerate(nodes) if node != driver)  # never the driver's node: the log lives there
    victim = next(node for node in cluster.worker_nodes if node.node_id == nodes[w])

    def kill_when_the_log_has_records():
        while ray.get(trainer._ray.log.head_count.remote()) < 200:
            time.sleep(0.005)
        cluster.remove_node(victim, allow_graceful=False)

    killer = threading.Thread(target=kill_when_the_log_has_records)
    killer.start()
    trainer.run(400, log_every=0)
    killer.join()
    for _ in range(30):  # the node's death is noticed within seconds: run until the driver has replaced it
        if trainer._ray.incarnations[w]:
            break
        trainer.run(100, log_every=0)
    assert trainer._ray.incarnations[w] >= 1
    trainer.run(100, log_every=0)  # the replacement (on a live node) works
    assert _nodes(trainer)[w] != victim.node_id
    assert [r.seq for r in trainer.records] == list(range(trainer.step_count))
    _assert_invariant(trainer)
    _assert_alpha_is_the_log(trainer)
    trainer._ray.close()


def test_ray_takes_the_staleness_aware_step_exactly(cluster):
    """Each update s is the gradient at W_{s - τ_s} scaled by lr / (1 + τ_s), as a hand-written oracle has it."""
    import naive

    data, y = _task()
    net = TwoLayerNet(data.dims, width=96, seed=3)
    W = net.dense_weights()
    trainer = KronSGD(net, data, y, lr=0.3, batch_size=6, dtype=np.float64, workers=2, backend="ray",
                      staleness_lr="inverse", keep_log=True)  # fmt: skip
    trainer.run(80, log_every=0)
    records = trainer.records
    assert [r.seq for r in records] == list(range(80)) and max(r.staleness for r in records) > 0
    X, iterates = trainer.data.to_dense(), [W]
    for s, r in enumerate(records):
        grad = naive.batch_gradient(X, iterates[s - r.staleness], net.a, trainer.y, net.shift, r.batch)
        iterates.append(iterates[-1] - 0.3 / (1 + r.staleness) * grad)
    np.testing.assert_allclose(net.dense_weights(), iterates[-1], rtol=0, atol=1e-9 * np.abs(iterates[-1]).max())
    trainer._ray.close()
