"""The tiled Cholesky of the kernel estimators against LAPACK's, and against the machine's GEMM.

Beyond n = 16,384 KronNTK* factors H + αI by tiles (``kronsgd.estimators.cholesky``), because
the threaded dpotrf of SciPy's bundled OpenBLAS crashes there. This measures, side by side
in one process, at each n: SciPy's ``cho_factor`` (one LAPACK call), the tiled factorisation,
and a float64 GEMM of the same work, n³/6 multiply-adds (the machine's bound for it); and
the largest difference of the two solutions of (H + I) X = Y, relative to the largest |X|.
Repeats alternate; the fastest of each is kept.

Usage: ``python benchmarks/bench_cholesky.py`` (n = 4,096 and 8,192, about a minute) or
``--sizes 4096,8192,16384``; writes bench-out/bench_cholesky.json.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import scipy.linalg

from _common import log, save_rows
from kronsgd.estimators.cholesky import factor_lower, solve_lower


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="4096,8192")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default="bench-out/bench_cholesky.json")
    args = parser.parse_args(argv)
    rows = []
    for n in (int(v) for v in args.sizes.split(",")):
        rng = np.random.default_rng(n)
        M = rng.standard_normal((n, 64))  # (n, 64)
        H = M @ M.T / 64  # (n, n) a rank-64 kernel, positive definite once shifted
        H.flat[:: n + 1] += 1.0
        Y = rng.standard_normal((n, 2))  # (n, 2)
        k = max(1, round(n / 6))  # (n, k) @ (k, n): n² k ≈ n³ / 6 multiply-adds, the Cholesky's n³ / 3 flops
        A, B = rng.standard_normal((n, k)), rng.standard_normal((k, n))
        best = {"lapack": math.inf, "tiles": math.inf, "gemm": math.inf}
        for _ in range(args.repeats):
            work = H.copy()
            lapack = lambda w=work: scipy.linalg.cho_factor(w.T, lower=False, overwrite_a=True, check_finite=False)  # noqa: E731
            t, factor = timed(lapack)
            best["lapack"] = min(best["lapack"], t)
            X_lapack = scipy.linalg.cho_solve(factor, Y, check_finite=False)
            work = H.copy()
            t, L = timed(lambda w=work: factor_lower(w))
            best["tiles"] = min(best["tiles"], t)
            X_tiles = solve_lower(L, Y)
            best["gemm"] = min(best["gemm"], timed(lambda a=A, b=B: a @ b)[0])
        row = {"n": n, **{f"{key}_s": value for key, value in best.items()},
               "tiles_over_lapack": best["tiles"] / best["lapack"], "tiles_over_gemm": best["tiles"] / best["gemm"],
               "solution_difference": float(np.max(np.abs(X_tiles - X_lapack)) / np.max(np.abs(X_lapack)))}  # fmt: skip
        rows.append(row)
        log(f"  n = {n}: LAPACK {best['lapack']:.2f} s, tiles {best['tiles']:.2f} s "
            f"({row['tiles_over_lapack']:.2f}x), GEMM of its n³/6 multiply-adds {best['gemm']:.2f} s "
            f"({row['tiles_over_gemm']:.2f}x), "
            f"solutions differ by {row['solution_difference']:.1e}")  # fmt: skip
    save_rows(args.out, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
