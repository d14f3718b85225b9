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

from _common import log, machine_info, save_figure
from kronsgd import (
    KroneckerData,
    KronMLPClassifier,
    KronMLPRegressor,
    KronNTKClassifier,
    KronNTKRegressor,
    MemoryBudgetError,
)

DIMS = (8, 8)
DIMS16 = (256, 256)  # --data synthetic16: d = 2^16
LABELS = {"kernel": "KronNTK* (kernel limit)", "net": "KronMLP*", "tuned": "KronMLP*, tuned",
          "sklearn": "sklearn MLPClassifier", "torch": "same net, dense PyTorch"}
TUNED_STEPS = 20_000  # the tuned net: at least this many steps (the photos reach ~0.95 there), float32, 2 workers
TUNED_BUDGET = 18 * 2**30  # ... and a budget whose quarter holds the float32 Gram matrix at n = 32,000


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


def synthetic_rows(sizes: list[int], auto_max: int, dims: tuple[int, int] = DIMS, alpha="auto") -> list[dict]:
    test = task(1000, seed=999, dims=dims)
    rows = []
    for n in sizes:
        train = task(n, seed=n, dims=dims)
        kernel = KronNTKRegressor(alpha="auto" if n <= auto_max else alpha)
        row = {"n": n}
        try:
            row["kernel"] = run(kernel, train, test) | {"alpha": kernel.alpha_, "auto": n <= auto_max}
        except MemoryBudgetError as exc:  # the kernel's n² beyond this machine: the net alone
            row["kernel_refused"] = str(exc)
            log(f"  kernel refused at n = {n}: {exc}")
        del kernel
        row["net"] = run(KronMLPRegressor(random_state=0), train, test)
        if n <= auto_max:
            alpha = row["kernel"]["alpha"]
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


