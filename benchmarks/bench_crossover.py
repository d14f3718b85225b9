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

With ``--data digits``: scikit-learn's digits (8 × 8 images, dense X read through the
estimators' defaults), the one seeded 75/25 split of ``ntk_defaults.py``; the first n of a
seeded permutation of its 1,347 training points for each n, and its 450 test points.
KronNTKClassifier and KronMLPClassifier with defaults (the net with random_state=0) and
scikit-learn's MLPClassifier (defaults, random_state=0) as a reference; test error is
1 - accuracy.

With ``--data synthetic16``: the same task at d = 256 · 256 = 2^16 (t scaled by √d), n = 2,000
and 8,000 by default, alpha="auto" only at the first n and the α it chose above.

Usage: ``python benchmarks/bench_crossover.py`` (several minutes) or ``--quick``; prints a
table, writes bench-out/bench_crossover.json and the picture docs/crossover.png (with
``--data digits``: bench-out/bench_crossover_digits.json and docs/crossover_digits.png; with
``--data synthetic16``: ..._synthetic16.json and .png).
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np

from _common import log, machine_info
from kronsgd import KroneckerData, KronMLPClassifier, KronMLPRegressor, KronNTKClassifier, KronNTKRegressor

DIMS = (8, 8)
DIMS16 = (256, 256)  # --data synthetic16: d = 2^16
LABELS = {"kernel": "KronNTK* (kernel limit)", "net": "KronMLP*", "sklearn": "sklearn MLPClassifier"}


def task(n: int, seed: int, dims: tuple[int, int] = DIMS):
    """(KroneckerData, y (n,)) of the synthetic rank-1 regression task at d = dims[0] · dims[1]."""
    rng = np.random.default_rng(seed)
    u, v = rng.standard_normal((n, dims[0])), rng.standard_normal((n, dims[1]))
    direction = np.random.default_rng(12345)  # the same target for every n
    a, c = direction.standard_normal(dims[0]), direction.standard_normal(dims[1])
    a, c = a / np.linalg.norm(a), c / np.linalg.norm(c)
    scale = np.sqrt(dims[0] * dims[1])  # √d: t of unit variance at any d
    t = scale * (u @ a) * (v @ c) / (np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1))  # √d <x̂, a ⊗ c>
    return KroneckerData([u, v]), np.sin(2 * t) + 0.5 * t**2


