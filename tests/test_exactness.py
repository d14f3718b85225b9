"""The central oracle: KronSGD, DenseSGD and a hand-written NumPy SGD produce the same iterates."""

import itertools
import time

import numpy as np
import pytest

import naive
from kronsgd import DenseSGD, KroneckerData, KronSGD, TwoLayerNet

GRID = list(itertools.product([(5, 6), (3, 4, 5)], [1, 3], [0.0, None], [1, 32], [1, 3]))


def _task(dims, rank, outputs, n=48, seed=0):
    rng = np.random.default_rng(seed)
    data = KroneckerData([rng.standard_normal((n, rank, d)) for d in dims])
    test = KroneckerData([rng.standard_normal((10, rank, d)) for d in dims])
    y = rng.standard_normal((n, outputs))
    return data, test, y


def _rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.parametrize("dims,rank,shift,batch,outputs", GRID)
def test_kron_dense_and_numpy_sgd_agree_after_200_steps(dims, rank, shift, batch, outputs):
    data, test, y = _task(dims, rank, outputs)
    kw = dict(lr=0.3, batch_size=batch, seed=5, dtype=np.float64)
    kron_net = TwoLayerNet(dims, width=64, outputs=outputs, shift=shift, seed=9)
    kron = KronSGD(kron_net, data, y, fired="scan", **kw)  # the tree and the window: ENGINES below
    assert kron.fired_mode == "scan"
    dense = DenseSGD(TwoLayerNet(dims, width=64, outputs=outputs, shift=shift, seed=9), data, y, **kw)
    W_init = kron_net.dense_weights()
    kron.run(200, log_every=50)
    dense.run(200, log_every=50)

    assert kron.history[-1]["loss"] < kron.history[0]["loss"]  # it trained, so the comparison means something
    assert kron.counters()["nnz"] > 0
    assert _rel(kron.dense_weights(), dense.dense_weights()) <= 1e-9
    assert _rel(kron.predict(test), dense.predict(test)) <= 1e-9
    np.testing.assert_allclose([h["loss"] for h in kron.history], [h["loss"] for h in dense.history], rtol=1e-9)

    # the same batches through a plain NumPy SGD written out by hand
    replay = KronSGD(TwoLayerNet(dims, width=64, outputs=outputs, shift=shift, seed=9), data, y, **kw)
    batches = [replay.sampler.next() for _ in range(200)]
    W_ref = naive.plain_sgd(data.normalized().to_dense(), W_init, kron_net.a, y, kron_net.shift, 0.3, batches)
    assert _rel(kron.dense_weights(), W_ref) <= 1e-9


# The other ways a KronSGD step can run. Each must give the iterates of the hand-written SGD
# on the batches its log holds, in log order; an update computed from a state `staleness`
# updates old (several workers) is the naive gradient at that older state.
ENGINES = {
    "tree": {"fired": "tree"},
    "tree, Gram rows on the fly": {"fired": "tree", "gram": "on_the_fly"},
    "window 4": {"fired": "scan", "window": 4},
    "window 4, Gram rows on the fly": {"fired": "scan", "window": 4, "gram": "on_the_fly"},
    "2 workers, staleness 0": {"fired": "scan", "workers": 2, "max_staleness": 0},
    "3 workers, staleness 0, tree": {"fired": "tree", "workers": 3, "max_staleness": 0},
    "3 workers, staleness 0, window 3": {"fired": "scan", "workers": 3, "max_staleness": 0, "window": 3},
    "2 workers, staleness <= 3": {"fired": "scan", "workers": 2, "max_staleness": 3},
    "3 workers, any staleness, window 2": {"fired": "scan", "workers": 3, "window": 2},
}


