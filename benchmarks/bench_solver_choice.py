"""Does ``kronsgd train --solver auto`` pick the faster solver? Predicted against measured, side by side.

For each data set, ``kronsgd train`` runs three times in this process (``kronsgd.cli.main``
with ``--json``): ``--solver auto`` (its estimates and its pick), then ``--solver sgd`` and
``--solver kernel`` (what each costs: KronSGD's set-up + steps, the kernel's fit). The pick
is right when it is the solver measured faster. Both solvers run with the command's
defaults (KronSGD: 1,000 steps, float32, m = 1,024; the kernel: alpha chosen by
leave-one-out from one eigendecomposition).

Data: digits (1,797 points, 8 x 8, classes); rank-1 points u ⊗ v at d = 256 x 256 with the
nonlinear target of bench_crossover.py, n = 1,000, 4,000 and 8,000 (factors given); the
photos patches (2,048 random 128 x 128 patches, dense X factored by the command).

Usage: ``python benchmarks/bench_solver_choice.py`` (a few minutes); prints a table and
writes bench-out/bench_solver_choice.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from _common import log, save_rows
from kronsgd.cli.main import main as kronsgd


def data_sets(folder: Path, quick: bool) -> list[tuple[str, Path, list[str]]]:
    """(name, .npz path, extra train arguments) of every case, written to ``folder``."""
    from sklearn.datasets import load_digits

    from _photos import photos_patches
    from bench_crossover import DIMS16, task

    X, y = load_digits(return_X_y=True)
    cases = [("digits", folder / "digits.npz", ["--classify"])]
    np.savez(cases[0][1], X=X, y=y)
    for n in (1000,) if quick else (1000, 4000, 8000):
        data, target = task(n, seed=n, dims=DIMS16)
        path = folder / f"rank1_{n}.npz"
        np.savez(path, factor_0=data.factors[0][:, 0], factor_1=data.factors[1][:, 0], y=target)
        cases.append((f"rank-1 d=2^16 n={n}", path, []))
    if not quick:
        X_train, _, y_train, _ = photos_patches()
        path = folder / "photos.npz"
        np.savez(path, X=X_train.reshape(-1, 128, 128), y=y_train)
        cases.append(("photos 1,638 x 128x128", path, ["--classify"]))
    return cases


def train(path: Path, solver: str, extra: list[str], out: Path) -> dict:
    """The --json summary of one ``kronsgd train`` run."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = kronsgd(["train", str(path), "--out", str(out), "--solver", solver, "--json", *extra])
    if code != 0:
        raise RuntimeError(f"kronsgd train --solver {solver} on {path} exited {code}")
    return json.loads(buffer.getvalue())["summary"]


def seconds(summary: dict) -> float:
    """What the solver cost: KronSGD's set-up and steps, or the kernel's fit."""
    if summary["solver"] == "kernel":
        return summary["fit_seconds"]
    return summary["setup_seconds"] + summary["train_seconds"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="digits and n = 1,000 only")
    parser.add_argument("--out", default="bench-out/bench_solver_choice.json")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, path, extra in data_sets(folder, args.quick):
            auto = train(path, "auto", extra, folder / "auto.npz")
            predicted = {e["name"]: e["seconds"] for e in auto["solver_estimates"]}
            measured = {s: seconds(train(path, s, extra, folder / f"{s}.npz")) for s in ("sgd", "kernel")}
            fastest = min(measured, key=measured.get)
            row = {"data": name, "n": auto["data"]["n"], "rank": auto["data"]["rank"], "picked": auto["solver"],
                   "fastest": fastest, "right": auto["solver"] == fastest, "predicted": predicted,
                   "measured": measured, "load": os.getloadavg()[0]}  # fmt: skip
            rows.append(row)
            log("  " + json.dumps(row))
    print(f"{'data':>24} {'n':>6} {'R':>3} {'kernel pred':>11} {'meas':>7} {'sgd pred':>9} {'meas':>7} "
          f"{'picked':>7} {'fastest':>7}")  # fmt: skip
    for r in rows:
        p, m = r["predicted"], r["measured"]
        print(f"{r['data']:>24} {r['n']:>6} {r['rank']:>3} {p['kernel']:>10.2f}s {m['kernel']:>6.2f}s "
              f"{p['sgd']:>8.2f}s {m['sgd']:>6.2f}s {r['picked']:>7} {r['fastest']:>7}")  # fmt: skip
    right = sum(r["right"] for r in rows)
    print(f"right picks: {right} of {len(rows)}")
    save_rows(args.out, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
