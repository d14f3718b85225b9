"""Does full-batch KronSGD train at the rate the NTK predicts, and does the drift shrink with width?

One synthetic task (n = 32 points of dims (8, 8), rank 1, float64, full batch, shift b fixed
across widths). Left panel: the measured training loss of the width-4096 run next to the
linear-rate predictions L(0) q^{2t} with q = 1 - η λ_min, from the infinite-width kernel
H = ntk_gram(data, b) and from the width-4096 kernel at initialisation H(0). Right panel:
at the end of the same number of steps, the drift quantities of ``DriftTracker`` for three
widths, on log-log axes with an m^{-1/2} guide (the NTK theory's scaling of the weight move).

Usage: ``python benchmarks/theory_plot.py`` (writes docs/theory.png and prints the figures).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from kronsgd import KronSGD, TwoLayerNet  # noqa: E402
from kronsgd.cli.demo import synthetic_task  # noqa: E402
from kronsgd.theory import (  # noqa: E402
    DriftTracker,
    contraction_factor,
    empirical_ntk,
    fire_fraction,
    lr_limit,
    ntk_gram,
    theory_report,
)

FLOOR = 1e-24  # a loss below FLOOR · L(0) may be float64 round-off (residuals ~1e-12): left out of the rate
DRIFT_KEYS = ("max_weight_move", "pattern_change", "ntk_drift", "flip_fraction")


def train(data, y, width, shift, lr, steps, seed):
    trainer = KronSGD(TwoLayerNet(data.dims, width, shift=shift, seed=seed), data, y, lr, data.n, dtype=np.float64)
    kernel0 = empirical_ntk(trainer)  # (n, n) H(0) of this width
    history = trainer.run(steps, log_every=1, callback=DriftTracker(trainer))
    return trainer, kernel0, history


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--dims", type=int, nargs="+", default=[8, 8])
    parser.add_argument("--shift", type=float, default=1.0)
    parser.add_argument("--widths", type=int, nargs=3, default=[1024, 4096, 16384])
    parser.add_argument("--lr-fraction", type=float, default=0.5, help="η as a fraction of 1/λ_max(H)")
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "theory.png")
    args = parser.parse_args(argv)

    data, y = synthetic_task(args.n, tuple(args.dims), seed=args.seed)
    H = ntk_gram(data, args.shift)  # (n, n) infinite-width NTK
    eig = np.linalg.eigvalsh(H)
    lr = args.lr_fraction * lr_limit(H)
    q = contraction_factor(H, lr)
    runs = {w: train(data, y, w, args.shift, lr, args.steps, args.seed) for w in args.widths}
    main_width = args.widths[1]
    trainer, kernel0, history = runs[main_width]
    q0 = contraction_factor(kernel0, lr)
    steps = np.array([e["step"] for e in history])
    loss = np.array([e["loss"] for e in history])
    clean = [e for e in history if e["loss"] > FLOOR * loss[0]]
    report = theory_report(trainer, history=clean)

    fired = fire_fraction(args.shift)
    print(f"task: n = {data.n}, dims = {data.dims}, shift b = {args.shift} (fire fraction {fired:.3f})")
    print(f"lambda_min(H) = {eig[0]:.5f}, lambda_max(H) = {eig[-1]:.5f}  (infinite-width NTK)")
    print(f"lambda_min(H(0)) = {np.linalg.eigvalsh(kernel0)[0]:.5f}  (width {main_width}, at initialisation)")
    print(f"eta = {lr:.4g} = {args.lr_fraction} / lambda_max(H), full batch, float64")
    print(f"predicted per-step factor: residual {q:.5f}, loss {q * q:.5f}  (from H); loss {q0 * q0:.5f} (from H(0))")
    cut = "" if len(clean) == len(history) else f"; later steps are below {FLOOR:g} L(0) and left out"
    print(
        f"measured average per-step loss factor: {report.measured_loss_factor:.5f} over steps 0..{report.steps} "
        f"(loss {loss[0]:.3g} -> {clean[-1]['loss']:.3g}{cut})"
    )
    print("drift at step", args.steps, "by width:")
    print("  width  " + "  ".join(f"{k:>15}" for k in DRIFT_KEYS))
    for w, (_, _, hist) in runs.items():
        print(f"  {w:5d}  " + "  ".join(f"{hist[-1][k]:15.4g}" for k in DRIFT_KEYS))

    fig, (left, right) = plt.subplots(1, 2, figsize=(13.5, 4.8))
    left.semilogy(steps, loss, "k-", lw=2, label=f"measured, m = {main_width}")
    label = f"predicted from H (infinite width): {q * q:.3f}$^t$"
    left.semilogy(steps, loss[0] * q ** (2 * steps), "C0--", lw=1.5, label=label)
    label = f"predicted from H(0), m = {main_width}: {q0 * q0:.3f}$^t$"
    left.semilogy(steps, loss[0] * q0 ** (2 * steps), "C1:", lw=1.5, label=label)
    left.set_xlabel("full-batch step t")
    left.set_ylabel("training loss ½‖f − y‖²")
    left.set_title(f"Loss vs the linear rate $(1 - \\eta\\lambda_{{\\min}})^{{2t}}$, b = {args.shift}, η = {lr:.3g}")
    left.legend(fontsize=9)

    widths = np.array(args.widths, dtype=float)
    for k, marker in zip(DRIFT_KEYS, "osD^", strict=True):
        right.loglog(widths, [runs[w][2][-1][k] for w in args.widths], marker + "-", label=k)
    first = runs[args.widths[0]][2][-1]["max_weight_move"]
    right.loglog(widths, first * np.sqrt(widths[0] / widths), "k--", lw=0.8, label="∝ m$^{-1/2}$")
    right.set_xticks(widths, [str(w) for w in args.widths])
    right.minorticks_off()
    right.set_xlabel("width m")
    right.set_title(f"Drift from initialisation after {args.steps} steps")
    right.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
