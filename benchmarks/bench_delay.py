"""How much staleness can asynchronous SGD take? A study with exact delays (KronSGD(delay=...)), on one core.

On a cluster every update is computed from a model some updates old; here that staleness is
reproduced exactly and deterministically (``delay=``), so its cost can be measured without
a cluster. For digits (8 × 8 images as rank-R factors, 10 outputs) and synthetic rank-1
data at d = 2^16 (256 ⊗ 256, a nonlinear target):

1. the training loss after N updates (relative to the loss at the start) against τ = 0 … 1024,
   for a constant delay and a heavy-tailed one (Pareto, shape 1.5, capped at τ), with the
   plain step and the staleness-aware step lr / (1 + τ);
2. the largest stable learning rate against τ (a halving search from 16 times the study's
   rate: a run is stable when it neither diverges nor ends above its starting loss), beside the sufficient condition
   η ≤ 1 / (λ_max (1 + τ)), λ_max the largest eigenvalue of the NTK of a batch
   (``kronsgd.theory.ntk_gram``, the largest over sampled batches);
3. a projection for a cluster of p = 1 … 64 machines from measured per-update costs: the
   update's compute, the fold of one record into n/p columns, the record's bytes over a
   stated network (latency 50 µs, 10 Gb/s), the staleness p workers imply, and the loss that
   staleness costs according to (1).

Writes bench-out/bench_delay.json and docs/delay.png. ``--quick``: small grid for a smoke test.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import log  # noqa: E402
from kronsgd import DivergenceError, KroneckerData, KronSGD, TwoLayerNet  # noqa: E402
from kronsgd.engine.record import Buffers, compute_update  # noqa: E402
from kronsgd.theory import ntk_gram  # noqa: E402

LATENCY_S, BANDWIDTH_BPS = 50e-6, 10e9 / 8  # the stated network of the projection


def digits_task():
    from sklearn.datasets import load_digits

    X, labels = load_digits(return_X_y=True)
    data = KroneckerData.from_dense(X / 16.0, shape=(8, 8), energy=0.99)
    return "digits", data, np.eye(10)[labels], 0.5


def synthetic_task(n=2048, side=256, seed=0):
    rng = np.random.default_rng(seed)
    u, v = rng.standard_normal((n, side)), rng.standard_normal((n, side))
    p, q = rng.standard_normal(side), rng.standard_normal(side)
    norms = np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1) * np.linalg.norm(p) * np.linalg.norm(q)
    score = (u @ p) * (v @ q) / norms  # (n,) <x_i, p ⊗ q> of the unit points
    return "synthetic rank-1, d = 2^16", KroneckerData([u, v]), np.sin(8 * score)[:, None], 1.0


class Study:
    """One data set: P0 computed once, every run restarts from it (the set-up is not what is studied)."""

    def __init__(self, task, width, batch, seed=0):
        self.name, self.data, self.y, self.lr = task
        self.width, self.batch, self.seed = width, batch, seed
        self.net = TwoLayerNet(self.data.dims, width=width, outputs=self.y.shape[1], seed=seed)
        started = time.perf_counter()
        self.P0 = self.net.preactivations(self.data, dtype=np.float32)
        log(f"{self.name}: n = {self.data.n}, d = {self.data.d}, P0 in {time.perf_counter() - started:.1f} s")

    def run(self, steps, lr, delay=None, staleness_lr="none") -> float:
        """Training loss after ``steps`` updates over the loss at the start (inf when it diverged)."""
        net = TwoLayerNet(self.data.dims, width=self.width, outputs=self.y.shape[1], seed=self.seed)
        restore = {"P": self.P0.copy(), "alpha": np.zeros_like(self.P0)}
        trainer = KronSGD(net, self.data, self.y, lr=lr, batch_size=self.batch, seed=self.seed, delay=delay,
                          staleness_lr=staleness_lr, _restore=restore)  # fmt: skip
        start = trainer.loss()
        try:
            history = trainer.run(steps, log_every=max(1, steps // 4))
        except DivergenceError:
            return math.inf
        return history[-1]["loss"] / start

    def stable_lr(self, tau, steps) -> float:
        """The largest lr = 16 · lr · 2^-k that neither diverges nor ends above the starting loss.

        Capped at 16 times the study's rate: far above it the net's neurons stop firing and a
        run ends below its start without learning, which is no useful rate.
        """
        lr = 16 * self.lr
        while lr > 1e-4:
            if self.run(steps, lr, delay=tau if tau else None) < 1.0:
                return lr
            lr /= 2
        return 0.0

    def sufficient_lr(self, taus, batches=16) -> dict:
        """1 / (λ_max (1 + τ)), λ_max the largest NTK eigenvalue of a batch (the largest of ``batches`` sampled)."""
        rng = np.random.default_rng(1)
        top = 0.0
        for _ in range(batches):
            idx = rng.choice(self.data.n, size=self.batch, replace=False)
            H = ntk_gram(self.data[idx], self.net.shift)  # (B, B)
            top = max(top, float(np.linalg.eigvalsh(H)[-1]))
        return {"lambda_max": top, **{str(t): 1.0 / (top * (1 + t)) for t in taus}}

    def costs(self, repeats=50) -> dict:
        """Measured seconds of one update's compute and of folding one record into all n columns; its bytes."""
        trainer = KronSGD(TwoLayerNet(self.data.dims, width=self.width, outputs=self.y.shape[1], seed=self.seed),
                          self.data, self.y, lr=self.lr, batch_size=self.batch, keep_log=True, window=1,
                          _restore={"P": self.P0.copy(), "alpha": np.zeros_like(self.P0)})  # fmt: skip
        trainer.run(repeats, log_every=0)
        w, s = trainer.workers[0], trainer.shared
        buffers = Buffers(self.width, self.y.shape[1], self.batch, 4 * self.width * self.batch, np.float32)
        batch = np.arange(self.batch)
        cols = np.ascontiguousarray(s.P[:, batch])
        started = time.perf_counter()
        for _ in range(repeats):
            compute_update(cols, batch, s.a, s.shift, s.y[batch], s.lr, s.gram_bound, buffers)
        compute = (time.perf_counter() - started) / repeats
        folded = trainer.counters()["rows_folded"]
        started = time.perf_counter()
        for record in trainer.records[:repeats]:
            trainer._replay_one(record)
            w.fold(trainer.log.published)
        fold_all = (time.perf_counter() - started) / repeats
        nbytes = float(np.mean([r.nbytes for r in trainer.records]))
        return {"compute_s": compute, "fold_all_columns_s": fold_all, "record_bytes": nbytes, "rows_folded": folded}


