"""Does the trained net tend to its kernel limit as the width m grows? Test-point distance against m.

The NTK theory: full-batch gradient descent on ½‖f − y‖² from the net's initial function f0
converges, as m → ∞, to the kernel predictor

    f∞(x) = f0(x) + H(x, X) H⁻¹ (y − f0(X)),

H = ``ntk_gram`` (training points X) and H(x, X) = ``ntk_cross`` (test points x), with the
net's own shift b; the gap to the finite net should shrink like m^{-1/2}. Here: n training
and 128 test points, rank 1, dims (16, 16) (u, v standard normal), target
y = sin(2 t) + t² / 2 with t = √d <x / |x|, a ⊗ c> (unit a, c; the task of
``bench_crossover.py`` at d = 256). For each width m (doubling) and each seed, a
``TwoLayerNet`` of shift b is evaluated at initialisation (f0 on training and test points,
the net's own outputs), trained by ``KronSGD`` full batch in float64 with η = lr-fraction /
λ_max(H) until the training loss is below 1e-16 · L(0) (in rounds of the step count the
linearised rate of H predicts; the steps taken are recorded), and its test outputs are compared with f∞ built from
the same f0 (a ridge of 1e-10 · mean diag H only for conditioning). The distance is the RMS
over test points of f_net − f∞, relative to the RMS of f∞ and of the learned part f∞ − f0;
averaged over seeds, and the slope of log distance against log m is fitted. The gap is
also split through f_lin, the converged linearised net with its own kernel H0 at
initialisation (``empirical_ntk``; f_lin = f∞ with H0 for H): the drift in training
‖f_net − f_lin‖ and the finite-width kernel at initialisation ‖f_lin − f∞‖.

Usage: ``python benchmarks/bench_ntk_limit.py`` (about 80 s on 2 cores) or ``--quick``;
prints a table, writes bench-out/bench_ntk_limit.json and the picture docs/ntk_limit.png.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from _common import log, machine_info, save_figure
from kronsgd import KroneckerData, KronSGD, TwoLayerNet
from kronsgd.theory import ntk_cross, ntk_gram

DIMS = (16, 16)
LOSS_TARGET = 1e-16  # fraction of L(0): residuals ~1e-8 of y, far below the gaps measured: f_net is at its limit
MAX_ROUNDS = 20  # rounds of the planned step count before giving up (the finite-m kernel is less well conditioned)
PARTS = ("relative", "relative_learned", "training_drift", "initial_kernel")  # gaps whose slope is fitted
RIDGE = 1e-10  # · mean diag H, only for conditioning: H is well conditioned here (κ ≈ 2 at b = 1)


def task(n: int, seed: int):
    """(KroneckerData, y (n,)) of rank-1 points at dims DIMS with a smooth nonlinear target."""
    rng = np.random.default_rng(seed)
    u, v = rng.standard_normal((n, DIMS[0])), rng.standard_normal((n, DIMS[1]))
    direction = np.random.default_rng(12345)  # the same target for every draw of points
    a, c = direction.standard_normal(DIMS[0]), direction.standard_normal(DIMS[1])
    a, c = a / np.linalg.norm(a), c / np.linalg.norm(c)
    scale = math.sqrt(DIMS[0] * DIMS[1])  # t = √d <x̂, a ⊗ c> has unit variance
    t = scale * (u @ a) * (v @ c) / (np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1))
    return KroneckerData([u, v]), np.sin(2 * t) + 0.5 * t**2


def initial_kernels(net, train, test) -> tuple[np.ndarray, np.ndarray]:
    """The width-m NTK at initialisation, H0 (n, n) and H0(test, X) (n_test, n).

    H0[i, j] = <x̂_i, x̂_j> · (1/m) Σ_r 1[<w_r, x̂_i> > b] 1[<w_r, x̂_j> > b] (``empirical_ntk``
    of an untrained net), from the preactivations of the net as it is now.
    """
    points, others = net.prepare(train), net.prepare(test)
    fired = (net.preactivations(points, prepared=True) > net.shift).astype(np.float64)  # (m, n)
    fired_test = (net.preactivations(others, prepared=True) > net.shift).astype(np.float64)  # (m, n_test)
    H0 = points.gram() * (fired.T @ fired) / net.width  # (n, n)
    H0_test = points.gram(other=others).T * (fired_test.T @ fired) / net.width  # (n_test, n)
    return H0, H0_test


def kernel_limit(H, H_test, f0_train, f0_test, y) -> np.ndarray:
    """f∞(test) = f0(test) + H(test, X) (H + ridge I)⁻¹ (y − f0(X)): (n_test,)."""
    ridge = RIDGE * float(np.mean(np.diag(H)))
    coef = np.linalg.solve(H + ridge * np.eye(len(y)), y - f0_train)  # (n,)
    return f0_test + H_test @ coef


def steps_to_fit(eig: np.ndarray, lr: float) -> int:
    """Steps after which the linearised loss L(0) q^{2t}, q = 1 − η λ_min, is below LOSS_TARGET · L(0)."""
    q = max(abs(1 - lr * eig[0]), abs(1 - lr * eig[-1]))
    return int(math.ceil(math.log(LOSS_TARGET) / (2 * math.log(q))))


def one_width(train, test, y, width: int, shift: float, lr: float, steps: int, seed: int, H, H_test) -> dict:
    net = TwoLayerNet(DIMS, width, shift=shift, seed=seed)
    started = time.perf_counter()
    f0_train, f0_test = net.predict(train), net.predict(test)  # (n,), (n_test,): the net at initialisation
    f_lin = kernel_limit(*initial_kernels(net, train, test), f0_train, f0_test, y)  # the linearised net, converged
    trainer = KronSGD(net, train, y, lr, train.n, seed=seed, dtype=np.float64)
    loss0 = trainer.loss()
    for _ in range(MAX_ROUNDS):  # the finite-m kernel H(t) is not H: train until the loss is measured to be fit
        trainer.run(steps, log_every=0)
        if trainer.loss() <= LOSS_TARGET * loss0:
            break
    f_net = trainer.predict(test)  # (n_test,)
    seconds = time.perf_counter() - started
    f_lim = kernel_limit(H, H_test, f0_train, f0_test, y)
    gap = float(np.sqrt(np.mean((f_net - f_lim) ** 2)))
    rms_lim = float(np.sqrt(np.mean(f_lim**2)))
    return {
        "m": width,
        "seed": seed,
        "steps": trainer.counters()["steps"],
        "seconds": seconds,
        "loss0": loss0,
        "loss": trainer.loss(),
        "rms_gap": gap,
        "relative": gap / rms_lim,
        "training_drift": float(np.sqrt(np.mean((f_net - f_lin) ** 2))) / rms_lim,
        "initial_kernel": float(np.sqrt(np.mean((f_lin - f_lim) ** 2))) / rms_lim,
        "relative_learned": gap / float(np.sqrt(np.mean((f_lim - f0_test) ** 2))),
    }


def slope(m: list[int], values: list[float]) -> float:
    """Least-squares slope of log value against log m."""
    return float(np.polyfit(np.log(m), np.log(values), 1)[0])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n = 128, m = 256 ... 2048, one seed")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--n-test", type=int, default=128)
    parser.add_argument("--widths", default="256,512,1024,2048,4096,8192,16384,32768,65536")
    parser.add_argument("--seeds", type=int, default=3, help="nets (and draws of W0) averaged at each width")
    parser.add_argument("--shift", type=float, default=1.0)
    parser.add_argument("--lr-fraction", type=float, default=1.0, help="η as a fraction of 1/λ_max(H)")
    parser.add_argument("--out", default="bench-out/bench_ntk_limit.json")
    parser.add_argument("--picture", default="docs/ntk_limit.png")
    parser.add_argument("--replot", metavar="JSON", help="only draw the picture again from a saved run")
    args = parser.parse_args(argv)
    if args.replot:
        saved = json.loads(Path(args.replot).read_text())
        picture(saved["table"], saved["slope"], saved["config"], Path(args.picture))
        return 0
    if args.quick:
        args.n, args.widths, args.seeds = 128, "256,512,1024,2048", 1
    widths = [int(w) for w in args.widths.split(",")]
    started = time.perf_counter()
    train, y = task(args.n, seed=0)
    test, _ = task(args.n_test, seed=1)
    H = ntk_gram(train, args.shift)  # (n, n)
    H_test = ntk_cross(test, train, args.shift)  # (n_test, n)
    eig = np.linalg.eigvalsh(H)
    lr = args.lr_fraction / eig[-1]
    steps = steps_to_fit(eig, lr)
    log(
        f"n = {args.n}, dims = {DIMS}, b = {args.shift}: λ(H) in [{eig[0]:.4f}, {eig[-1]:.4f}], "
        f"η = {lr:.4g}, rounds of {steps} full-batch steps"
    )
    runs = []
    for width in widths:
        for seed in range(args.seeds):
            runs.append(one_width(train, test, y, width, args.shift, lr, steps, seed, H, H_test))
            log("  " + json.dumps(runs[-1]))
    table = []
    for width in widths:
        mine = [r for r in runs if r["m"] == width]
        table.append(
            {key: float(np.mean([r[key] for r in mine])) for key in (*PARTS, "rms_gap", "loss", "steps", "seconds")}
            | {"m": width}
        )
    fitted = {key: slope(widths, [row[key] for row in table]) for key in PARTS}
    total = time.perf_counter() - started
    print(
        f"n = {args.n}, {args.n_test} test points, dims {DIMS}, b = {args.shift}, η = {lr:.4g}, "
        f"{args.seeds} seed(s) averaged, float64"
    )
    print(
        f"{'m':>6} {'‖f_net − f∞‖ / ‖f∞‖':>20} {'/ ‖f∞ − f0‖':>12} {'‖f_net − f_lin‖':>16} {'‖f_lin − f∞‖':>13} "
        f"{'train loss':>11} {'steps':>6} {'s / net':>8}"
    )
    for row in table:
        print(
            f"{row['m']:>6} {row['relative']:>20.3e} {row['relative_learned']:>12.3e} {row['training_drift']:>16.3e} "
            f"{row['initial_kernel']:>13.3e} {row['loss']:>11.2e} {row['steps']:>6.0f} {row['seconds']:>8.2f}"
        )
    print("(f_lin: the linearised net with its own kernel H0 at initialisation, converged; the last two / ‖f∞‖)")
    print("slopes of log distance against log m (theory -0.5): " + ", ".join(f"{k} {v:.3f}" for k, v in fitted.items()))
    print(f"total {total:.1f} s")
    config = {
        "n": args.n,
        "n_test": args.n_test,
        "dims": DIMS,
        "shift": args.shift,
        "lr": lr,
        "round_steps": steps,
        "loss_target": LOSS_TARGET,
        "seeds": args.seeds,
        "lambda_min": float(eig[0]),
        "lambda_max": float(eig[-1]),
        "ridge": RIDGE,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "config": config,
                "table": table,
                "slope": fitted,
                "runs": runs,
                "total_seconds": total,
                "machine": machine_info(),
            },
            indent=1,
        )
    )
    picture(table, fitted, config, Path(args.picture))
    log(f"wrote {out} and {args.picture}")
    return 0


def picture(table: list[dict], fitted: dict, config: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.array([row["m"] for row in table], dtype=float)
    fig, ax = plt.subplots(figsize=(7, 4.8))
    for key, label, style in (
        ("relative", "‖f_net − f∞‖ / ‖f∞‖", "o-"),
        ("relative_learned", "‖f_net − f∞‖ / ‖f∞ − f0‖", "s-"),
        ("training_drift", "‖f_net − f_lin‖ / ‖f∞‖ (drift in training)", "^:"),
        ("initial_kernel", "‖f_lin − f∞‖ / ‖f∞‖ (kernel at init)", "v:"),
    ):
        if key not in table[0]:  # runs saved before the split was measured
            continue
        values = np.array([row[key] for row in table])
        ax.loglog(m, values, style, label=f"{label} (slope {fitted[key]:.2f})")
    first = table[0]["relative"]
    ax.loglog(m, first * np.sqrt(m[0] / m), "k--", lw=0.8, label="∝ m$^{-1/2}$")
    ax.set_xticks(m, [str(int(w)) for w in m])
    ax.minorticks_off()
    ax.set(xlabel="width m", ylabel="RMS distance on test points (relative)")
    ax.set_title(
        f"Trained net vs its kernel limit: n = {config['n']}, d = {config['dims'][0] * config['dims'][1]}, "
        f"b = {config['shift']}",
        fontsize=10,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


if __name__ == "__main__":
    raise SystemExit(main())