def tuned_net(n: int, batch: int = 32):
    """KronMLPClassifier tuned for the photos: float32, two asynchronous workers, >= TUNED_STEPS steps,
    and a memory budget that keeps the float32 Gram matrix (4 GiB at n = 32,000: computing its
    rows every step costs n · d multiply-adds a point, hours at that n)."""
    epochs = max(20, -(-TUNED_STEPS * batch // n))
    return KronMLPClassifier(random_state=0, dtype="float32", workers=2, max_iter=epochs, batch_size=batch,
                             memory_budget=TUNED_BUDGET)  # fmt: skip


def torch_run(train, test, epochs: int = 20) -> dict:
    """The same net and step rule in dense PyTorch float32 (bench_e2e.torch_curve), fit + predict timed."""
    from bench_e2e import torch_curve

    (X, y), (X_test, y_test) = train, test
    started = time.perf_counter()
    result = torch_curve((X, X_test, y, y_test), width=1024, seed=0, epochs=epochs)
    return {"seconds": time.perf_counter() - started, "test_error": 1.0 - result["accuracy"],
            "load": os.getloadavg()[0]}  # fmt: skip


def photos_rows(sizes: list[int], auto_max: int, dense_max: int, only: set[str]) -> list[dict]:
    """The photos patches split by place (_photos.photos_spatial), 1,000 test patches; the
    estimators named in ``only``."""
    from sklearn.neural_network import MLPClassifier

    from _photos import photos_spatial

    rows, alpha = [], "auto"
    for n in sizes:
        X, X_test, y, y_test = photos_spatial(n, 1000, seed=0)
        train, test = (X, y), (X_test, y_test)
        del X, X_test
        # Half the free memory (the default budget) is short of one 32,000² float64 matrix once X
        # (4 GiB) is loaded: the run grants 14 GiB, as a user of this 24 GiB machine would.
        budget = None if n < 20_000 else 14 * 2**30
        row = {"n": n}
        if "kernel" in only:
            kernel = KronNTKClassifier(alpha="auto" if n <= auto_max else alpha, memory_budget=budget)
            row["kernel"] = run(kernel, train, test)
            row["kernel"] |= {"alpha": kernel.alpha_, "auto": n <= auto_max, "rank": int(kernel.rank_)}
            if n <= auto_max:
                alpha = kernel.alpha_
            del kernel
            log("  kernel " + json.dumps(row["kernel"]))
        if "net" in only:
            row["net"] = run(KronMLPClassifier(random_state=0), train, test)
            log("  net " + json.dumps(row["net"]))
        if "tuned" in only:
            tuned = tuned_net(n)
            row["tuned"] = run(tuned, train, test) | {"epochs": tuned.max_iter}
            log("  tuned " + json.dumps(row["tuned"]))
        if n <= dense_max and only & {"torch", "sklearn"}:  # dense baselines: X (n, 16384) through every epoch
            if "torch" in only:
                row["torch"] = torch_run(train, test)
                log("  torch " + json.dumps(row["torch"]))
            if "sklearn" in only:
                row["sklearn"] = run(MLPClassifier(random_state=0), train, test)
                log("  sklearn " + json.dumps(row["sklearn"]))
        rows.append(row)
        log("  " + json.dumps(row))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=("synthetic", "synthetic16", "digits", "photos"), default="synthetic")
    parser.add_argument("--quick", action="store_true", help="n = 500, 1000 only")
    parser.add_argument("--sizes", help="default 1000,2000,4000,8000 (digits: 200,400,800,1347)")
    parser.add_argument("--auto-max", type=int, default=4000, help="largest n of the kernel's alpha='auto'")
    parser.add_argument("--estimators", default="kernel,net,tuned,torch,sklearn",
                        help="photos: which to run (kernel, net, tuned, torch, sklearn)")
    parser.add_argument("--alpha", type=float, help="synthetic: the kernel's float α beyond --auto-max (default: "
                        "the one alpha='auto' chose at the largest n up to it)")
    parser.add_argument("--dense-max", type=int, default=8000, help="photos: largest n of PyTorch and scikit-learn")
    parser.add_argument("--out", help="default bench-out/bench_crossover.json (digits: ..._digits.json)")
    parser.add_argument("--picture", help="default docs/crossover.png (digits: docs/crossover_digits.png)")
    parser.add_argument("--replot", metavar="JSON", help="only draw the picture again from a saved run")
    args = parser.parse_args(argv)
    digits = args.data in ("digits", "photos")  # classification: error is 1 - accuracy
    dims = DIMS16 if args.data == "synthetic16" else DIMS
    suffix = {"digits": "_digits", "synthetic16": "_synthetic16", "photos": "_photos"}.get(args.data, "")
    out, picture_path = Path(args.out or f"bench-out/bench_crossover{suffix}.json"), Path(
        args.picture or f"docs/crossover{suffix}.png"
    )
    if args.replot:
        saved = json.loads(Path(args.replot).read_text())
        for r in saved["rows"]:  # runs saved before the flag was recorded used the default --auto-max
            if "kernel" in r:
                r["kernel"].setdefault("auto", r["n"] <= 4000)
        picture(saved["rows"], picture_path, saved.get("data", "synthetic"))
        return 0
    default = {"digits": "200,400,800,1347", "synthetic16": "2000,8000", "photos": "2000,8000,32000"}.get(
        args.data, "1000,2000,4000,8000")
    sizes = [500, 1000] if args.quick else [int(s) for s in (args.sizes or default).split(",")]
    if args.data in ("synthetic16", "photos") and args.auto_max == 4000:  # "auto" only at the first n: too slow above
        args.auto_max = sizes[0]
    if args.data == "photos":
        rows = photos_rows(sizes, args.auto_max, args.dense_max, set(args.estimators.split(",")))
    else:
        rows = digits_rows(sizes) if digits else synthetic_rows(sizes, args.auto_max, dims, args.alpha or "auto")
    keys = [k for k in LABELS if any(k in r for r in rows)]
    error = "1-acc" if digits else "1-R²"
    header = " ".join(f"{k + ' s':>10} {k + ' ' + error:>14}" for k in keys)
    print(f"{'n':>6} {header} {'net / kernel time':>17}")
    for r in rows:
        cells = " ".join(f"{r[k]['seconds']:>10.2f} {r[k]['test_error']:>14.4f}" if k in r else f"{'-':>10} {'-':>14}"
                         for k in keys)
        both = {"kernel", "net"} <= r.keys()
        ratio = f"{r['net']['seconds'] / r['kernel']['seconds']:>16.2f}x" if both else f"{'-':>17}"
        print(f"{r['n']:>6} {cells} {ratio}")
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"dims": dims, "data": args.data, "machine": machine_info()}
    out.write_text(json.dumps({"rows": rows} | meta, indent=1))
    picture(rows, picture_path, args.data)
    log(f"wrote {out} and {picture_path}")
    return 0


def picture(rows: list[dict], path: Path, data: str = "synthetic") -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for key, style in zip(LABELS, ("o-", "s-", "s--", "^:", "v:"), strict=True):
        have = [r for r in rows if key in r]
        if have:
            left.plot([r["n"] for r in have], [r[key]["seconds"] for r in have], style, label=LABELS[key])
            right.plot([r["n"] for r in have], [r[key]["test_error"] for r in have], style, label=LABELS[key])
    fixed = [r for r in rows if "kernel" in r and not r["kernel"]["auto"]]
    if fixed:  # beyond --auto-max the kernel takes a float α: one Cholesky instead of an eigendecomposition
        left.plot([r["n"] for r in fixed], [r["kernel"]["seconds"] for r in fixed], "o", mfc="white",
                  color="C0", label="kernel, float α (Cholesky)")
    left.set(xscale="log", yscale="log", xlabel="training points n", ylabel="fit + predict (s)", title="time")
    ylabel = "test 1 - accuracy" if data in ("digits", "photos") else "test 1 - R²"
    right.set(xscale="log", xlabel="training points n", ylabel=ylabel, title="test error")
    sizes = sorted({r["n"] for r in rows})
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
        ax.set_xticks(sizes, [f"{n:,}" for n in sizes])  # the measured n, not log-axis minor labels
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.legend()
    title = {"digits": "digits, 8 × 8 images", "synthetic16": "rank-1 points at d = 2^16 (256 ⊗ 256)",
             "photos": "photo patches 128 × 128, split by place"}.get(data, "rank-1 points at d = 64")
    fig.suptitle(f"Kernel limit vs finite net, {title}")
    save_figure(fig, path)


if __name__ == "__main__":
    raise SystemExit(main())