def digits_split(seed: int = 0):
    """((X (1347, 64), y), (X_test (450, 64), y_test)): the split of ntk_defaults.py."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=seed)
    return (X_train, y_train), (X_test, y_test)


def run(estimator, train, test) -> dict:
    """Fit + predict seconds and test error: 1 - R² for a regressor, 1 - accuracy for a classifier."""
    (X, y), (X_test, y_test) = train, test
    started = time.perf_counter()
    with warnings.catch_warnings():  # scikit-learn's MLP warns at its default max_iter; it is run as is
        warnings.simplefilter("ignore")
        estimator.fit(X, y)
    predicted = estimator.predict(X_test)
    seconds = time.perf_counter() - started
    if getattr(estimator, "_estimator_type", None) == "classifier" or hasattr(estimator, "classes_"):
        error = float(np.mean(predicted != y_test))
    else:
        error = float(np.sum((predicted - y_test) ** 2) / np.sum((y_test - y_test.mean()) ** 2))
    return {"seconds": seconds, "test_error": error, "load": os.getloadavg()[0]}


def synthetic_rows(sizes: list[int], auto_max: int, dims: tuple[int, int] = DIMS) -> list[dict]:
    test = task(1000, seed=999, dims=dims)
    rows, alpha = [], "auto"
    for n in sizes:
        train = task(n, seed=n, dims=dims)
        kernel = KronNTKRegressor(alpha="auto" if n <= auto_max else alpha)
        row = {"n": n, "kernel": run(kernel, train, test), "net": run(KronMLPRegressor(random_state=0), train, test)}
        row["kernel"]["alpha"], row["kernel"]["auto"] = kernel.alpha_, n <= auto_max
        if n <= auto_max:
            alpha = kernel.alpha_
        rows.append(row)
        log("  " + json.dumps(row))
    return rows


def digits_rows(sizes: list[int]) -> list[dict]:
    from sklearn.neural_network import MLPClassifier

    (X, y), test = digits_split()
    order = np.random.default_rng(0).permutation(len(y))  # nested subsets: the first n points
    rows = []
    for n in sizes:
        train = (X[order[:n]], y[order[:n]])
        kernel = KronNTKClassifier()
        row = {"n": n, "kernel": run(kernel, train, test), "net": run(KronMLPClassifier(random_state=0), train, test),
               "sklearn": run(MLPClassifier(random_state=0), train, test)}
        row["kernel"]["alpha"], row["kernel"]["auto"] = kernel.alpha_, True
        rows.append(row)
        log("  " + json.dumps(row))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=("synthetic", "synthetic16", "digits"), default="synthetic")
    parser.add_argument("--quick", action="store_true", help="n = 500, 1000 only")
    parser.add_argument("--sizes", help="default 1000,2000,4000,8000 (digits: 200,400,800,1347)")
    parser.add_argument("--auto-max", type=int, default=4000, help="largest n of the kernel's alpha='auto'")
    parser.add_argument("--out", help="default bench-out/bench_crossover.json (digits: ..._digits.json)")
    parser.add_argument("--picture", help="default docs/crossover.png (digits: docs/crossover_digits.png)")
    parser.add_argument("--replot", metavar="JSON", help="only draw the picture again from a saved run")
    args = parser.parse_args(argv)
    digits = args.data == "digits"
    dims = DIMS16 if args.data == "synthetic16" else DIMS
    suffix = {"digits": "_digits", "synthetic16": "_synthetic16"}.get(args.data, "")
    out, picture_path = Path(args.out or f"bench-out/bench_crossover{suffix}.json"), Path(
        args.picture or f"docs/crossover{suffix}.png"
    )
    if args.replot:
        saved = json.loads(Path(args.replot).read_text())
        for r in saved["rows"]:  # runs saved before the flag was recorded used the default --auto-max
            r["kernel"].setdefault("auto", r["n"] <= 4000)
        picture(saved["rows"], picture_path, saved.get("data", "synthetic"))
        return 0
    default = {"digits": "200,400,800,1347", "synthetic16": "2000,8000"}.get(args.data, "1000,2000,4000,8000")
    sizes = [500, 1000] if args.quick else [int(s) for s in (args.sizes or default).split(",")]
    if args.data == "synthetic16" and args.auto_max == 4000:  # "auto" only at the first n: too slow above
        args.auto_max = sizes[0]
    rows = digits_rows(sizes) if digits else synthetic_rows(sizes, args.auto_max, dims)
    keys = [k for k in LABELS if k in rows[0]]
    error = "1-acc" if digits else "1-R²"
    header = " ".join(f"{k + ' s':>10} {k + ' ' + error:>14}" for k in keys)
    print(f"{'n':>6} {header} {'net / kernel time':>17}")
    for r in rows:
        cells = " ".join(f"{r[k]['seconds']:>10.2f} {r[k]['test_error']:>14.4f}" for k in keys)
        print(f"{r['n']:>6} {cells} {r['net']['seconds'] / r['kernel']['seconds']:>16.2f}x")
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"dims": dims, "data": args.data, "machine": machine_info()}
    out.write_text(json.dumps({"rows": rows} | meta, indent=1))
    picture(rows, picture_path, args.data)
    log(f"wrote {out} and {picture_path}")
    return 0


def picture(rows: list[dict], path: Path, data: str = "synthetic") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["n"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for key, style in zip(LABELS, ("o-", "s-", "^:"), strict=True):
        if key in rows[0]:
            left.plot(n, [r[key]["seconds"] for r in rows], style, label=LABELS[key])
            right.plot(n, [r[key]["test_error"] for r in rows], style, label=LABELS[key])
    fixed = [r for r in rows if not r["kernel"]["auto"]]
    if fixed:  # beyond --auto-max the kernel takes a float α: one Cholesky instead of an eigendecomposition
        left.plot([r["n"] for r in fixed], [r["kernel"]["seconds"] for r in fixed], "o", mfc="white",
                  color="C0", label="kernel, float α (Cholesky)")
    left.set(xscale="log", yscale="log", xlabel="training points n", ylabel="fit + predict (s)", title="time")
    ylabel = "test 1 - accuracy" if data == "digits" else "test 1 - R²"
    right.set(xscale="log", xlabel="training points n", ylabel=ylabel, title="test error")
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    title = {"digits": "digits, 8 × 8 images", "synthetic16": "rank-1 points at d = 2^16 (256 ⊗ 256)"}.get(
        data, "rank-1 points at d = 64")
    fig.suptitle(f"Kernel limit vs finite net, {title} (defaults)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
