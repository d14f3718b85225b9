"""Asynchronous workers on one machine: samples per second for 1, 2 and 4 workers, same work.

    python benchmarks/bench_async.py            # n = 4096, m = 2048, batch 32, 3000 updates
    python benchmarks/bench_async.py --quick

Every worker count does the same number of updates from the same initial state. The
memory-bandwidth ceiling is measured in the same run: a triad on one thread and on two
threads (each on its own half), so the parallel speedup can be read against what the
memory system gives two cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

from _common import _triad_kernel, log, machine_info
from kronsgd import KronSGD, TwoLayerNet
from kronsgd.cli.demo import synthetic_task


def triad_threads(nbytes: int, threads: int, reps: int = 5) -> float:
    """Best triad bandwidth (GB/s, 3 arrays counted) with ``threads`` threads on disjoint halves."""
    size = nbytes // 4
    a, b, c = np.ones(size, np.float32), np.full(size, 2.0, np.float32), np.full(size, 0.5, np.float32)
    parts = np.linspace(0, size, threads + 1).astype(int)
    _triad_kernel(a[:8], b[:8], c[:8], np.float32(3))
    best = float("inf")
    for _ in range(reps):
        workers = [
            threading.Thread(target=_triad_kernel, args=(a[i:j], b[i:j], c[i:j], np.float32(3)))
            for i, j in zip(parts[:-1], parts[1:], strict=True)
        ]
        t0 = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        best = min(best, time.perf_counter() - t0)
    return 3 * nbytes / best / 1e9


def measure(data, y, workers: int, args) -> dict:
    net = TwoLayerNet(data.dims, width=args.width, seed=0)
    trainer = KronSGD(net, data, y, lr=args.lr, batch_size=args.batch, workers=workers, seed=1)
    trainer.run(50, log_every=0)  # warm caches and threads
    started = trainer.train_seconds
    history = trainer.run(args.steps, log_every=0)
    seconds = trainer.train_seconds - started
    recent = np.asarray(trainer.log.staleness[-args.steps :])
    return {
        "workers": workers,
        "window": trainer.window_size,
        "seconds": seconds,
        "samples_per_s": args.steps * args.batch / seconds,
        "loss": history[-1]["loss"],
        "staleness_mean": float(recent.mean()),
        "staleness_max": int(recent.max()),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--lr", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3, help="alternate the worker counts this many times")
    parser.add_argument("--quick", action="store_true", help="a small run for a smoke test")
    parser.add_argument("--json", default="bench-out/bench_async.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.width, args.steps, args.repeats = 1024, 512, 300, 1

    log("triad bandwidth ...")
    bw = {p: triad_threads(256 * 2**20, p) for p in (1, 2)}
    data, y = synthetic_task(args.n, (32, 32), seed=0)
    runs = []
    for rep in range(args.repeats):
        for workers in (1, 2, 4):
            log(f"repeat {rep + 1}: {workers} worker(s) ...")
            runs.append(measure(data, y, workers, args))
    best = {p: max(r["samples_per_s"] for r in runs if r["workers"] == p) for p in (1, 2, 4)}

    print(f"n = {args.n}, m = {args.width}, batch {args.batch}, {args.steps} updates per run, best of {args.repeats}")
    print(f"triad bandwidth: 1 thread {bw[1]:.1f} GB/s, 2 threads {bw[2]:.1f} GB/s (ceiling {bw[2] / bw[1]:.2f}x)")
    print(f"{'workers':>7} {'samples/s':>10} {'vs 1':>6} {'staleness mean/max':>19} {'final loss':>11}")
    for p in (1, 2, 4):
        r = max((r for r in runs if r["workers"] == p), key=lambda r: r["samples_per_s"])
        stale = f"{r['staleness_mean']:.2f} / {r['staleness_max']}"
        print(f"{p:>7} {r['samples_per_s']:>10.0f} {r['samples_per_s'] / best[1]:>6.2f} {stale:>19} {r['loss']:>11.2f}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "machine": machine_info(), "triad_gbs": bw, "runs": runs}, indent=2))
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
