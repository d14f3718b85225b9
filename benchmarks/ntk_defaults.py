"""KronNTKClassifier with default parameters on the photos patches and on digits, beside KronMLPClassifier.

Each data set is split once (seeded); every estimator is built with its defaults (the net
with random_state=0) and timed from ``fit`` to the end of ``predict`` on the test points,
dense X in (structuring into factors included). The estimators run one after the other in
the same process, so their times compare as ratios on a shared machine (the load average
is recorded).

Usage: ``python benchmarks/ntk_defaults.py`` (about a minute; ``--no-mlp`` skips the net);
prints a table and writes bench-out/ntk_defaults.json.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from _common import log, save_rows
from _photos import photos_patches
from kronsgd import KronMLPClassifier, KronNTKClassifier


def digits(seed: int = 0):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, random_state=seed)  # the split of tests/test_estimators.py


def run(name: str, estimator, split) -> dict:
    X_train, X_test, y_train, y_test = split
    started = time.perf_counter()
    estimator.fit(X_train, y_train)
    fitted = time.perf_counter()
    accuracy = float(np.mean(estimator.predict(X_test) == y_test))
    done = time.perf_counter()
    row = {"data": name, "estimator": type(estimator).__name__, "n_train": len(y_train), "n_test": len(y_test),
           "fit_s": fitted - started, "predict_s": done - fitted, "total_s": done - started, "accuracy": accuracy,
           "factor_shape": list(estimator.factor_shape_), "rank": int(estimator.rank_)}
    if hasattr(estimator, "alpha_"):
        row["alpha"], row["shift"] = float(estimator.alpha_), float(estimator.shift_)
    log("  " + json.dumps(row))
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-mlp", action="store_true", help="KronNTKClassifier only")
    parser.add_argument("--out", default="bench-out/ntk_defaults.json")
    args = parser.parse_args(argv)
    rows = []
    for name, split in (("photos patches", photos_patches()), ("digits", digits())):
        log(f"{name} ...")
        rows.append(run(name, KronNTKClassifier(), split))
        if not args.no_mlp:
            rows.append(run(name, KronMLPClassifier(random_state=0), split))
    print(f"{'data':>15} {'estimator':>18} {'train':>6} {'test':>5} {'R':>3} {'fit s':>7} {'predict s':>9} "
          f"{'total s':>8} {'accuracy':>8}")
    for r in rows:
        print(f"{r['data']:>15} {r['estimator']:>18} {r['n_train']:>6} {r['n_test']:>5} {r['rank']:>3} "
              f"{r['fit_s']:>7.2f} {r['predict_s']:>9.2f} {r['total_s']:>8.2f} {r['accuracy']:>8.3f}")
    save_rows(args.out, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
