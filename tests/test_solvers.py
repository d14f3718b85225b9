"""Which solver fits: the kernel limit, KronSGD and dense SGD, predicted and recommended."""

import json

import numpy as np
import pytest

from kronsgd import inspect
from kronsgd.advisor.solvers import advise_solver, kernel_rates


def _auto_bytes(n, outputs=1):
    """What KronNTK*.fit with alpha="auto" needs at least: H, its eigenvectors, every candidate's coefficients."""
    return 16 * n * n + 8 * n * (2 * 29 * outputs + 2 * 29 + 32)


RATES = dict(sgd_step_seconds=3e-4, dense_step_seconds=0.05, gemm_rate=2e10, gemm64_rate=1e10, entry_seconds=3e-8)


def test_small_n_recommends_the_kernel_and_large_n_kronsgd():
    # n = 1000 at d = 2^16: KronSGD's set-up (m · n · d) outweighs the kernel's n³
    small = advise_solver(1000, (256, 256), 1, budget=2**33, **RATES)
    assert small.recommended == "kernel" and "the fastest that fits" in small.reason
    large = advise_solver(200_000, (256, 256), 1, budget=2**33, **RATES)
    kernel = large.estimates[0]
    assert kernel.name == "kernel" and kernel.nbytes == _auto_bytes(200_000) and not kernel.fits
    assert large.recommended == "sgd" and "exceed the budget" in large.reason
    assert "over the budget" in str(large) and "recommended: sgd" in str(large)


def test_kernel_cost_grows_as_n_cubed_and_memory_as_n_squared():
    a = advise_solver(4000, (256, 256), 1, budget=2**40, **RATES).estimates[0]
    b = advise_solver(8000, (256, 256), 1, budget=2**40, **RATES).estimates[0]
    assert b.nbytes == pytest.approx(4 * a.nbytes, rel=1e-2)
    assert 4 < b.seconds / a.seconds <= 8
    fixed = advise_solver(8000, (256, 256), 1, alpha_auto=False, budget=2**40, **RATES).estimates[0]
    assert fixed.seconds < b.seconds and fixed.nbytes == 8 * 8000**2 + 16 * 8000 and "Cholesky" in fixed.detail


def test_nothing_fits_takes_the_least_memory():
    advice = advise_solver(10**6, (1024, 1024), 4, budget=2**20, **RATES)
    assert not any(e.fits for e in advice.estimates)
    assert advice.recommended == min(advice.estimates, key=lambda e: e.nbytes).name
    assert "nothing fits" in advice.reason


def test_rates_are_measured_once_and_positive():
    rates = kernel_rates()
    assert rates["gemm64"] > 1e6 and 0 < rates["entry"] < 1e-5
    assert kernel_rates() == rates


def test_inspect_reports_the_solvers():
    rng = np.random.default_rng(0)
    X = np.einsum("ia,ib->iab", rng.normal(size=(300, 16)), rng.normal(size=(300, 16))).reshape(300, 256)
    report = inspect(X)
    assert report.solvers is not None and report.solvers.recommended in ("kernel", "sgd", "dense")
    assert "Which solver fits" in str(report)
    loaded = json.loads(json.dumps(report.to_dict()))
    assert [e["name"] for e in loaded["solvers"]["estimates"]] == ["kernel", "sgd", "dense"]
    assert loaded["solvers"]["estimates"][0]["nbytes"] == _auto_bytes(300)


def test_the_kernel_memory_is_what_the_estimator_accepts():
    """At exactly the predicted bytes KronNTK*.fit runs; one byte less and it refuses."""
    pytest.importorskip("sklearn")
    from kronsgd import KronNTKRegressor, MemoryBudgetError
    from kronsgd.advisor.solvers import ALPHA_CANDIDATES
    from kronsgd.estimators.ntk import ALPHA_GRID

    assert ALPHA_CANDIDATES == ALPHA_GRID.size
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(50, 12)), rng.normal(size=(50, 2))
    for alpha_auto, alpha in ((True, "auto"), (False, 0.1)):
        need = advise_solver(50, (3, 4), 1, alpha_auto=alpha_auto, outputs=2, budget=2**30, **RATES).estimates[0]
        KronNTKRegressor(alpha=alpha, memory_budget=need.nbytes, factor_shape=(3, 4)).fit(X, y)
        with pytest.raises(MemoryBudgetError):
            KronNTKRegressor(alpha=alpha, memory_budget=need.nbytes - 1, factor_shape=(3, 4)).fit(X, y)


def test_core_seconds_runs_on_one_thread_and_restores_the_pools():
    import numba
    from threadpoolctl import threadpool_info

    from kronsgd.advisor.solvers import core_seconds

    before = (numba.get_num_threads(), [lib["num_threads"] for lib in threadpool_info()])
    seen = []

    def probe():
        seen.append((numba.get_num_threads(), {lib["num_threads"] for lib in threadpool_info()}))

    assert core_seconds(probe, repeats=2) > 0
    assert seen == [(1, {1})] * 3  # a warm-up and two timed calls, all on one thread
    assert (numba.get_num_threads(), [lib["num_threads"] for lib in threadpool_info()]) == before

    def fails():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        core_seconds(fails)
    assert numba.get_num_threads() == before[0]


def test_kernel_rates_scale_one_core_by_the_cores():
    rates = kernel_rates()
    assert rates["cores"] >= 1
    assert rates["gemm64"] == pytest.approx(rates["cores"] * rates["gemm64_core"])
