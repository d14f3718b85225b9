"""Atomic steps: Ctrl-C at random moments and an exception at every stage leave a consistent, resumable run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import kronsgd
from kronsgd import KroneckerData, KronSGD, TwoLayerNet
from kronsgd.engine import checkpoint as checkpoint_module
from kronsgd.engine import fold as fold_module
from kronsgd.engine import worker as worker_module
from kronsgd.engine.interrupts import interrupt_guard
from kronsgd.engine.log import UpdateLog

HERE = Path(__file__).parent


# ---- SIGINT, for real, at random moments -------------------------------------------------
@pytest.mark.parametrize("workers", [1, 2, 4])
def test_sigint_at_random_moments_leaves_a_consistent_resumable_run(tmp_path, workers):
    """34 trials per worker count (102 in all): see tests/sigint_trials.py for what each checks."""
    trials = 34
    done = subprocess.run(
        [sys.executable, str(HERE / "sigint_trials.py"), str(workers), str(trials), str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    failed = [r for r in rows if not r["ok"]]
    assert done.returncode == 0 and not failed, (failed[:3], done.stderr[-2000:])
    assert len(rows) == trials
    interrupted = [r for r in rows if r.get("interrupted")]
    assert len(interrupted) >= trials // 2  # most Ctrl-Cs landed inside a run, not around it
    assert len({r["steps"] for r in interrupted}) > 3  # at many different moments
    if workers == 1:
        assert all(r["checks"]["bit_identical"] for r in interrupted)


# ---- an exception at every stage ---------------------------------------------------------
def _task(n=96):
    rng = np.random.default_rng(2)
    data = KroneckerData([rng.standard_normal((n, 2, 5)), rng.standard_normal((n, 2, 6))])
    return data, np.sin(rng.standard_normal(n))


def _trainer(data, y, workers, gram="precomputed"):
    net = TwoLayerNet(data.dims, width=128, seed=6)
    tau = 0 if workers == 1 else 2
    return KronSGD(
        net, data, y, lr=0.5, batch_size=6, dtype=np.float64, workers=workers, max_staleness=tau, seed=3, gram=gram,
        window=3,
    )  # fmt: skip


def _consistent(t) -> None:
    log = t.log
    assert log.quiescent() and log.published == min(log.folded) == min(log.alpha_folded)
    assert t.step_count == log.totals["steps"] == len(log.staleness)
    recomputed = t.net.preactivations(t.data, prepared=True)  # P0 + alpha G from scratch
    np.testing.assert_allclose(t.P, recomputed, rtol=0, atol=1e-9 * np.abs(recomputed).max())


STAGES = {  # where an exception is thrown: (module, attribute) whose k-th call raises before doing anything
    "compute": (worker_module, "compute_update"),
    "reserve": (UpdateLog, "reserve"),
    "write slot": (UpdateLog, "write_update"),
    "gram rows": (KroneckerData, "gram"),
    "publish": (UpdateLog, "publish"),
    "fold": (fold_module.K, "fold_records"),
    "alpha fold": (fold_module.K, "fold_alpha"),
    "checkpoint write": (checkpoint_module, "write_atomic"),
}


@pytest.mark.parametrize("workers", [1, 2, 4])
@pytest.mark.parametrize("stage", list(STAGES))
def test_an_exception_at_any_stage_leaves_a_consistent_resumable_run(tmp_path, monkeypatch, stage, workers):
    data, y = _task()
    whole = _trainer(data, y, workers, gram="on_the_fly")
    whole.run(120, log_every=40)
    t = _trainer(data, y, workers, gram="on_the_fly")
    owner, name = STAGES[stage]
    real, calls = getattr(owner, name), []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 9:  # past the first steps (and the first checkpoint write), inside the run
            raise RuntimeError(f"injected at {stage}")
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, failing if owner is not UpdateLog else _method(failing))
    path = tmp_path / "run.ckpt"
    with pytest.raises(RuntimeError, match=f"injected at {stage}"):
        t.run(120, log_every=40, checkpoint=path, checkpoint_every=2 if stage == "checkpoint write" else 50)
    monkeypatch.setattr(owner, name, real)
    assert not [th for th in threading.enumerate() if th.name.startswith("kronsgd-worker")]
    _consistent(t)
    resumed = kronsgd.resume(path, data, y)
    assert resumed.step_count == t.step_count or stage == "checkpoint write"  # the failed write kept the one before
    _consistent(resumed)
    resumed.run(120 - resumed.step_count, log_every=40)
    _consistent(resumed)
    if workers == 1:  # a failure consumes no batch: the finished run is the uninterrupted one, bit for bit
        np.testing.assert_array_equal(resumed.P, whole.P)
        np.testing.assert_array_equal(resumed.alpha, whole.alpha)


def _method(function):
    def method(self, *args, **kwargs):
        return function(self, *args, **kwargs)

    return method


def test_every_stage_is_really_called(tmp_path):
    """The injection points above are on the path a step takes (else the matrix would test nothing)."""
    data, y = _task()
    seen = set()
    for stage, (owner, name) in STAGES.items():
        real = getattr(owner, name)

        def spy(*args, _real=real, _stage=stage, **kwargs):
            seen.add(_stage)
            return _real(*args, **kwargs)

        setattr(owner, name, spy if owner is not UpdateLog else _method(spy))
        try:
            _trainer(data, y, 1, gram="on_the_fly").run(12, checkpoint=tmp_path / "spy.ckpt")
        finally:
            setattr(owner, name, real)
    assert seen == set(STAGES)


# ---- the guard itself --------------------------------------------------------------------
def test_sigint_inside_the_guard_waits_for_a_check():
    with interrupt_guard() as guard:
        signal.raise_signal(signal.SIGINT)  # delivered now: only recorded
        assert guard.requested
        with pytest.raises(KeyboardInterrupt):
            guard.check()
        assert not guard.requested
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_a_users_own_handler_is_called_at_the_check_and_runs_callbacks():
    calls = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: calls.append(signum))
    try:
        with interrupt_guard() as guard:
            signal.raise_signal(signal.SIGINT)
            assert calls == []
            guard.check()
            assert calls == [signal.SIGINT]
            with guard.released():  # user code: the user's handler, at once
                signal.raise_signal(signal.SIGINT)
            assert calls == [signal.SIGINT, signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_ctrl_c_during_a_callback_stops_the_run_at_once_and_consistently():
    data, y = _task()
    t = _trainer(data, y, 1)

    def callback(trainer, entry):
        if entry["step"] == 40:
            signal.raise_signal(signal.SIGINT)  # the user presses Ctrl-C while their callback runs

    with pytest.raises(KeyboardInterrupt):
        t.run(120, log_every=20, callback=callback)
    assert t.step_count == 40
    _consistent(t)


def test_the_guard_defers_nothing_off_the_main_thread():
    seen = []

    def body():
        with interrupt_guard() as guard:
            seen.append(guard.requested)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [False] and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_quiescence_is_required_for_a_checkpoint(tmp_path):
    data, y = _task()
    t = _trainer(data, y, 1)
    t.run(5)
    t.log.reserved += 1  # as if an update were in flight
    with pytest.raises(RuntimeError, match="quiescent"):
        checkpoint_module.save_checkpoint(t, tmp_path / "x.ckpt")
    assert not (tmp_path / "x.ckpt").exists()
