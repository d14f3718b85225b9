"""Where the finite net overtakes its kernel limit: KronNTKRegressor against KronMLPRegressor over n.

Synthetic rank-1 points x = u ⊗ v at d = 8 · 8 = 64 (u, v standard normal) with a
nonlinear target of one direction, y = sin(2 t) + t² / 2, t = 8 <u, a> <v, c> / (|u| |v|)
(unit a, c: t = √d <x / |x|, a ⊗ c>, of unit variance), on
n training points and the same 1,000 test points. Both estimators with default parameters
(the net with random_state=0; its default width 1024, 20 epochs), timed from ``fit`` to the
end of ``predict``; the kernel's alpha="auto" (an eigendecomposition) up to ``--auto-max``
and a float α beyond (the one chosen at the largest "auto" n, Cholesky). Test error is
1 - R². The estimators run one after the other in one process at each n (the load
average is recorded): their times compare as ratios.

Usage: ``python benchmarks/bench_crossover.py`` (several minutes) or ``--quick``; prints a
table, writes bench-out/bench_crossover.json and the picture docs/crossover.png.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from _common import log, machine_info
from kronsgd import KroneckerData, KronMLPRegressor, KronNTKRegressor

DIMS = (8, 8)


def task(n: int, seed: int):
    """(KroneckerData, y (n,)) of the synthetic rank-1 regression task."""
    rng = np.random.default_rng(seed)
    u, v = rng.standard_normal((n, DIMS[0])), rng.standard_normal((n, DIMS[1]))
    direction = np.random.default_rng(12345)  # the same target for every n
    a, c = direction.standard_normal(DIMS[0]), direction.standard_normal(DIMS[1])
    a, c = a / np.linalg.norm(a), c / np.linalg.norm(c)
    t = 8.0 * (u @ a) * (v @ c) / (np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1))  # √d <x̂, a ⊗ c>
    return KroneckerData([u, v]), np.sin(2 * t) + 0.5 * t**2


def run(estimator, train, test) -> dict:
    (X, y), (X_test, y_test) = train, test
    started = time.perf_counter()
    estimator.fit(X, y)
    predicted = estimator.predict(X_test)
    seconds = time.perf_counter() - started
    error = float(np.sum((predicted - y_test) ** 2) / np.sum((y_test - y_test.mean()) ** 2))
    return {"seconds": seconds, "test_error": error, "load": os.getloadavg()[0]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n = 500, 1000 only")
    parser.add_argument("--sizes", default="1000,2000,4000,8000")
    parser.add_argument("--auto-max", type=int, default=4000, help="largest n of the kernel's alpha='auto'")
    parser.add_argument("--out", default="bench-out/bench_crossover.json")
    parser.add_argument("--picture", default="docs/crossover.png")
    parser.add_argument("--replot", metavar="JSON", help="only draw the picture again from a saved run")
    args = parser.parse_args(argv)
    if args.replot:
        rows = json.loads(Path(args.replot).read_text())["rows"]
        for r in rows:  # runs saved before the flag was recorded used the default --auto-max
            r["kernel"].setdefault("auto", r["n"] <= 4000)
        picture(rows, Path(args.picture))
        return 0
    sizes = [500, 1000] if args.quick else [int(s) for s in args.sizes.split(",")]
    test = task(1000, seed=999)
    rows, alpha = [], "auto"
    for n in sizes:
        train = task(n, seed=n)
        kernel = KronNTKRegressor(alpha="auto" if n <= args.auto_max else alpha)
        row = {"n": n, "kernel": run(kernel, train, test), "net": run(KronMLPRegressor(random_state=0), train, test)}
        row["kernel"]["alpha"], row["kernel"]["auto"] = kernel.alpha_, n <= args.auto_max
        if n <= args.auto_max:
            alpha = kernel.alpha_
        rows.append(row)
        log("  " + json.dumps(row))
    print(f"{'n':>6} {'kernel s':>9} {'kernel 1-R²':>11} {'net s':>8} {'net 1-R²':>9} {'net / kernel time':>17}")
    for r in rows:
        k, m = r["kernel"], r["net"]
        print(f"{r['n']:>6} {k['seconds']:>9.2f} {k['test_error']:>11.4f} {m['seconds']:>8.2f} "
              f"{m['test_error']:>9.4f} {m['seconds'] / k['seconds']:>16.2f}x")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "dims": DIMS, "machine": machine_info()}, indent=1))
    picture(rows, Path(args.picture))
    log(f"wrote {out} and {args.picture}")
    return 0


def picture(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["n"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label, style in (("kernel", "KronNTKRegressor (kernel limit)", "o-"), ("net", "KronMLPRegressor", "s-")):
        left.plot(n, [r[key]["seconds"] for r in rows], style, label=label)
        right.plot(n, [r[key]["test_error"] for r in rows], style, label=label)
    fixed = [r for r in rows if not r["kernel"]["auto"]]
    if fixed:  # beyond --auto-max the kernel takes a float α: one Cholesky instead of an eigendecomposition
        left.plot([r["n"] for r in fixed], [r["kernel"]["seconds"] for r in fixed], "o", mfc="white",
                  color="C0", label="kernel, float α (Cholesky)")
    left.set(xscale="log", yscale="log", xlabel="training points n", ylabel="fit + predict (s)", title="time")
    right.set(xscale="log", xlabel="training points n", ylabel="test 1 - R²", title="test error")
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("Kernel limit vs finite net, rank-1 points at d = 64 (defaults)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
