"""Where the AsynchronousTree beats the scan: queries, maintenance and whole steps, over m and Φ̄.

For m = 2^10 .. 2^20 (powers of 4) and fire fractions from the default Φ̄(sqrt(0.4 ln m))
down to 0.1% (and 0.01% for m >= 2^18; the shift set to reach them), with n = 64 points
(P is m · n · 4 bytes):

* queries (P ~ N(0, 1), float32), each from cold caches (a 64 MiB read evicts them first):
  the fired set alone by the tree (``query``, "query µs") and by NumPy
  (``flatnonzero(col > b)``) on a contiguous copy of the column (copied outside the timer),
  and their ratio when each call is repeated at once, its lines still cached ("warm ×");
  the fired set and the outputs by the tree (``tree_forward``, "tree µs") and by the
  engine's scan kernel (``forward_batch``) on the contiguous copy ("scan µs") and on the
  strided column of P ("strided µs"), which is what a step's gather reads. Also the reads
  (cache-line-sized: 16 bounds of an entered node, or a key confirmed) per reported neuron,
  and what this machine allows: "lines µs" is the time to fetch as many independent random
  cache lines of a 256 MiB array, from the same cold caches, as the query reads; "ideal ×"
  is the faster scan over the time to fetch just k such lines: what an index costing one
  line per reported neuron and nothing else would reach;
* steps: KronSGD with fired="scan" (its own window), "scan" with window 1, "tree" and "auto"
  on the same batches, in rounds: each trainer runs the round's chunk of steps in turn (the
  order rotates), so that the machine's load hits them alike; the median over rounds of the
  mean step time of a chunk (records folded at the end of each chunk, so the windowed scan
  pays its folds too), what "auto" chose and what the cost model predicted;
* maintenance: scan with window 1 and tree fold the very same records (the iterates are
  the same bits), plainly (``fold_records``) or keeping the tree valid (``fold_and_raise``):
  the difference of their fold times per step is what maintaining the tree costs.

Medians of repeats throughout: the machine is shared (the load average is recorded).
Usage: ``python benchmarks/bench_tree.py --quick`` or ``python benchmarks/bench_tree.py``;
writes bench-out/bench_tree.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from statistics import NormalDist

import numba
import numpy as np

import kronsgd
from kronsgd.engine import tree as T
from kronsgd.engine import tree_cost as TC
from kronsgd.kernels import step as K
from kronsgd.kernels import tree as TK
from kronsgd.model.net import default_shift, fire_fraction

FLUSH = np.ones(2**24, dtype=np.float32)  # 64 MiB: twice the last-level cache of the machine we measured on
DIMS = (4, 4)  # the step cost does not depend on d; small d keeps P0 cheap to make


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cold() -> None:
    FLUSH.sum()


def median_us(times) -> float:
    return 1e6 * statistics.median(times)


def fractions_for(m: int, quick: bool) -> list[float]:
    default = fire_fraction(default_shift(m))
    lower = (0.001,) if quick else (0.01, 0.003, 0.001) + ((0.0001,) if m >= 2**18 else ())
    return [default] + [f for f in lower if f < 0.9 * default]


# ---- what the machine allows ------------------------------------------------------------
WORDS = np.ones(2**26, np.uint32)  # 256 MiB, the size of P at m = 2^20


@numba.njit(cache=True)
def _random_lines(words, index):
    total = 0
    for i in index:  # independent loads: the processor overlaps as many misses as it can
        total += words[i]
    return total


def random_lines_us(count: int, rng, repeats: int = 9) -> float:
    """Median µs to fetch ``count`` random cache lines of WORDS, each run from cold caches."""
    index = rng.integers(0, WORDS.size // 16, size=max(1, int(round(count)))) * 16
    times = []
    for _ in range(repeats):
        cold()
        started = time.perf_counter()
        _random_lines(WORDS, index)
        times.append(time.perf_counter() - started)
    return median_us(times)


# ---- queries ---------------------------------------------------------------------------
def bench_queries(P: np.ndarray, fraction: float, args, rng) -> dict:
    m, n = P.shape
    shift = NormalDist().inv_cdf(1 - fraction)
    tree = T.FiredTree(P)
    a = np.ones((m, 1))
    fired_ptr, fired_rows, f = np.zeros(2, np.int64), np.zeros(m, np.int64), np.zeros((1, 1))
    waste, stats = np.zeros(n, np.int64), np.zeros(3, np.int64)
    frontier = tree._frontier[0]
    times: dict[str, list[float]] = {}
    reads = reported = 0

    def timed(name, call, warm=False):
        cold()
        for label in (name, name + "_warm") if warm else (name,):
            started = time.perf_counter()
            call()
            times.setdefault(label, []).append(time.perf_counter() - started)

    def query(one):
        args = (P, tree.bounds, tree.off, tree.start, tree.slack, a, one, shift, 1.0, fired_ptr, fired_rows, f,
                frontier, waste, tree.headroom[0], stats)  # fmt: skip
        return lambda: TK.tree_forward(*args)

    def scan(keys, one):
        return lambda: K.forward_batch(keys, a, one, shift, 1.0, fired_ptr, fired_rows, f)

    for _ in range(args.repeats):
        for j in rng.choice(n, size=args.columns, replace=False):
            col = np.ascontiguousarray(P[:, j : j + 1])  # (m, 1) the contiguous copy, outside the timers
            one = np.array([j], np.int64)
            timed("tree", query(one), warm=True)
            reads, reported = reads + int(stats[0]), reported + int(stats[1])
            timed("query", lambda j=j: TK.query(P, tree.bounds, tree.off, tree.start, j, shift, fired_rows, 0,
                                                frontier), warm=True)  # the fired set alone
            timed("scan_contiguous", scan(col, np.zeros(1, np.int64)), warm=True)
            timed("scan_numpy", lambda col=col: np.flatnonzero(col[:, 0] > shift), True)
            timed("scan_strided", scan(P, one))
    row = {f"{name}_us": median_us(values) for name, values in times.items()}
    row["k"] = reported / (args.repeats * args.columns)
    row["reads_per_reported"] = reads / max(1, reported)
    row["x_contiguous"] = row["scan_contiguous_us"] / row["tree_us"]
    row["x_numpy"] = row["scan_numpy_us"] / row["tree_us"]
    row["x_best_scan"] = min(row["scan_contiguous_us"], row["scan_numpy_us"]) / row["tree_us"]
    row["x_query_numpy"] = row["scan_numpy_us"] / row["query_us"]  # the fired set alone, both sides
    row["x_query_numpy_warm"] = row["scan_numpy_warm_us"] / row["query_warm_us"]  # the same call again
    row["lines_us"] = random_lines_us(reads / (args.repeats * args.columns), rng)
    row["k_lines_us"] = random_lines_us(row["k"], rng)
    row["x_ideal"] = min(row["scan_contiguous_us"], row["scan_numpy_us"]) / row["k_lines_us"]
    row["x_strided"] = row["scan_strided_us"] / row["tree_us"]
    return row


# ---- steps -----------------------------------------------------------------------------
def make_trainer(m, fraction, fired, window, data, y, args):
    net = kronsgd.TwoLayerNet(DIMS, width=m, shift=NormalDist().inv_cdf(1 - fraction), seed=args.seed)
    return kronsgd.KronSGD(net, data, y, lr=args.lr, batch_size=args.batch, seed=args.seed, gram="precomputed",
                           dtype=np.float32, window=window, fired=fired)  # fmt: skip


def run_chunk(trainer, chunk) -> float:
    """Mean ms per step of ``chunk``, with the records folded at the end (a windowed scan pays its folds)."""
    started = time.perf_counter()
    for batch in chunk:
        trainer._guarded_step(batch)
    trainer._flush()
    return 1e3 * (time.perf_counter() - started) / len(chunk)


def timed_folds(trainer) -> list[float]:
    """Wrap the (single) worker's fold so that its seconds add up in the returned one-item list."""
    spent, worker = [0.0], trainer.workers[0]
    fold = worker.fold

    def timed(upto):
        started = time.perf_counter()
        fold(upto)
        spent[0] += time.perf_counter() - started

    worker.fold = timed  # this instance only
    return spent


