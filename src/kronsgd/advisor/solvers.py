"""Which solver fits: predicted time and memory of the kernel limit, KronSGD and dense SGD.

The same network can be fitted three ways (DESIGN.md §9):

* **kernel** (``KronNTK*``): its infinite-width limit, kernel ridge regression with the NTK.
  Time: the n x n kernel from the factors (n²/2 entries of min(d, R² Σ d_l) multiply-adds
  each) plus the solve (Cholesky n³/6 multiply-adds for a fixed α, 1.6x by tiles beyond n = 16,384;
  an eigendecomposition of about 5 n³ GEMM-equivalents for alpha="auto"),
  float64. Memory: one or two n x n float64 matrices.
* **sgd** (``KronMLP*``/``KronSGD``): set-up (the Gram matrix, n²/2 entries again, when
  it is kept, and the initial pre-activations P0, m · n · d multiply-adds) and ``epochs``
  passes of steps whose cost does not grow with d. Memory: P and α (m x n) and the Gram
  matrix (n x n) when it takes at most a quarter of the budget, at 4 bytes (float32).
* **dense** SGD on the materialised x and W: 2 · m · |S| · d multiply-adds per step; memory
  m · d + n · d.

Times come from this machine's measured rates (``machine_rates`` and a float64 GEMM), taken
in CPU time of one core and scaled by the cores (so the advice does not change with the
load of a shared machine: it predicts the time on an idle one). They are estimates, good to
a small factor; the recommendation is the fastest solver whose memory fits the budget, with
the reason. KronSGD's time is that of ``epochs`` passes at its
cost model's step time and BLAS-speed set-up; the kernel's is that of the exact
infinite-width solution with α chosen by leave-one-out, which SGD approaches only with
enough steps (DESIGN.md §9: 0.97 test accuracy for the kernel in 7 s on the photos patches,
0.95 for KronSGD after about 20,000 steps).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time

import numba
import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from ..base.memory import GRAM_SHARE, format_bytes, resolve_budget
from ..data.products import entry_cost
from ..estimators.cholesky import DIRECT_MAX
from ..theory.orthant_table import orthant_table

_EIGH_GEMMS = 5.0  # eigh with vectors ≈ 5 GEMMs of the same n (1 thread, n = 1,400: 0.8 s vs 0.19 s; 2 threads alike)
_CHOLESKY_GEMMS = 1.0 / 6.0  # n³/3 flops = n³/6 multiply-adds at GEMM speed (measured at n = 8,192)
_TILES_SLOWER = 1.6  # the tiled Cholesky against LAPACK's (measured at n = 8,192: 1.56-1.71x)
_RATES64: dict[str, float] = {}  # measured once per process
ALPHA_CANDIDATES = 29  # KronNTK*'s alpha="auto" grid (estimators/ntk.py, ALPHA_GRID): its memory grows with it


def kernel_rates() -> dict[str, float]:
    """This machine's float64 GEMM rate and NTK entry time, measured once in about 50 ms.

    Returns
    -------
    dict with ``gemm64`` (multiply-adds/s of a 384³ float64 product on all ``cores``),
    ``gemm64_core`` (the same on one core), ``entry`` (seconds to turn one correlation into
    an NTK entry, an arcsin and a polynomial, on all cores) and ``cores``. Measured in CPU
    time of one core (``core_seconds``) and scaled by the cores: the same on a busy machine.
    """
    if not _RATES64:
        cores = parallel_cores()
        a = np.random.default_rng(0).standard_normal((384, 384))  # (384, 384)
        _RATES64["gemm64_core"] = 384**3 / core_seconds(lambda: a @ a)
        _RATES64["gemm64"] = cores * _RATES64["gemm64_core"]
        table = orthant_table(1.0)
        block = np.clip(a / 40.0, -1.0, 1.0)  # (384, 384) correlations
        _RATES64["entry"] = core_seconds(lambda: table.ntk_inplace(block.copy())) / block.size / cores
        _RATES64["cores"] = float(cores)
    return dict(_RATES64)


def parallel_cores() -> int:
    """Cores that BLAS and numba's parallel loops run on: the fewer of their threads and this process's CPUs."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cpus = os.cpu_count() or 1
    blas = [lib["num_threads"] for lib in threadpool_info() if lib.get("user_api") == "blas"]
    return max(1, min(cpus, numba.get_num_threads(), max(blas, default=cpus)))


