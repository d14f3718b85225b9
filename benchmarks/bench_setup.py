"""Set-up and prediction against the same dense work in NumPy/BLAS float32, side by side.

    python benchmarks/bench_setup.py              # rank 1 and 8, d = 2^10 ... 2^20, m = n = 256
    python benchmarks/bench_setup.py --quick      # d = 2^10 ... 2^14

For each rank R and d = d1 · d2 (two square-ish factors), on n random rank-R points:

- P0: ``net.preactivations(train, dtype=float32)`` (what KronSGD computes at set-up)
  against drawing W0 (m, d) in blocks with NumPy's default generator in float32 and one
  GEMM per block with the dense points X (n, d) already in memory;
- predict: the W0 part of prediction on n_test new points, the same way;
- Gram: ``data.gram()`` as the trainer calls it (float64) and ``data.gram(dtype=float32)``
  against X Xᵀ in float32.

``--step`` also times the on-the-fly step (n = 50,000 rank-1 points, d = 256 ⊗ 256, m = 1024,
batch 32, float32: the batch's Gram rows come from the factors every step) against the same
run's Gram-row GEMM (|S| x Σ d_l) @ (Σ d_l x n) in float32 plus a NumPy fold of its touched P
rows (P[rows] += C @ G_S, C the (rows, |S|) coefficients). The net there uses init="kronecker"
so that its set-up is short; the step does not depend on the init.

Each pair is measured in alternation, ``--repeats`` times, and the best of each kept (the
machine is shared). Writes bench-out/bench_setup.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from _common import log, machine_info
from kronsgd import KroneckerData, TwoLayerNet

_DENSE_BLOCK = 64  # neurons per block of the dense baseline's W0


def dims_of(log2d: int) -> tuple[int, int]:
    return (2 ** ((log2d + 1) // 2), 2 ** (log2d // 2))


def points(n: int, rank: int, dims, seed: int) -> KroneckerData:
    rng = np.random.default_rng(seed)
    return KroneckerData([rng.standard_normal((n, rank, d)) for d in dims]).normalized()


def photo_points(count=2048, size=128, rank=8):
    """The photos case: grayscale patches of scikit-learn's two sample photos, rank-8 factors, 80/20."""
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(0)
    patches = []
    for image in load_sample_images().images:
        gray = image.astype(np.float64).mean(axis=2) / 255.0  # (H, W)
        for _ in range(count // 2):
            r, c = rng.integers(0, gray.shape[0] - size), rng.integers(0, gray.shape[1] - size)
            patches.append(gray[r : r + size, c : c + size])
    X = np.array(patches)[rng.permutation(count)]  # (count, size, size)
    data = KroneckerData.from_dense(X, rank=rank).normalized()
    cut = int(0.8 * count)
    return data[np.arange(cut)], data[np.arange(cut, count)]


def dense_p0(X: np.ndarray, width: int, seed: int) -> np.ndarray:
    """The dense baseline: draw W0 in blocks (float32) and multiply each block with X (n, d)."""
    rng = np.random.default_rng(seed)
    out = np.empty((width, X.shape[0]), dtype=np.float32)  # (m, n)
    for start in range(0, width, _DENSE_BLOCK):
        W = rng.standard_normal((min(_DENSE_BLOCK, width - start), X.shape[1]), dtype=np.float32)  # (b, d)
        np.matmul(W, X.T, out=out[start : start + W.shape[0]])
    return out


CLOCK = time.perf_counter  # --cpu-time: time.process_time, with one thread everywhere


def best_of(pairs: dict, repeats: int) -> dict:
    """Run every callable of ``pairs`` in turn, ``repeats`` times; the best seconds of each."""
    best = {name: float("inf") for name in pairs}
    for _ in range(repeats):
        for name, fn in pairs.items():
            t0 = CLOCK()
            fn()
            best[name] = min(best[name], CLOCK() - t0)
    return best


def measure(log2d: int, rank: int, args, train=None, test=None) -> dict:
    dims = dims_of(log2d) if train is None else train.dims
    if train is None:
        train, test = points(args.n, rank, dims, 1), points(args.n_test, rank, dims, 2)
    X = train.to_dense().astype(np.float32)  # (n, d) the dense user's data
    Xt = test.to_dense().astype(np.float32)  # (n_test, d)
    net = TwoLayerNet(dims, args.width, seed=3)
    err = float("nan")
    if args.width * train.d * 8 <= 2**29:  # correctness first, where the dense float64 check fits
        ref = net.dense_weights() @ train.to_dense().T  # (m, n)
        p0 = net.preactivations(train, prepared=True, dtype=np.float32)
        err = float(np.abs(p0 - ref).max() / np.abs(ref).max())
        del ref, p0
    times = best_of(
        {
            "p0": lambda: net.preactivations(train, prepared=True, dtype=np.float32),
            "p0_dense": lambda: dense_p0(X, args.width, 0),
            "predict": lambda: net.preactivations(test, prepared=True, dtype=np.float32),
            "predict_dense": lambda: dense_p0(Xt, args.width, 0),
            "gram64": lambda: train.gram(),
            "gram32": lambda: train.gram(dtype=np.float32),
            "gram_dense": lambda: X @ X.T,
        },
        args.repeats,
    )
    row = {"log2d": log2d, "dims": list(dims), "rank": train.rank, "n": train.n, "n_test": test.n, "width": args.width}
    row.update({f"{k}_s": v for k, v in times.items()})
    row["p0_ratio"] = times["p0"] / times["p0_dense"]
    row["predict_ratio"] = times["predict"] / times["predict_dense"]
    row["gram64_ratio"] = times["gram64"] / times["gram_dense"]
    row["gram32_ratio"] = times["gram32"] / times["gram_dense"]
    row["setup_ratio"] = (times["p0"] + times["gram64"]) / (times["p0_dense"] + times["gram_dense"])
    row["p0_rel_error_float32"] = err
    return row


def step_against_gemm(args) -> dict:
    """Per-step time of the on-the-fly KronSGD step against its Gram-row GEMM plus a NumPy fold."""
    from kronsgd import KronSGD

    n, dims, m, batch = args.step_n, (256, 256), 1024, 32
    data = points(n, 1, dims, 5)
    y = np.sin(3.0 * data.factors[0][:, 0, 0] * n**0.5)  # (n,) any smooth targets
    net = TwoLayerNet(dims, m, seed=1, init="kronecker")
    t0 = time.perf_counter()
    trainer = KronSGD(net, data, y, lr=0.5, batch_size=batch, gram="on_the_fly", dtype=np.float32)
    setup = time.perf_counter() - t0
    trainer.run(20, log_every=0)  # warm
    c0 = trainer.counters()
    t0 = CLOCK()
    trainer.run(args.step_steps, log_every=0)
    step = (CLOCK() - t0) / args.step_steps
    c1 = trainer.counters()
    nnz = (c1["nnz"] - c0["nnz"]) / args.step_steps
    touched = int(round((c1["rows_touched"] - c0["rows_touched"]) / args.step_steps))
    F = np.concatenate([f[:, 0, :] for f in data.factors], axis=1).astype(np.float32)  # (n, Σ d_l)
    rng = np.random.default_rng(0)
    S = rng.choice(n, batch, replace=False)
    P = np.zeros((m, n), dtype=np.float32)  # (m, n)
    rows = np.sort(rng.choice(m, touched, replace=False))
    C = rng.standard_normal((touched, batch)).astype(np.float32)  # (rows, |S|)
    G = F[S] @ F.T  # (|S|, n)

    def fold():
        P[rows] += C @ G

    times = best_of({"gemm": lambda: F[S] @ F.T, "fold": fold}, args.repeats + 2)
    grams = best_of({"gram_rows": lambda: data.gram(rows=S)}, args.repeats + 2)
    return {
        "n": n, "dims": list(dims), "width": m, "batch": batch, "setup_s": setup, "step_ms": 1e3 * step,
        "nnz_per_step": nnz, "rows_touched_per_step": touched, "gemm_ms": 1e3 * times["gemm"],
        "numpy_fold_ms": 1e3 * times["fold"], "gram_rows_ms": 1e3 * grams["gram_rows"],
        "ratio": step / (times["gemm"] + times["fold"]),
    }  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="d = 2^10 ... 2^14 only")
    parser.add_argument("--max-log2d", type=int, default=20)
    parser.add_argument("--ranks", default="1,8")
    parser.add_argument("--n", type=int, default=256, help="training points")
    parser.add_argument("--n-test", type=int, default=128, help="points to predict")
    parser.add_argument("--width", type=int, default=256, help="hidden neurons m")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--step", action="store_true", help="also time the on-the-fly step (n = 50,000)")
    parser.add_argument("--step-n", type=int, default=50_000)
    parser.add_argument("--step-steps", type=int, default=60)
    parser.add_argument("--skip-grid", action="store_true")
    parser.add_argument("--photos", action="store_true", help="also the photos case (rank 8, m = 1024)")
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="one thread everywhere (BLAS and the W0 draws) and process CPU seconds: steadier on a busy machine",
    )
    parser.add_argument("--out", default="bench-out/bench_setup.json")
    args = parser.parse_args(argv)
    if args.cpu_time:
        global CLOCK
        import threadpoolctl

        import kronsgd.base.random as kr

        threadpoolctl.threadpool_limits(1)
        kr._THREADS, CLOCK = 1, time.process_time
    top = 14 if args.quick else args.max_log2d
    rows = []
    print(f"{'R':>2} {'d':>5} | {'P0 s':>7} {'dense':>7} {'x':>5} | {'pred s':>7} {'dense':>7} {'x':>5} | "
          f"{'G64 s':>7} {'G32 s':>7} {'dense':>7} {'x64':>5} {'x32':>5} | {'set-up x':>8}")  # fmt: skip
    for rank in [] if args.skip_grid else [int(r) for r in args.ranks.split(",")]:
        for log2d in range(10, top + 1, 2):
            log(f"rank {rank}, d = 2^{log2d} ...")
            r = measure(log2d, rank, args)
            rows.append(r)
            print(f"{rank:>2} 2^{log2d:<3} | {r['p0_s']:7.3f} {r['p0_dense_s']:7.3f} {r['p0_ratio']:5.2f} | "
                  f"{r['predict_s']:7.3f} {r['predict_dense_s']:7.3f} {r['predict_ratio']:5.2f} | "
                  f"{r['gram64_s']:7.3f} {r['gram32_s']:7.3f} {r['gram_dense_s']:7.3f} {r['gram64_ratio']:5.2f} "
                  f"{r['gram32_ratio']:5.2f} | {r['setup_ratio']:8.2f}", flush=True)  # fmt: skip
    if args.photos:
        log("photos ...")
        train, test = photo_points()
        r = measure(14, 8, argparse.Namespace(**{**vars(args), "width": 1024}), train, test)
        r["case"] = "photos"
        rows.append(r)
        print(f"photos: n = {train.n}, {test.n} to predict, 128 x 128, rank 8, m = 1024: P0 {r['p0_s']:.2f} s "
              f"vs {r['p0_dense_s']:.2f} s ({r['p0_ratio']:.2f}x); predict {r['predict_s']:.2f} vs "
              f"{r['predict_dense_s']:.2f} s ({r['predict_ratio']:.2f}x); G float64 {r['gram64_s']:.2f}, float32 "
              f"{r['gram32_s']:.2f} vs {r['gram_dense_s']:.2f} s; set-up {r['setup_ratio']:.2f}x")  # fmt: skip
    report = {"config": vars(args), "machine": machine_info(), "rows": rows}
    if args.step:
        log("on-the-fly step ...")
        st = report["step"] = step_against_gemm(args)
        print(f"on-the-fly step, n = {st['n']}, d = 256 x 256, m = {st['width']}, batch {st['batch']}: "
              f"{st['step_ms']:.1f} ms per step (gram rows {st['gram_rows_ms']:.1f} ms, float64); "
              f"GEMM {st['gemm_ms']:.1f} ms + NumPy fold {st['numpy_fold_ms']:.1f} ms "
              f"({st['rows_touched_per_step']} rows) -> {st['ratio']:.2f}x; set-up {st['setup_s']:.1f} s")  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