def bench_steps(m, fraction, args, rng) -> dict:
    data = kronsgd.KroneckerData([rng.standard_normal((args.n, 1, d)) for d in DIMS])
    y = rng.standard_normal(args.n)
    batches = [rng.choice(args.n, size=args.batch, replace=False) for _ in range(2 + args.repeats * args.steps)]
    configs = {"scan": ("scan", "auto"), "scan_w1": ("scan", 1), "tree": ("tree", 1), "auto": ("auto", "auto")}
    trainers = {name: make_trainer(m, fraction, *config, data, y, args) for name, config in configs.items()}
    spent = {name: timed_folds(trainer) for name, trainer in trainers.items()}
    for trainer in trainers.values():
        run_chunk(trainer, batches[:2])  # warm-up
    times = {name: [] for name in trainers}
    for r in range(args.repeats):  # rounds: every trainer runs the same chunk, in a rotating order
        chunk = batches[2 + r * args.steps : 2 + (r + 1) * args.steps]
        names = list(trainers)
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(run_chunk(trainers[name], chunk))
    row = {f"{name}_ms": statistics.median(values) for name, values in times.items()}
    row.update({f"{name}_fold_ms": 1e3 * s[0] / len(batches) for name, s in spent.items()})
    row["tree_vs_scan_rounds"] = statistics.median(t / s for t, s in zip(times["tree"], times["scan"], strict=True))
    row["auto_choice"] = trainers["auto"].fired_mode
    c = trainers["tree"].counters()
    row["run_reads_per_reported"] = c["tree_reads"] / max(1, c["tree_reported"])
    row["run_rebuilds"] = c["tree_rebuilds"]
    row["nnz_per_step"] = c["nnz"] / max(1, c["steps"])
    row["rows_raised_per_step"] = c["tree_rows_raised"] / max(1, c["steps"])
    row["scan_window"] = trainers["scan"].window_size
    del trainers
    # the same records are folded with window 1, plainly (scan) or keeping the tree valid (tree)
    row["fold_ms"], row["maintenance_ms"] = row["scan_w1_fold_ms"], row["tree_fold_ms"] - row["scan_w1_fold_ms"]
    best = min(row["scan_ms"], row["tree_ms"])
    row["auto_vs_best"] = row["auto_ms"] / best
    row["auto_choice_vs_best"] = row[f"{row['auto_choice']}_ms"] / best  # the choice, judged on the same runs
    predicted = TC.predicted_seconds(m, fraction, args.n, args.batch, 4, row["scan_window"])
    row["predicted_scan_ms"], row["predicted_tree_ms"] = 1e3 * predicted["scan"], 1e3 * predicted["tree"]
    return row


