"""The whole job, side by side: structure, set-up, steps, prediction, accuracy over time.

    python benchmarks/bench_e2e.py                  # digits, photos, synthetic d = 2^16 ... 2^30
    python benchmarks/bench_e2e.py --quick          # digits, and synthetic d = 2^16, 2^20

- digits (scikit-learn's load_digits, 8 x 8) and the photos case (2,048 grayscale 128 x 128
  patches of scikit-learn's two sample photos, label = which photo, rank 8): KronSGD with
  init="gaussian" and init="kronecker" (K = 16) through KronMLPClassifier, test accuracy
  after every epoch (partial_fit); the same model and steps in dense PyTorch (float32, the
  weights materialised); scikit-learn's MLPClassifier with its defaults. Seeds averaged.
- synthetic rank-1 points at d = 2^16, 2^20, 2^24, 2^30 (square factors), n = 2048,
  m = 1024, batch 32: set-up, 100 steps, prediction on 100 points, for both inits (the
  Gaussian one while its set-up stays short) and dense PyTorch where W and X fit.

Writes bench-out/bench_e2e.json and bench-out/bench_e2e.png (accuracy against seconds).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from _common import log, machine_info
from kronsgd import KroneckerData, KronMLPClassifier, KronSGD, TwoLayerNet


# ---- data ----------------------------------------------------------------------------------
def digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, random_state=0), {"factor_shape": (8, 8)}


def photos(count=2048, size=128):
    from sklearn.datasets import load_sample_images
    from sklearn.model_selection import train_test_split

    rng = np.random.default_rng(0)
    patches, labels = [], []
    for label, image in enumerate(load_sample_images().images):
        gray = image.astype(np.float64).mean(axis=2) / 255.0  # (H, W)
        for _ in range(count // 2):
            r, c = rng.integers(0, gray.shape[0] - size), rng.integers(0, gray.shape[1] - size)
            patches.append(gray[r : r + size, c : c + size].reshape(-1))
            labels.append(label)
    X, y = np.array(patches), np.array(labels)
    return train_test_split(X, y, test_size=0.2, random_state=0), {"factor_shape": (size, size), "rank": 8}


# ---- engines -------------------------------------------------------------------------------
def kron_curve(split, options, init, seed, epochs):
    """Accuracy after each epoch of KronMLPClassifier (estimator defaults otherwise)."""
    X_train, X_test, y_train, y_test = split
    clf = KronMLPClassifier(random_state=seed, init=init, **options)
    started = time.perf_counter()
    clf.partial_fit(X_train, y_train, classes=np.unique(y_train))
    setup_and_first = time.perf_counter() - started
    points = [(setup_and_first, clf.score(X_test, y_test))]
    for _ in range(epochs - 1):
        clf.partial_fit(X_train, y_train)
        train = points[-1][0] + clf.history_[-1]["seconds"] - clf.history_[-2]["seconds"]
        points.append((train, clf.score(X_test, y_test)))
    t0 = time.perf_counter()
    clf.predict(X_test)
    return {"curve": points, "accuracy": points[-1][1], "predict_s": time.perf_counter() - t0,
            "setup_and_first_epoch_s": setup_and_first, "rank": int(clf.rank_)}  # fmt: skip


def torch_curve(split, width, seed, epochs, batch=32, lr=4.0):
    """The same model and step rule in dense PyTorch float32 (weights W (m, d) materialised)."""
    import torch

    from kronsgd.model.net import default_shift, fire_fraction

    X_train, X_test, y_train, y_test = split
    classes = np.unique(y_train)
    Y = (y_train[:, None] == classes[None]).astype(np.float32)  # (n, C)
    unit = lambda X: X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-300)  # noqa: E731
    Xtr, Xte = torch.from_numpy(unit(X_train).astype(np.float32)), torch.from_numpy(unit(X_test).astype(np.float32))
    started = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    W = torch.randn(width, Xtr.shape[1], generator=gen)  # (m, d)
    a = (torch.randint(0, 2, (width, len(classes)), generator=gen) * 2 - 1).float()  # (m, C)
    b = default_shift(width)
    eta = lr / (batch * fire_fraction(b))
    Yt = torch.from_numpy(Y)
    setup = time.perf_counter() - started
    points, elapsed = [], setup
    n = Xtr.shape[0]
    for _ in range(epochs):
        t0 = time.perf_counter()
        for _ in range(-(-n // batch)):
            S = torch.randint(0, n, (batch,), generator=gen)
            x = Xtr[S]  # (B, d)
            z = x @ W.T  # (B, m)
            fired = (z > b).float()
            f = ((z - b) * fired) @ a / width**0.5  # (B, C)
            coef = -(eta / width**0.5) * ((f - Yt[S]) @ a.T) * fired  # (B, m)
            W += coef.T @ x
        elapsed += time.perf_counter() - t0
        pred = ((torch.clamp(Xte @ W.T - b, min=0)) @ a).argmax(1).numpy()
        points.append((elapsed, float((classes[pred] == y_test).mean())))
    return {"curve": points, "accuracy": points[-1][1]}


def sklearn_curve(split, seed):
    from sklearn.neural_network import MLPClassifier

    X_train, X_test, y_train, y_test = split
    t0 = time.perf_counter()
    clf = MLPClassifier(random_state=seed).fit(X_train, y_train)
    seconds = time.perf_counter() - t0
    return {"curve": [(seconds, clf.score(X_test, y_test))], "accuracy": clf.score(X_test, y_test)}


def real_case(name, loader, seeds, epochs, width):
    (split, options) = loader()
    t0 = time.perf_counter()
    data = KroneckerData.from_dense(split[0], shape=options["factor_shape"], rank=options.get("rank", "auto"))
    structure = time.perf_counter() - t0
    out = {"case": name, "n_train": len(split[0]), "d": split[0].shape[1], "structure_s": structure,
           "rank": data.rank, "engines": {}}  # fmt: skip
    for engine in ("kron_gaussian", "kron_kronecker", "torch_dense", "sklearn_mlp"):
        runs = []
        for seed in range(seeds):
            log(f"{name}: {engine}, seed {seed} ...")
            if engine.startswith("kron"):
                runs.append(kron_curve(split, options, engine.split("_")[1], seed, epochs))
            elif engine == "torch_dense":
                runs.append(torch_curve(split, width, seed, epochs))
            else:
                runs.append(sklearn_curve(split, seed))
        out["engines"][engine] = {"accuracy_mean": float(np.mean([r["accuracy"] for r in runs])), "runs": runs}
    return out


# ---- synthetic -----------------------------------------------------------------------------
def synthetic_job(log2d, init, n=2048, width=1024, steps=100, n_predict=100):
    d1 = 2 ** (log2d // 2)
    rng = np.random.default_rng(0)
    data = KroneckerData([rng.standard_normal((n, d1)), rng.standard_normal((n, d1))])
    test = KroneckerData([rng.standard_normal((n_predict, d1)), rng.standard_normal((n_predict, d1))])
    y = np.sign(data.factors[0][:, 0, 0] * data.factors[1][:, 0, 0])  # (n,)
    t0 = time.perf_counter()
    trainer = KronSGD(TwoLayerNet((d1, d1), width, init=init), data, y, lr=0.5, batch_size=32)
    t1 = time.perf_counter()
    trainer.run(steps, log_every=0)
    t2 = time.perf_counter()
    trainer.predict(test)
    t3 = time.perf_counter()
    return {"log2d": log2d, "init": init, "setup_s": t1 - t0, "steps_s": t2 - t1, "predict_s": t3 - t2,
            "total_s": t3 - t0, "gram": trainer.gram_mode}  # fmt: skip


def torch_job(log2d, n=2048, width=1024, steps=100, n_predict=100):
    import torch

    d = 2**log2d
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    X = torch.randn(n, d, generator=gen)  # stands for the user's dense data (not timed as set-up below)
    t1 = time.perf_counter()
    W = torch.randn(width, d, generator=gen)  # (m, d)
    a = (torch.randint(0, 2, (width,), generator=gen) * 2 - 1).float()
    t2 = time.perf_counter()
    for _ in range(steps):
        S = torch.randint(0, n, (32,), generator=gen)
        z = X[S] @ W.T
        fired = (z > 1.66).float()
        W += (-0.01 * fired * a).T @ X[S]
    t3 = time.perf_counter()
    Xp = torch.randn(n_predict, d, generator=gen)
    t4 = time.perf_counter()
    torch.clamp(Xp @ W.T - 1.66, min=0) @ a
    t5 = time.perf_counter()
    del X, W, Xp
    return {"log2d": log2d, "init": "torch_dense", "setup_s": t2 - t1, "steps_s": t3 - t2, "predict_s": t5 - t4,
            "total_s": (t2 - t1) + (t3 - t2) + (t5 - t4), "data_s": t1 - t0}  # fmt: skip


def plot(cases, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(cases), figsize=(6 * len(cases), 4), squeeze=False)
    for ax, case in zip(axes[0], cases, strict=True):
        for engine, result in case["engines"].items():
            curve = np.array(result["runs"][0]["curve"])
            ax.plot(curve[:, 0], curve[:, 1], marker="o", ms=3, label=f"{engine} ({result['accuracy_mean']:.3f})")
        ax.set_xscale("log")
        ax.set_xlabel("seconds (set-up and training)")
        ax.set_ylabel("test accuracy")
        ax.set_title(f"{case['case']}: n = {case['n_train']}, d = {case['d']}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--log2d", default="16,20,24,30", help="synthetic sizes")
    parser.add_argument("--gaussian-max-log2d", type=int, default=20, help="largest d for the Gaussian init")
    parser.add_argument("--torch-max-log2d", type=int, default=16, help="largest d for dense PyTorch")
    parser.add_argument("--skip", default="", help="comma list of digits, photos, synthetic")
    parser.add_argument("--out", default="bench-out/bench_e2e.json")
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    if args.quick:
        skip |= {"photos"}
        args.log2d, args.seeds = "16,20", min(args.seeds, 2)
    report = {"config": vars(args), "cases": [], "synthetic": []}
    for name, loader in (("digits", digits), ("photos", photos)):
        if name not in skip:
            case = real_case(name, loader, args.seeds, args.epochs, 1024)
            report["cases"].append(case)
            print(f"{name}: n_train {case['n_train']}, d {case['d']}, rank {case['rank']}, "
                  f"structure {case['structure_s']:.2f} s")  # fmt: skip
            for engine, r in case["engines"].items():
                last = [run["curve"][-1][0] for run in r["runs"]]
                print(f"  {engine:<15} accuracy {r['accuracy_mean']:.4f}   seconds {np.mean(last):.2f}")
    if "synthetic" not in skip:
        print(f"{'d':>6} {'engine':<12} {'set-up s':>9} {'100 steps s':>11} {'predict s':>9} {'total s':>8}")
        for log2d in (int(v) for v in args.log2d.split(",")):
            jobs = [("kronecker", True), ("gaussian", log2d <= args.gaussian_max_log2d)]
            jobs.append(("torch", log2d <= args.torch_max_log2d))
            for init, run in jobs:
                if not run:
                    print(f"  2^{log2d:<3} {init:<12} skipped (does not fit or set-up too long here)")
                    continue
                log(f"synthetic d = 2^{log2d}, {init} ...")
                r = synthetic_job(log2d, init) if init != "torch" else torch_job(log2d)
                report["synthetic"].append(r)
                print(f"  2^{log2d:<3} {init:<12} {r['setup_s']:9.2f} {r['steps_s']:11.2f} {r['predict_s']:9.2f} "
                      f"{r['total_s']:8.2f}", flush=True)  # fmt: skip
    report["machine"] = machine_info()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    if report["cases"]:
        plot(report["cases"], str(Path(args.out).with_suffix(".png")))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