@pytest.mark.parametrize("outputs", [1, 3])
@pytest.mark.parametrize("dims,rank", [((5, 6), 1), ((3, 4, 5), 3)])
@pytest.mark.parametrize("engine", ENGINES.values(), ids=ENGINES.keys())
def test_every_engine_gives_the_naive_sgd_of_its_logged_updates(engine, dims, rank, outputs):
    data, test, y = _task(dims, rank, outputs)
    net = TwoLayerNet(dims, width=64, outputs=outputs, seed=9)
    W_init = net.dense_weights()
    trainer = KronSGD(net, data, y, lr=0.3, batch_size=4, seed=5, dtype=np.float64, keep_log=True, **engine)
    assert trainer.fired_mode == engine["fired"] and len(trainer.workers) == engine.get("workers", 1)
    stale = engine.get("workers", 1) > 1 and engine.get("max_staleness") != 0
    if stale:  # worker 0 waits, between reading its columns and logging, until another update is published
        slow, compute, log = trainer.workers[0], trainer.workers[0].compute, trainer.log

        def dawdle(batch):
            nnz = compute(batch)
            deadline = time.monotonic() + 0.05  # the others may have finished: then log anyway
            while log.published <= slow.snapshot and time.monotonic() < deadline:
                time.sleep(1e-5)
            return nnz

        slow.compute = dawdle
    trainer.run(150, log_every=50)
    assert trainer.history[-1]["loss"] < trainer.history[0]["loss"]  # it trained, so the comparison means something

    records = trainer.records
    first = records[0].seq  # the log may hold records before the run's (a warm-up that changes nothing)
    assert [r.seq for r in records] == list(range(first, first + 150))
    staleness = [r.staleness for r in records]
    bound = 0 if engine.get("workers", 1) == 1 else engine.get("max_staleness", 150)
    assert max(staleness) <= bound
    assert (max(staleness) > 0) == stale  # the stale cases really replay stale updates
    unit = data.normalized().to_dense()  # (n, d)
    W_ref = naive.delayed_sgd(unit, W_init, net.a, y, net.shift, 0.3, [r.batch for r in records], staleness)
    assert _rel(trainer.dense_weights(), W_ref) <= 1e-9
    expected, _ = naive.full_outputs(W_ref @ test.normalized().to_dense().T, net.a, net.shift)  # (10, C)
    assert _rel(trainer.predict(test).reshape(10, outputs), expected) <= 1e-9
    recomputed = net.preactivations(data, prepared=False)  # P0 + alpha G from scratch
    np.testing.assert_allclose(trainer.P, recomputed, rtol=0, atol=1e-10 * np.abs(recomputed).max())


def test_given_batches_equal_sampled_ones_and_runs_continue():
    data, _, y = _task((4, 5), 2, 1, n=30)
    kw = dict(lr=0.2, batch_size=4, seed=3, dtype=np.float64)
    sampled = KronSGD(TwoLayerNet((4, 5), width=32, seed=1), data, y, **kw)
    sampled.run(30)
    sampled.run(20)  # continues the same run
    twin = KronSGD(TwoLayerNet((4, 5), width=32, seed=1), data, y, **kw)
    batches = [twin.sampler.next() for _ in range(50)]
    given = KronSGD(TwoLayerNet((4, 5), width=32, seed=1), data, y, **kw)
    history = given.run(batches=batches, log_every=10)
    np.testing.assert_array_equal(given.alpha, sampled.alpha)
    np.testing.assert_array_equal(given.P, sampled.P)
    assert [h["step"] for h in history] == [0, 10, 20, 30, 40, 50]
    assert given.history is history and sampled.history[-1]["step"] == 50


def test_batches_may_repeat_points_and_vary_in_size():
    data, test, y = _task((3, 4), 1, 2, n=12)
    batches = [[0, 0, 5], [11], list(range(12)), [3, 3, 3, 3]]
    nets = [TwoLayerNet((3, 4), width=40, outputs=2, seed=2) for _ in range(2)]
    kron = KronSGD(nets[0], data, y, lr=0.4, batch_size=2, dtype=np.float64)
    dense = DenseSGD(nets[1], data, y, lr=0.4, batch_size=2, dtype=np.float64)
    kron.run(batches=batches)
    dense.run(batches=batches)
    assert _rel(kron.predict(test), dense.predict(test)) <= 1e-12