def core_seconds(fn, repeats: int = 3) -> float:
    """CPU seconds of one core for ``fn``: the least of ``repeats`` calls after a warm-up.

    BLAS and numba run on one thread and the calling thread's CPU time is counted
    (``time.thread_time``), not the wall clock: a job that shares the cores stretches the
    wall time of a calibration by any factor (and the advice with it), not its CPU time.
    """
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with threadpool_limits(1):
            fn()
            best = math.inf
            for _ in range(repeats):
                start = time.thread_time()
                fn()
                best = min(best, time.thread_time() - start)
    finally:
        numba.set_num_threads(threads)
    return max(best, 1e-9)


@dataclasses.dataclass(frozen=True)
class SolverEstimate:
    """Predicted cost of one solver on the data at hand."""

    name: str  # "kernel", "sgd" or "dense"
    seconds: float  # fit, set-up included
    nbytes: int  # peak memory of its large arrays
    fits: bool  # nbytes within the budget
    detail: str  # what the time is made of


@dataclasses.dataclass(frozen=True)
class SolverAdvice:
    """The estimates of every solver and the one recommended, with the reason."""

    estimates: tuple[SolverEstimate, ...]
    recommended: str
    reason: str
    budget: int

    def __str__(self) -> str:
        lines = [f"Which solver fits (memory budget {format_bytes(self.budget)})"]
        for e in self.estimates:
            mark = "" if e.fits else "   over the budget"
            lines.append(f"  {e.name:<7} {_seconds(e.seconds):>9}  {format_bytes(e.nbytes):>10}   {e.detail}{mark}")
        lines.append(f"  recommended: {self.recommended} ({self.reason})")
        return "\n".join(lines)


