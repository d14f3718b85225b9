"""Ctrl-C at random moments, many times, in one process: ``python sigint_trials.py WORKERS TRIALS FOLDER``.

Each trial trains a fresh KronSGD run with checkpoints while a timer thread sends SIGINT to
this process at a random moment of the run (or just after it), exactly as a terminal's Ctrl-C
does. After each trial it checks, and prints one JSON line per trial:

- the interrupted trainer: P = P0 + alpha G on every column, the log quiescent (every
  published record folded, none reserved without being published), counters equal to the log;
- its checkpoint: it loads (checksum verified), ``resume`` rebuilds the same state, the
  resumed run's loss equals the loss of its model's own predictions, and it finishes;
- one worker: the resumed and finished run is bit-identical to an uninterrupted run.

Exit status 0 when every trial passed; the failures are in the JSON lines.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

import kronsgd
from kronsgd import KroneckerData, KronSGD, TwoLayerNet

STEPS, EVERY = 240, 67


def task():
    rng = np.random.default_rng(5)
    n = 192
    data = KroneckerData([rng.standard_normal((n, 2, 8)), rng.standard_normal((n, 2, 8))])
    return data, np.sin(rng.standard_normal(n))


def trainer(data, y, workers):
    net = TwoLayerNet(data.dims, width=192, seed=4)
    tau = 0 if workers == 1 else 2
    return KronSGD(net, data, y, lr=0.5, batch_size=8, dtype=np.float64, workers=workers, max_staleness=tau, seed=1)


def invariant_error(t) -> float:
    recomputed = t.net.preactivations(t.data, prepared=True)  # P0 + alpha G from scratch
    return float(np.abs(t.P - recomputed).max() / np.abs(recomputed).max())


def quiescent(t) -> bool:
    log = t.log
    return (
        log.reserved == log.published == min(log.folded)
        and t.step_count == log.totals["steps"] == len(log.staleness)
        and t.history[-1]["step"] <= t.step_count
    )


def main() -> int:
    workers, trials, folder = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    data, y = task()
    durations = []
    for _ in range(3):  # the fastest of three runs with checkpoints: a Ctrl-C within it lands inside a run
        whole = trainer(data, y, workers)
        started = time.perf_counter()
        whole.run(STEPS, log_every=50, checkpoint=folder / "whole.ckpt", checkpoint_every=EVERY)
        durations.append(time.perf_counter() - started)
    duration = min(durations)
    rng = np.random.default_rng(workers)
    failures = 0
    for k in range(trials):
        path = folder / f"run{k}.ckpt"
        result = {"workers": workers, "trial": k}
        interrupted = False
        try:
            t = trainer(data, y, workers)
            delay = float(rng.uniform(0.0, duration))
            timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT))
            timer.start()
            try:
                t.run(STEPS, log_every=50, checkpoint=path, checkpoint_every=EVERY)
            except KeyboardInterrupt:
                interrupted = True
            timer.join()
        except KeyboardInterrupt:  # landed outside run(): in construction or after the run, no engine state at risk
            result["outside_run"] = True
            timer.join()
            print(json.dumps(result | {"ok": True}), flush=True)
            continue
        result |= {"interrupted": interrupted, "steps": t.step_count, "delay": round(delay, 4)}
        checks = {"invariant": invariant_error(t) < 1e-9, "quiescent": quiescent(t)}
        if path.exists():
            resumed = kronsgd.resume(path, data, y)
            checks["resumed_same_state"] = bool(
                resumed.step_count == t.step_count
                and np.array_equal(resumed.P, t.P)
                and np.array_equal(resumed.alpha, t.alpha)
            )
            own = 0.5 * float(np.sum((resumed.predict(data) - y) ** 2))
            checks["loss_matches_predictions"] = abs(resumed.loss() - own) <= 1e-9 * max(1.0, own)
            resumed.run(STEPS - resumed.step_count, log_every=50)
            checks["finished_invariant"] = invariant_error(resumed) < 1e-9 and quiescent(resumed)
            if workers == 1:
                checks["bit_identical"] = bool(
                    np.array_equal(resumed.P, whole.P)
                    and np.array_equal(resumed.alpha, whole.alpha)
                    and resumed.history[-1]["loss"] == whole.history[-1]["loss"]
                )
        else:  # interrupted before the first checkpoint could be written: nothing to resume
            checks["no_checkpoint_needed"] = t.step_count == 0 or not interrupted
        result["ok"] = all(checks.values())
        result["checks"] = checks
        failures += not result["ok"]
        print(json.dumps(result), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
