"""The NTK kernel solver against n: kernel from factors, Cholesky, eigendecomposition, prediction.

For rank-1 points at d = 2^16 (256 ⊗ 256, the factor route: 512 multiply-adds per Gram
entry instead of 65,536) and n from 1,024 up to the largest that this machine's memory
budget allows for one n x n matrix (a float α), times:

* ``ntk_gram``: the (n, n) NTK from the factors (blocked GEMMs over the term pairs, the
  tabulated orthant probability applied in place, upper triangle mirrored), and the same
  kernel as it was computed before (``KroneckerData.gram`` and the 32-node quadrature of
  ``orthant_probability`` on every entry, "quadrature s"), where that fits a short run;
* ``cholesky``: (H + αI) c = y in place (a float α; n³/3 flops);
* ``eigh path``: α chosen by exact leave-one-out over the 29-value grid, one eigendecomposition
  (alpha="auto"), up to ``--eigh-max``;
* ``predict``: kernel rows of 1,000 new points and their product with c.

A second, smaller family has rank-8 points at 128 ⊗ 128 (the dense-row route: d = 16,384
multiply-adds per entry against R² Σ d_l = 16,384 from factors).

Usage: ``python benchmarks/bench_ntk.py --quick`` or ``python benchmarks/bench_ntk.py``;
prints a table and writes bench-out/bench_ntk.json. Single runs (each step is seconds
long); the machine is shared, so its load average is recorded.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from _common import log, machine_info
from kronsgd import KroneckerData
from kronsgd.base.memory import available_bytes, format_bytes
from kronsgd.estimators.kernel_ridge import cholesky_solve, ridge_path
from kronsgd.estimators.ntk import ALPHA_GRID
from kronsgd.model.net import default_shift, fire_fraction
from kronsgd.theory import ntk_cross, ntk_gram, orthant_probability
from kronsgd.theory.gram import inner_product_cost

SHIFT = default_shift(1024)


def points(n: int, dims: tuple[int, ...], rank: int, seed: int) -> tuple[KroneckerData, np.ndarray]:
    """Random rank-R points and a nonlinear target of two of their coordinates' directions."""
    rng = np.random.default_rng(seed)
    data = KroneckerData([rng.standard_normal((n, rank, d)) for d in dims])
    u = data.factors[0][:, 0, :]  # (n, d1)
    y = np.tanh(3 * u[:, 0] / np.linalg.norm(u, axis=1)) + (u[:, 1] > 0)  # (n,)
    return data, y[:, None]


def quadrature_gram(data: KroneckerData, shift: float) -> np.ndarray:
    """The kernel as computed before the table: the Gram, then the quadrature on every entry."""
    rho = np.clip(data.normalized().gram(), -1.0, 1.0)  # (n, n)
    np.fill_diagonal(rho, 1.0)
    rows = max(1, (1 << 15) // data.n)
    for i0 in range(0, data.n, rows):
        block = rho[i0 : i0 + rows]  # (rows, n)
        block *= orthant_probability(block, shift)
    return rho


def timed(fn):
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def measure(n: int, dims, rank: int, args) -> dict:
    data, y = points(n, dims, rank, seed=n)
    new, _ = points(1000, dims, rank, seed=n + 1)
    route = inner_product_cost(data, data)[0]
    row = {"n": n, "dims": list(dims), "rank": rank, "route": route, "kernel_bytes": 8 * n * n}
    H, row["gram_s"] = timed(lambda: ntk_gram(data, SHIFT))
    if n <= args.quadrature_max:
        old, row["quadrature_s"] = timed(lambda: quadrature_gram(data, SHIFT))
        row["max_diff_vs_quadrature"] = float(np.abs(old - H).max() / fire_fraction(SHIFT))
        del old
    yc = y - y.mean()
    alpha = 1e-3 * fire_fraction(SHIFT)
    if n <= args.eigh_max:
        kernel = H.copy()  # ridge_path overwrites its kernel
        path, row["eigh_path_s"] = timed(lambda: ridge_path(kernel, yc, fire_fraction(SHIFT) * ALPHA_GRID, "loo"))
        del kernel
        alpha = float(path.alphas[path.best])
        row["alpha_over_diagonal"] = alpha / fire_fraction(SHIFT)
    started = time.perf_counter()
    coef = cholesky_solve(H, yc, alpha, rebuild=lambda: ntk_gram(data, SHIFT))  # H factored in place
    row["cholesky_s"] = time.perf_counter() - started
    del H  # free the kernel before the prediction
    _, row["predict_1000_s"] = timed(lambda: ntk_cross(new, data, SHIFT) @ coef)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n up to 4,096 only")
    parser.add_argument("--sizes", default=None, help="comma-separated n (default 1024 .. the memory limit)")
    parser.add_argument("--eigh-max", type=int, default=8192, help="largest n of the eigendecomposition path")
    parser.add_argument("--quadrature-max", type=int, default=4096, help="largest n of the old quadrature kernel")
    parser.add_argument("--out", default="bench-out/bench_ntk.json")
    args = parser.parse_args(argv)
    budget = available_bytes() // 2  # the estimators' default memory_budget
    n_limit = math.isqrt(budget // 8)  # one n x n float64 matrix (a float α)
    if args.sizes:
        sizes = [int(s) for s in args.sizes.split(",")]
    elif args.quick:
        sizes = [1024, 2048, 4096]
    else:
        sizes = [1024, 2048, 4096, 8192, 16384] + [min(n_limit, 20480)]
    rows = []
    for dims, rank, family in (((256, 256), 1, sizes), ((128, 128), 8, [s for s in sizes if s <= 4096])):
        for n in family:
            log(f"n = {n}, dims {dims}, rank {rank} ...")
            rows.append(measure(n, dims, rank, args))
            log("  " + json.dumps(rows[-1]))
    header = (
        f"{'dims':>9} {'R':>2} {'route':>7} {'n':>6} {'H':>9} {'ntk_gram s':>10} {'quadr. s':>8} "
        f"{'speed-up':>8} {'cholesky s':>10} {'eigh+LOO s':>10} {'predict 1k s':>12}"
    )
    print(header)
    for r in rows:
        quad, eig = r.get("quadrature_s"), r.get("eigh_path_s")
        cells = [
            "x".join(map(str, r["dims"])).rjust(9), str(r["rank"]).rjust(2), r["route"].rjust(7), str(r["n"]).rjust(6),
            format_bytes(r["kernel_bytes"]).rjust(9), f"{r['gram_s']:10.2f}",
            (f"{quad:.2f}" if quad else "-").rjust(8), (f"{quad / r['gram_s']:.1f}x" if quad else "-").rjust(8),
            f"{r['cholesky_s']:10.2f}", (f"{eig:.2f}" if eig else "-").rjust(10), f"{r['predict_1000_s']:12.3f}",
        ]
        print(" ".join(cells))
    print(f"memory budget (half the free memory): {format_bytes(budget)}: a float alpha fits n <= {n_limit}, "
          f"alpha='auto' n <= {math.isqrt(budget // 24)} (evd) / {math.isqrt(budget // 16)} (evr)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"rows": rows, "budget_bytes": budget, "n_limit_float_alpha": n_limit, "shift": SHIFT,
              "machine": machine_info(), "blas_threads": os.environ.get("OMP_NUM_THREADS")}
    out.write_text(json.dumps(result, indent=1))
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