def advise_solver(
    n: int,
    dims: tuple[int, ...],
    rank: int,
    *,
    width: int = 1024,
    batch_size: int = 32,
    epochs: int = 20,
    alpha_auto: bool = True,
    sgd_step_seconds: float,
    dense_step_seconds: float,
    gemm_rate: float,
    gemm64_rate: float | None = None,
    entry_seconds: float | None = None,
    budget: int | None = None,
    steps: int | None = None,
    choices: tuple[str, ...] = ("kernel", "sgd", "dense"),
    outputs: int = 1,
    sgd_plan: tuple[str, int, bool] | None = None,
    sgd_setup_seconds: float | None = None,
) -> SolverAdvice:
    """Predict time and memory of the kernel limit, KronSGD and dense SGD, and pick one.

    Parameters
    ----------
    n, dims, rank
        Points, factor dimensions and Kronecker rank of the data.
    width, batch_size, epochs
        The net's m, |S| and passes over the data (KronMLP*'s defaults: 1024, 32, 20).
    alpha_auto : bool, default True
        The kernel chooses α from an eigendecomposition (else one Cholesky).
    sgd_step_seconds, dense_step_seconds
        Predicted time of one step (``inspect``'s cost model).
    gemm_rate : float
        float32 multiply-adds/s (``machine_rates()["gemm"]``).
    gemm64_rate, entry_seconds : float, optional
        float64 multiply-adds/s and seconds per NTK entry, on all cores; measured
        (``kernel_rates``) if None.
    budget : int or None
        Bytes; None means half the free memory.
    steps : int, optional
        SGD steps of the run to predict; None means ``epochs`` passes (at least 500 steps).
    choices : tuple of str, default ("kernel", "sgd", "dense")
        The solvers the recommendation is taken from (all are estimated); ``kronsgd train``
        runs "kernel" or "sgd" (dense SGD computes the same iterates as "sgd").
    outputs : int, default 1
        Target columns C: the kernel keeps (n, C) coefficients per candidate α.
    sgd_plan : (gram mode, bytes, fits), optional
        KronSGD's own plan for this run (``engine.plan.plan_run``), used instead of the rule
        below: "precomputed" or "on_the_fly", the bytes of its state and whether they fit.
    sgd_setup_seconds : float, optional
        KronSGD's predicted set-up (``costs.job_costs``: drawing W0, P0 by the cheaper route,
        the Gram matrix when kept); None estimates it as P0 and the Gram matrix at GEMM speed.

    Returns
    -------
    SolverAdvice

    Examples
    --------
    >>> rates = dict(gemm_rate=2e10, gemm64_rate=1e10, entry_seconds=3e-8)
    >>> small = advise_solver(1000, (256, 256), 1, sgd_step_seconds=3e-4, dense_step_seconds=0.1, **rates)
    >>> small.recommended, [e.name for e in small.estimates]
    ('kernel', ['kernel', 'sgd', 'dense'])
    >>> advise_solver(100_000, (256, 256), 1, sgd_step_seconds=3e-4, dense_step_seconds=0.1, budget=2**34,
    ...               **rates).recommended
    'sgd'
    """
    budget = resolve_budget(budget)
    d = math.prod(dims)
    entry = entry_cost(dims, rank)  # multiply-adds per inner product, the cheaper route
    measured = kernel_rates() if gemm64_rate is None or entry_seconds is None else {}
    rate64 = measured["gemm64"] if gemm64_rate is None else gemm64_rate
    entry_seconds = measured["entry"] if entry_seconds is None else entry_seconds
    steps = max(epochs * math.ceil(n / batch_size), 500) if steps is None else steps

    gram64 = n * n / 2 * (entry / rate64 + entry_seconds)
    # On an idle machine both use every core (eigh measured 5.5 s at n = 4,000 on 2 cores: 5 GEMMs
    # at the 2-core rate); Cholesky by tiles beyond DIRECT_MAX (estimators.cholesky), 1.6x LAPACK's time.
    solve = _EIGH_GEMMS * n**3 / rate64 if alpha_auto else _CHOLESKY_GEMMS * n**3 / rate64
    solve *= _TILES_SLOWER if n > DIRECT_MAX and not alpha_auto else 1.0
    # The least KronNTK*.fit accepts: H, and for alpha="auto" its eigenvectors (LAPACK's
    # O(n)-workspace driver) with the coefficients of every candidate; else the solution.
    A = ALPHA_CANDIDATES
    kernel_bytes = 16 * n * n + 8 * n * (2 * A * outputs + 2 * A + 32) if alpha_auto else 8 * n * n + 16 * n * outputs
    kernel = SolverEstimate(
        "kernel",
        gram64 + solve,
        kernel_bytes,
        kernel_bytes <= budget,
        f"kernel {_seconds(gram64)} + {'eigh' if alpha_auto else 'Cholesky'} {_seconds(solve)}",
    )
    # KronSGD keeps the Gram matrix when it takes at most GRAM_SHARE of the budget, else it
    # computes the batch's rows every step (then inside ``sgd_step_seconds``).
    gram_bytes = 4 * n * n if 4 * n * n <= GRAM_SHARE * budget else 0
    sgd_bytes, sgd_fits = 2 * 4 * width * n + gram_bytes, 2 * 4 * width * n + gram_bytes <= budget
    if sgd_plan is not None:
        gram_bytes = n * n if sgd_plan[0] == "precomputed" else 0  # only its truth value is used below
        sgd_bytes, sgd_fits = sgd_plan[1], sgd_plan[2]
    setup = sgd_setup_seconds
    if setup is None:
        setup = (n * n / 2 * entry if gram_bytes else 0) / gemm_rate + width * n * d / gemm_rate
    sgd = SolverEstimate(
        "sgd",
        setup + steps * sgd_step_seconds,
        sgd_bytes,
        sgd_fits,
        f"set-up {_seconds(setup)} + {steps:,} steps of {_seconds(sgd_step_seconds)} (m = {width})",
    )
    dense_bytes = 4 * width * d + 4 * n * d
    dense = SolverEstimate(
        "dense",
        steps * dense_step_seconds,
        dense_bytes,
        dense_bytes <= budget,
        f"{steps:,} steps of {_seconds(dense_step_seconds)}",
    )
    estimates = (kernel, sgd, dense)
    eligible = [e for e in estimates if e.name in choices]
    fitting = [e for e in eligible if e.fits]
    if not fitting:
        best = min(eligible, key=lambda e: e.nbytes)
        reason = "nothing fits the memory budget; this one needs the least"
    else:
        best = min(fitting, key=lambda e: e.seconds)
        others = [e for e in fitting if e is not best]
        reason = "the fastest that fits" + (
            f", {min(others, key=lambda e: e.seconds).seconds / best.seconds:.3g}x ahead of the next" if others else ""
        )
        if not kernel.fits and "kernel" in choices:
            reason += f"; the kernel's n x n matrices ({format_bytes(kernel.nbytes)}) exceed the budget"
    return SolverAdvice(estimates, best.name, reason, budget)


def _seconds(value: float) -> str:
    if value < 1e-3:
        return f"{value * 1e6:.3g} µs"
    if value < 1.0:
        return f"{value * 1e3:.3g} ms"
    if value < 3600:
        return f"{value:.3g} s"
    return f"{value / 3600:.3g} h"