def test_on_the_fly_gram_equals_precomputed():
    data, test, y = _task((6, 5), 2, 1, n=40)
    runs = []
    for gram in ("precomputed", "on_the_fly"):
        trainer = KronSGD(
            TwoLayerNet((6, 5), width=64, seed=4), data, y, lr=0.3, batch_size=8, gram=gram, dtype=np.float64
        )
        trainer.run(100)
        assert trainer.gram_mode == gram
        runs.append(trainer)
    np.testing.assert_allclose(runs[0].P, runs[1].P, rtol=1e-12, atol=1e-12)
    assert runs[1].counters()["gram_entries"] == 100 * 8 * 40
    assert runs[0].counters()["gram_entries"] == 40 * 40


def test_float32_tracks_float64():
    data, test, y = _task((6, 5), 1, 1, n=64)
    out = {}
    for dtype in (np.float32, np.float64):
        trainer = KronSGD(TwoLayerNet((6, 5), width=128, seed=4), data, y, lr=0.3, batch_size=8, dtype=dtype)
        trainer.run(100)
        assert trainer.P.dtype == dtype and trainer.alpha.dtype == dtype
        out[dtype] = trainer.predict(test)
    assert _rel(out[np.float32], out[np.float64]) < 1e-4


def test_maintained_preactivations_equal_a_recomputation():
    data, _, y = _task((5, 4), 3, 2, n=36)
    trainer = KronSGD(TwoLayerNet((5, 4), width=80, outputs=2, seed=6), data, y, lr=0.3, batch_size=5, dtype=np.float64)
    trainer.run(150)
    recomputed = trainer.net.preactivations(trainer.data, prepared=True)  # P0 + alpha G from scratch
    np.testing.assert_allclose(trainer.P, recomputed, rtol=1e-10, atol=1e-10)


def test_history_and_counters_report_the_cost():
    data, _, y = _task((8, 8), 1, 1, n=64)
    trainer = KronSGD(TwoLayerNet((8, 8), width=256, seed=0), data, y, lr=0.2, batch_size=16, dtype=np.float64)
    history = trainer.run(40, log_every=20)
    c = trainer.counters()
    assert c["steps"] == 40 and c["samples"] == 640
    assert c["multiply_adds"] == c["nnz"] * 64
    assert 0 < c["rows_touched"] <= c["nnz"]
    for h in history:
        assert {"step", "loss", "nnz", "fired", "seconds", "rows_touched"} <= set(h)
    assert 20 * (history[1]["nnz"] + history[2]["nnz"]) == pytest.approx(c["nnz"])  # per-step means
    assert history[-1]["seconds"] >= history[1]["seconds"] > 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("gram", ["precomputed", "on_the_fly"])
def test_the_update_window_does_not_change_a_bit(dtype, gram):
    data, test, y = _task((6, 5), 2, 2, n=40)
    runs = []
    for window in (1, 3, 8):
        net = TwoLayerNet((6, 5), width=96, outputs=2, seed=4)
        trainer = KronSGD(net, data, y, lr=0.3, batch_size=6, gram=gram, dtype=dtype, window=window)
        history = trainer.run(50, log_every=7)  # logs fold mid-window: folds at odd moments too
        runs.append((trainer.P.copy(), trainer.alpha.copy(), [h["loss"] for h in history]))
    for P, alpha, losses in runs[1:]:
        np.testing.assert_array_equal(P, runs[0][0])
        np.testing.assert_array_equal(alpha, runs[0][1])
        assert losses == runs[0][2]


def test_callback_sees_and_extends_every_history_record():
    data, _, y = _task((4, 5), 1, 1, n=30)
    trainer = KronSGD(TwoLayerNet((4, 5), width=32), data, y, lr=0.2, batch_size=4, dtype=np.float64)
    seen = []

    def callback(t, entry):
        assert t is trainer
        seen.append(entry["step"])
        entry["alpha_norm"] = float(np.linalg.norm(t.alpha))

    history = trainer.run(20, log_every=5, callback=callback)
    assert seen == [0, 5, 10, 15, 20]
    assert history[0]["alpha_norm"] == 0.0 < history[-1]["alpha_norm"]