# ---- report ----------------------------------------------------------------------------
COLUMNS = [  # (header, key, format)
    ("m", "m", "d"), ("Φ̄ %", "fraction_pct", ".2f"), ("k", "k", ".0f"), ("lines/k", "reads_per_reported", ".1f"),
    ("query µs", "query_us", ".0f"), ("numpy µs", "scan_numpy_us", ".0f"), ("×numpy", "x_query_numpy", ".1f"),
    ("warm ×", "x_query_numpy_warm", ".1f"),
    ("tree µs", "tree_us", ".0f"), ("scan µs", "scan_contiguous_us", ".0f"), ("×scan", "x_contiguous", ".1f"),
    ("strided µs", "scan_strided_us", ".0f"), ("×strided", "x_strided", ".1f"),
    ("lines µs", "lines_us", ".0f"), ("ideal ×", "x_ideal", ".1f"),
    ("fold ms", "fold_ms", ".2f"), ("maint ms", "maintenance_ms", ".2f"),
    ("scan ms", "scan_ms", ".2f"), ("scan w1 ms", "scan_w1_ms", ".2f"), ("tree ms", "tree_ms", ".2f"),
    ("auto", "auto_choice", "s"), ("auto ms", "auto_ms", ".2f"), ("auto/best", "auto_choice_vs_best", ".2f"),
]


def table(rows) -> str:
    """A fixed-width text table of COLUMNS; a missing value prints as '-'."""
    width = [max(len(h), 8) for h, _, _ in COLUMNS]
    lines = ["  ".join(h.rjust(w) for (h, _, _), w in zip(COLUMNS, width, strict=True))]
    for row in rows:
        cells = [format(row[key], fmt) if key in row else "-" for _, key, fmt in COLUMNS]
        lines.append("  ".join(c.rjust(w) for c, w in zip(cells, width, strict=True)))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="m = 2^10 and 2^14, two fractions, few repeats")
    parser.add_argument("--log2m", type=int, nargs="+", default=[10, 12, 14, 16, 18, 20])
    parser.add_argument("--n", type=int, default=64, help="training points (columns of P)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=7, help="rounds of queries and of timed step chunks")
    parser.add_argument("--columns", type=int, default=8, help="columns queried per repeat")
    parser.add_argument("--steps", type=int, default=16, help="steps per timed chunk")
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-steps", action="store_true", help="queries only")
    parser.add_argument("--out", default="bench-out/bench_tree.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.log2m, args.repeats, args.columns, args.steps = [10, 14], 3, 4, 8
    rng = np.random.default_rng(args.seed)
    load_start = os.getloadavg()[0]
    calibration_started = time.perf_counter()
    calibration = TC.calibration()
    calibration_s = time.perf_counter() - calibration_started
    rows = []
    for log2m in args.log2m:
        m = 2**log2m
        P = rng.standard_normal((m, args.n), dtype=np.float32)  # (m, n)
        for fraction in fractions_for(m, args.quick):
            log(f"m = 2^{log2m}, fire fraction {100 * fraction:.2f}%, load {os.getloadavg()[0]:.1f}")
            row = {"m": m, "fraction": fraction, "fraction_pct": 100 * fraction}
            row.update(bench_queries(P, fraction, args, rng))
            if not args.no_steps:
                row.update(bench_steps(m, fraction, args, rng))
            rows.append(row)
        del P
    out = {
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "numpy": np.__version__,
                    "numba": numba.__version__, "loadavg_1min_start": load_start,
                    "loadavg_1min_end": os.getloadavg()[0]},
        "args": vars(args), "fanout": TK.FANOUT, "top": T.TOP, "calibration": calibration,
        "calibration_s": calibration_s, "rows": rows,
    }  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, default=float))
    print(table(rows))
    print("lines µs: as many random cache lines as a query reads, fetched from cold caches; ideal ×: the best "
          "scan over k such lines (one per reported neuron, nothing else)")  # fmt: skip
    print(f"load average {load_start:.1f} at start, {out['machine']['loadavg_1min_end']:.1f} at end; "
          f"calibration {calibration_s:.2f} s; written {args.out}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
