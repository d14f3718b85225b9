"""Per-step wall time of KronSGD against dense SGD (DenseSGD, PyTorch) as d grows, in one run.

For each d = 2^k (two factors d1 = 2^ceil(k/2), d2 = d/d1, rank 1) it times, on the same
synthetic task, net width, batches and shift:

* KronSGD (float32, precomputed Gram): ``trainer._step(batch)`` is timed directly, with
  batches drawn up front from ``trainer.sampler``. ``run()`` is not used because it always
  logs the full training loss at the end of a call (an O(m·n) pass that is not part of a step);
* DenseSGD (float32), where X (n, d) and W (m, d) fit the memory budget;
* the same step in PyTorch (float32, 2 threads): autograd + torch.optim.SGD where W and its
  gradient fit, else a manual in-place update (W.addmm_) without autograd, labelled "manual".
  The dense engines get x_S materialised from the factors for the batch only, outside the timer.

Each engine runs 2 warm-up steps, then times every step with perf_counter: dense engines
report the median; KronSGD the median over its update windows of the mean step time in a
window (a windowed trainer folds deferred updates into P every `window` steps, so a per-step
median would hide the fold).
A single-threaded numba triad (a = b + s·c) gives the reference memory bandwidth, from which
each d gets the KronSGD step's bound: P rows written per step (``rows_folded`` if the trainer
counts it, else ``rows_touched``) × n × 4 bytes × 2 (read + write).
Usage: ``python benchmarks/bench_step.py --quick`` (smoke test) or ``--max-log2d 16``.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

import kronsgd
from _common import MIB, log, machine_info, triad  # a sibling module: this folder is on sys.path
from kronsgd.base.memory import available_bytes
from kronsgd.cli.demo import synthetic_task

WARMUP = 2


# ---- engines ---------------------------------------------------------------------------
def step_times_ms(step, items, warmup=WARMUP) -> list[float]:
    """Run step(item) for every item; ms of each step after the first ``warmup``."""
    times = []
    for k, item in enumerate(items):
        t0 = time.perf_counter()
        step(item)
        if k >= warmup:
            times.append(1e3 * (time.perf_counter() - t0))
    return times


def bench_kron(data, y, dims, args) -> tuple[dict, list]:
    net = kronsgd.TwoLayerNet(dims, width=args.width, seed=args.seed)
    t0 = time.perf_counter()
    trainer = kronsgd.KronSGD(net, data, y, args.lr, args.batch, args.seed, "precomputed", np.float32)
    init_s = time.perf_counter() - t0
    # A windowed trainer folds its pending updates into P every `window` steps, so step times are
    # bimodal: the headline is the median over windows of the mean step time within a window
    # (any `window` consecutive steps hold exactly one fold), robust to a preempted step.
    window = getattr(trainer, "window_size", 1)
    steps = -(-args.steps // window) * window
    batches = [trainer.sampler.next() for _ in range(WARMUP + steps)]
    for batch in batches[:WARMUP]:
        trainer._step(batch)
    before = trainer.counters()
    times = step_times_ms(trainer._step, batches[WARMUP:], warmup=0)  # the counters cover the same steps
    after = trainer.counters()
    keys = [k for k in ("nnz", "rows_touched", "rows_folded") if k in after]
    row = {f"{k}_per_step": (after[k] - before[k]) / steps for k in keys}
    per_window = [statistics.fmean(times[k : k + window]) for k in range(0, steps, window)]
    return {"kron_init_s": init_s, "kron_ms": statistics.median(per_window), "kron_mean_ms": statistics.fmean(times),
            "kron_step_median_ms": statistics.median(times),
            "kron_steps": steps, "window": window, **row, "shift": net.shift}, batches


def dense_steps(d: int, args) -> int:
    return args.dense_steps or max(3, min(30, 2**19 // d))  # 30 up to d = 2^14, then fewer


def bench_dense(data, y, dims, batches, args) -> dict:
    m, n, d = args.width, data.n, math.prod(dims)
    # float64 X and W are materialised, then cast: transient (n + m)·d·12 bytes, resident ·4.
    need = (n + m) * d * 12
    if need > 0.5 * available_bytes():
        return {"dense_note": f"skipped: X and W need ~{need / 2**30:.1f} GiB while building"}
    net = kronsgd.TwoLayerNet(dims, width=m, seed=args.seed)
    t0 = time.perf_counter()
    try:
        trainer = kronsgd.DenseSGD(net, data, y, args.lr, args.batch, seed=args.seed, dtype=np.float32)
    except kronsgd.MemoryBudgetError as err:
        return {"dense_note": f"skipped: {err}"}
    init_s = time.perf_counter() - t0
    times = step_times_ms(trainer._step, batches[: WARMUP + dense_steps(d, args)])
    del trainer
    return {"dense_init_s": init_s, "dense_ms": statistics.median(times)}


def bench_torch(unit, y, dims, shift, batches, args) -> dict:
    m, d = args.width, math.prod(dims)
    free = available_bytes()
    if 2 * m * d * 4 <= 0.6 * free:
        variant = "autograd"
    elif m * d * 4 <= 0.6 * free:
        variant = "manual"
    else:
        return {"torch_note": f"skipped: W alone needs {m * d * 4 / 2**30:.1f} GiB"}
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(args.seed)
    W = torch.randn(m, d, generator=gen, dtype=torch.float32)  # (m, d), same law as the net's W0
    a = torch.from_numpy(np.asarray(kronsgd.TwoLayerNet(dims, m, seed=args.seed).a[:, 0], np.float32))  # (m,)
    inv_sqrt_m, lr = 1.0 / math.sqrt(m), args.lr
    opt = torch.optim.SGD([W.requires_grad_()], lr=lr) if variant == "autograd" else None
    init_s = time.perf_counter() - t0

    def step(batch):
        x = torch.from_numpy(unit[batch].to_dense().astype(np.float32))  # (B, d), untimed
        yb = torch.from_numpy(y[batch].astype(np.float32))  # (B,)
        t0 = time.perf_counter()
        if variant == "autograd":
            h = torch.relu(x @ W.T - shift)  # (B, m)
            f = h @ a * inv_sqrt_m  # (B,)
            loss = 0.5 * ((f - yb) ** 2).sum()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        else:
            with torch.no_grad():
                z = x @ W.T  # (B, m)
                fired = z > shift
                f = torch.where(fired, z - shift, 0.0) @ a * inv_sqrt_m  # (B,)
                coef = (f - yb)[:, None] * a[None, :] * inv_sqrt_m * fired  # (B, m) dL/dz
                W.addmm_(coef.T, x, alpha=-lr)  # (m, d)
        return time.perf_counter() - t0

    times = [step(b) for b in batches[: WARMUP + dense_steps(d, args)]][WARMUP:]
    return {"torch_variant": variant, "torch_init_s": init_s, "torch_ms": 1e3 * statistics.median(times)}


def bench_one(log2d: int, bandwidth_gbs: float, args) -> dict:
    d1 = 2 ** math.ceil(log2d / 2)
    dims = (d1, 2**log2d // d1)
    row = {"log2d": log2d, "d": math.prod(dims), "dims": list(dims)}
    data, y = synthetic_task(args.n, dims, seed=args.seed)
    log(f"d = 2^{log2d} {dims}: KronSGD init (O(m·n·d)) ...")
    kron, batches = bench_kron(data, y, dims, args)
    row.update(kron)
    log(f"  KronSGD {kron['kron_ms']:.2f} ms/step (init {kron['kron_init_s']:.1f} s); DenseSGD ...")
    gc.collect()
    # each P row written per step (folded, or touched when P is updated eagerly) is read and written once
    bound_bytes = row.get("rows_folded_per_step", row["rows_touched_per_step"]) * args.n * 4 * 2
    row["bound_ms"] = 1e3 * bound_bytes / (bandwidth_gbs * 1e9)
    row["kron_over_bound"] = row["kron_ms"] / row["bound_ms"] if row["bound_ms"] else math.nan
    row.update(bench_dense(data, y, dims, batches, args))
    gc.collect()
    log(f"  DenseSGD {row.get('dense_ms', math.nan):.1f} ms/step; PyTorch ...")
    unit = data.normalized()  # the points KronSGD trains on, still as factors
    row.update(bench_torch(unit, y, dims, kron["shift"], batches, args))
    gc.collect()
    row["dense_steps"] = dense_steps(row["d"], args)
    row["torch_over_kron"] = row.get("torch_ms", math.nan) / row["kron_ms"]
    return row


# ---- report ----------------------------------------------------------------------------
def summarize(rows: list[dict]) -> dict:
    kron = [r["kron_ms"] for r in rows]
    ratio_at = {r["log2d"]: r["torch_over_kron"] for r in rows}
    timed = [r for r in rows if "torch_ms" in r]
    # crossover: the smallest d from which KronSGD is faster at every larger d (None: faster everywhere)
    torch_wins = [k for k, r in enumerate(timed) if r["torch_ms"] < r["kron_ms"]]
    crossover = None
    if torch_wins:
        after = torch_wins[-1] + 1
        crossover = timed[after]["d"] if after < len(timed) else "beyond the grid"
    return {
        "kron_max_over_min": max(kron) / min(kron),
        "torch_over_kron_2^16": ratio_at.get(16),
        "torch_over_kron_2^20": ratio_at.get(20),
        "crossover_d": crossover,
    }


def print_table(rows: list[dict], summary: dict, tri: dict) -> None:
    def num(r, key, fmt):
        return format(r[key], fmt) if key in r and not math.isnan(r[key]) else "-"

    print(f"triad bandwidth ({tri['array_mib']:.0f} MiB arrays, best of {tri['reps']}): numba 1 thread "
          f"{tri['numba_1thread_gbs']:.1f} GB/s (reference); NumPy {tri['numpy_triad_gbs']:.1f} GB/s as a triad, "
          f"{tri['numpy_traffic_gbs']:.1f} GB/s of traffic")
    head = ("d", "dims", "kron ms", "dense-np ms", "torch ms", "torch/kron", "nnz/step", "rows", "folded",
            "bound ms", "kron/bound")
    widths = (6, 10, 8, 12, 10, 11, 9, 6, 7, 9, 10)
    print(" ".join(h.rjust(w) for h, w in zip(head, widths, strict=True)))
    for r in rows:
        tag = {"manual": "m", "autograd": ""}.get(r.get("torch_variant"), "")
        cells = (f"2^{r['log2d']}", "x".join(map(str, r["dims"])), num(r, "kron_ms", ".3f"),
                 num(r, "dense_ms", ".1f"), num(r, "torch_ms", ".1f") + tag, num(r, "torch_over_kron", ".0f"),
                 num(r, "nnz_per_step", ".0f"), num(r, "rows_touched_per_step", ".0f"),
                 num(r, "rows_folded_per_step", ".0f"), num(r, "bound_ms", ".3f"), num(r, "kron_over_bound", ".2f"))
        print(" ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)))
    for r in rows:
        for key in ("dense_note", "torch_note"):
            if key in r:
                print(f"  d = 2^{r['log2d']}: {key.split('_')[0]} {r[key]}")
    if any(r.get("torch_variant") == "manual" for r in rows):
        print("  m = PyTorch manual update (W.addmm_, no autograd): W's gradient would not fit in memory")
    fmt = lambda v, target: "-" if v is None or math.isnan(v) else f"{v:.0f} (target >= {target})"  # noqa: E731
    print(f"summary: KronSGD max/min step time {summary['kron_max_over_min']:.2f} (target <= 1.3); "
          f"torch/kron at d=2^16 {fmt(summary['torch_over_kron_2^16'], 100)}, "
          f"at d=2^20 {fmt(summary['torch_over_kron_2^20'], 500)}; "
          f"crossover d (torch faster below): {summary['crossover_d'] or 'none (KronSGD faster at every d)'}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=4096, help="training points")
    p.add_argument("--width", type=int, default=2048, help="hidden neurons m")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-log2d", type=int, default=10)
    p.add_argument("--max-log2d", type=int, default=20)
    p.add_argument("--steps", type=int, default=128, help="timed KronSGD steps per d (rounded up to whole windows)")
    p.add_argument("--dense-steps", type=int, default=0,
                   help="timed steps of the dense engines; 0: fewer as d grows (>= 3)")
    p.add_argument("--triad-mib", type=int, default=256, help="size of each triad array")
    p.add_argument("--json", default="bench-out/bench_step.json")
    p.add_argument("--quick", action="store_true", help="small grid for a smoke test")
    args = p.parse_args(argv)
    if args.quick:  # n, width, min/max log2 d, steps, dense steps, triad MiB
        args.n, args.width, args.min_log2d, args.max_log2d, args.steps, args.dense_steps, args.triad_mib = (
            512, 256, 8, 10, 10, 3, 64)
    torch.set_num_threads(2)

    load_before = os.getloadavg()[0]  # other processes on these 2 cores skew every number below
    log(f"triad bandwidth ({args.triad_mib} MiB arrays) ...")
    tri = triad(args.triad_mib * MIB, reps=3 if args.quick else 6)
    rows = [bench_one(k, tri["numba_1thread_gbs"], args) for k in range(args.min_log2d, args.max_log2d + 1)]
    summary = summarize(rows)
    print_table(rows, summary, tri)
    if load_before > 0.5:  # measured before we start: other processes, not this one
        print(f"note: the 1-min load average was {load_before:.2f} before the run: other processes skew the numbers")
    report = {
        "machine": {**machine_info(), "kronsgd": kronsgd.__version__, "loadavg_1min_before": load_before},
        "args": vars(args),
        "triad": tri,
        "rows": rows,
        "summary": summary,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2))
    log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