def project(costs, n, batch, ps, loss_at_tau) -> list[dict]:
    """Samples/s and staleness for p machines: each computes its updates and folds every record into n/p columns."""
    rows = []
    for p in ps:
        fold = costs["fold_all_columns_s"] / p  # one record into n/p columns (the fold is linear in the columns)
        message = LATENCY_S + costs["record_bytes"] / BANDWIDTH_BPS  # its record out (the others arrive in parallel)
        per_update = costs["compute_s"] + message + p * fold  # a worker folds the p records of a round per own update
        updates = p / per_update
        tau = (p - 1) + updates * 2 * LATENCY_S  # the others' updates, plus those in flight on the network
        rows.append({"p": p, "samples_per_s": updates * batch, "staleness": tau, "loss_ratio": loss_at_tau(tau)})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--json", default="bench-out/bench_delay.json")
    parser.add_argument("--plot", default="docs/delay.png")
    args = parser.parse_args()
    taus = [0, 4, 16, 64] if args.quick else [0, 4, 16, 64, 256, 1024]
    lr_taus = [0, 4, 16] if args.quick else [0, 4, 16, 64, 256]
    steps = 200 if args.quick else args.steps
    tasks = [digits_task(), synthetic_task(n=512 if args.quick else 2048, side=64 if args.quick else 256)]
    out = {"args": vars(args), "taus": taus, "studies": []}
    for task in tasks:
        study = Study(task, args.width, args.batch)
        stable = {str(t): study.stable_lr(t, max(100, steps // 3)) for t in lr_taus}
        edge = stable["0"] / 2  # half the largest stable rate without delay: where staleness matters
        curves = {}
        for lr, which in ((study.lr, "lr"), (edge, "lr_edge")):
            for kind in ("constant", "pareto"):
                for rule in ("none", "inverse"):
                    values = []
                    for tau in taus:
                        delay = (tau if kind == "constant" else ("pareto", 1.5, tau)) if tau else None
                        started = time.perf_counter()
                        values.append(study.run(steps, lr, delay=delay, staleness_lr=rule))
                        seconds = time.perf_counter() - started
                        log(f"  lr {lr:<6g} {kind:8s} {rule:7s} tau {tau:5d}: {values[-1]:.4f} ({seconds:.1f} s)")
                    curves[f"{which}/{kind}/{rule}"] = values
        sufficient = study.sufficient_lr(lr_taus)
        costs = study.costs()
        base = curves["lr_edge/constant/none"]

        def loss_at_tau(tau, base=base):  # interpolated in log(1 + τ) between the measured delays
            return float(np.interp(math.log1p(tau), [math.log1p(t) for t in taus], base))

        projection = project(costs, study.data.n, args.batch, [1, 2, 4, 8, 16, 32, 64], loss_at_tau)
        out["studies"].append({"name": study.name, "n": study.data.n, "d": study.data.d, "lr": study.lr,
                               "lr_edge": edge,
                               "curves": curves, "stable_lr": stable, "sufficient_lr": sufficient, "costs": costs,
                               "projection": projection})  # fmt: skip
        print(f"\n{study.name} (n = {study.data.n}, d = {study.data.d}, m = {args.width}, batch {args.batch}, "
              f"{steps} updates): loss after / before at lr = {study.lr:g} and lr_edge = {edge:g}")  # fmt: skip
        print("     tau " + "".join(f"{k:>26s}" for k in curves))
        for i, tau in enumerate(taus):
            print(f"{tau:8d} " + "".join(f"{curves[k][i]:26.4f}" for k in curves))
        print(f"largest stable lr (doubling search) vs 1/(λ_max (1 + τ)), λ_max = {sufficient['lambda_max']:.3g}:")
        for t in lr_taus:
            print(f"   tau {t:5d}: measured {stable[str(t)]:8.4g}   sufficient {sufficient[str(t)]:8.4g}")
        print(f"per update: compute {1e3 * costs['compute_s']:.3f} ms, fold into all {study.data.n} columns "
              f"{1e3 * costs['fold_all_columns_s']:.3f} ms, record {costs['record_bytes']:,.0f} B; "
              f"network {1e6 * LATENCY_S:.0f} µs, {8 * BANDWIDTH_BPS / 1e9:.0f} Gb/s")  # fmt: skip
        print("   p   samples/s   staleness   loss after/before (constant delay at lr_edge, interpolated)")
        for row in projection:
            print(f"{row['p']:4d} {row['samples_per_s']:11,.0f} {row['staleness']:11.1f} {row['loss_ratio']:12.4f}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1))
    plot(out, args.plot)
    return 0


def plot(out, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    studies = out["studies"]
    fig, axes = plt.subplots(2, len(studies), figsize=(6 * len(studies), 8), squeeze=False)
    x = [1 + t for t in out["taus"]]
    for col, s in enumerate(studies):
        ax = axes[0, col]
        for key, values in s["curves"].items():
            which, kind, rule = key.split("/")
            style = "-" if which == "lr_edge" else ":"
            label = f"{kind}, {'lr/(1+τ)' if rule == 'inverse' else 'lr'}, {which.replace('_', ' ')}"
            ax.plot(x, [min(v, 2.0) for v in values], style, marker="o", ms=3, label=label)
        ax.set(xscale="log", xlabel="1 + τ (updates of delay)", ylabel="training loss after / before (capped at 2)",
               title=f"{s['name']}: {out['args']['steps']} updates, lr {s['lr']:g} and {s['lr_edge']:g}")  # fmt: skip
        ax.legend(fontsize=8)
        ax = axes[1, col]
        taus = [int(t) for t in s["stable_lr"]]
        ax.plot([1 + t for t in taus], [s["stable_lr"][str(t)] for t in taus], marker="o", label="largest stable lr")
        ax.plot([1 + t for t in taus], [s["sufficient_lr"][str(t)] for t in taus], ls="--",
                label="1 / (λ_max (1 + τ))")  # fmt: skip
        ax.set(xscale="log", yscale="log", xlabel="1 + τ", ylabel="learning rate", title="stable learning rate")
        ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
