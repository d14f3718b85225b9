"""Planning a KronSGD run before anything is allocated: Gram mode, update window, log size, fired mode.

Every choice is arithmetic on the run's sizes and the memory budget (DESIGN.md §4), except
fired="auto", which asks the tree's cost model (tree_cost.py). Nothing here allocates.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..base.errors import PerformanceWarning, ValidationError
from ..base.memory import GRAM_SHARE, format_bytes, require
from ..base.validation import check_int
from ..data.products import entry_cost
from ..model.net import fire_fraction
from .tree import tree_bytes
from .tree_cost import predict_fired

WINDOW_MAX = 8  # pending records; fastest at n = 4096 on a 2-core machine (benchmarks/bench_window.py)
_FOLD_BYTES = 16 * 2**20  # "auto": the Gram rows of one window's records stay inside L3 (window 8 up to n = 16384)
_P_CACHED_BYTES = 4 * 2**20  # "auto": below this P lives in cache and the window is 1 (measured: faster)
_SHORT_ROWS = 1024  # "auto": with fewer points than this the window is 1
GRAM_BUILD_BYTES = 64 * 2**20  # room counted for the temporaries of building the precomputed Gram matrix


@dataclass(frozen=True)
class Sizes:
    """What a plan depends on: m neurons, n points, the batch, P's dtype, the threshold, the workers."""

    m: int
    n: int
    batch: int
    dtype: np.dtype
    shift: float
    workers: int
    lag: int = 0  # records the log must keep after they are folded (a delayed update reads them back)


@dataclass(frozen=True)
class Plan:
    fired: str  # "scan" or "tree"
    gram: str  # "precomputed" or "on_the_fly"
    window: int  # records a worker may leave unfolded
    slots: int  # records in the log's ring
    pairs: int  # fired pairs one slot holds at first (grown on demand)


def plan_run(sizes: Sizes, gram: str, window, fired: str, budget: int) -> Plan:
    """The run's plan within ``budget`` bytes, or a MemoryBudgetError/ValidationError that says what to change."""
    if fired == "tree" and window not in ("auto", 1):
        raise ValidationError(
            f'window must be 1 or "auto" when fired="tree": the tree indexes P as folded, so every '
            f"update is folded before the next query. Got {window}."
        )
    fired = _fired_mode(sizes, gram, window, fired, budget)
    tree = tree_bytes(sizes.m, sizes.n, sizes.dtype.itemsize, sizes.workers) if fired == "tree" else 0
    gram, window, slots, pairs = _memory(sizes, gram, budget, 1 if fired == "tree" else window, tree)
    return Plan(fired, gram, window, slots, pairs)


def _fired_mode(sizes: Sizes, gram: str, window, fired: str, budget: int) -> str:
    """The fired-set method: as asked, or for "auto" the one the cost model predicts faster."""
    if fired != "auto":
        return fired
    m, n, item = sizes.m, sizes.n, sizes.dtype.itemsize
    if window not in ("auto", 1) or 2 * m * n * item + tree_bytes(m, n, item, sizes.workers) > budget // 2:
        return "scan"  # an explicit window > 1 rules the tree out, and so does a tight memory budget
    scan_window = _memory(sizes, gram, budget, window)[1]  # what the scan would run with
    return predict_fired(m, fire_fraction(sizes.shift), n, sizes.batch, item, scan_window)


def _memory(sizes: Sizes, gram: str, budget: int, window, tree_bytes: int = 0):
    """Choose the Gram mode and the window within the memory budget, or refuse clearly.

    Returns (gram mode, window, log slots, pairs per slot).
    """
    m, n, B, item, workers = sizes.m, sizes.n, sizes.batch, sizes.dtype.itemsize, sizes.workers
    # one log slot: a batch's Gram rows and indices, and its fired pairs (grown if needed)
    pairs = min(B * m, int(2 * B * m * fire_fraction(sizes.shift)) + 64)
    slot_bytes = B * (n * item + 8) + (m + 1) * 8 + pairs * (20 + item)  # owner, touched row, pair row, coef
    fixed = 2 * m * n * item + (2 * workers + 2) * slot_bytes + tree_bytes  # P, alpha, the smallest log, the tree
    require(
        fixed,
        budget,
        f"P and alpha ({m} neurons x {n} points, {sizes.dtype.name}) with the update log"
        + (" and the fired-neuron tree" if tree_bytes else ""),
        "Use fewer points per trainer, a smaller width, or dtype=numpy.float32.",
    )
    gram_bytes = n * n * item
    build = min(n * n * item, max(GRAM_BUILD_BYTES, n * item))  # the temporaries G is built through
    if gram == "auto":
        fits = gram_bytes <= GRAM_SHARE * budget and fixed + gram_bytes + build <= budget
        gram = "precomputed" if fits else "on_the_fly"
    if gram == "precomputed":
        require(
            fixed + gram_bytes + build,
            budget,
            f"the precomputed Gram matrix ({n} x {n}, {format_bytes(gram_bytes)}, built through "
            f"blocks of {format_bytes(build)}) with P, alpha and the log",
            'Pass gram="on_the_fly" to compute the batch\'s Gram rows each step instead.',
        )
        fixed += gram_bytes
    if window == "auto":
        room = (budget - fixed) // (2 * workers * slot_bytes)  # what the budget allows beyond the smallest log
        # P in cache, or rows too short to be worth deferring (the corrections sweep all m rows per
        # pending record): deferring saves nothing, measured (benchmarks/bench_window.py, bench_tree.py)
        cached = m * n * item <= _P_CACHED_BYTES or n < _SHORT_ROWS
        window = 1 if cached else int(max(1, min(WINDOW_MAX, _FOLD_BYTES // (B * n * item), room)))
    window = check_int(window, "window", low=1)
    slots = 2 * window * workers + 2 + sizes.lag  # enough that workers rarely wait for a free slot
    require(
        fixed + (slots - 2 * workers - 2) * slot_bytes,
        budget,
        f"the update log of {slots} records (window={window}"
        + (f", and the last {sizes.lag} records a delay reads back" if sizes.lag else "")
        + ") with P, alpha and G",
        "Use a smaller window" + (", a smaller delay cap" if sizes.lag else "") + " or fewer points.",
    )
    return gram, window, slots, pairs


GRAM_ROWS_WARN = 1e9  # multiply-adds of a step's Gram rows above which gram="auto" warns (~20 ms at BLAS speed)


def warn_gram_rows(sizes: Sizes, gram: str, data, budget: int) -> None:
    """Warn when gram="auto" computes Gram rows every step at a cost that dwarfs the step.

    The rows of a batch cost |S| · n · min(d, R² Σ d_l) multiply-adds; on photos at n = 32,000
    that is 1.7e10 a step (hours for a run), where the kept matrix needs only a larger budget.
    """
    entry = entry_cost(data.dims, data.rank)
    work = sizes.batch * sizes.n * entry
    if gram != "on_the_fly" or work < GRAM_ROWS_WARN:
        return
    gram_bytes = sizes.n * sizes.n * sizes.dtype.itemsize
    smaller = " (or dtype=numpy.float32, half of it)" if sizes.dtype.itemsize > 4 else ""
    warnings.warn(
        f"KronSGD computes the batch's Gram rows every step ({work:.3g} multiply-adds a step, "
        f"{sizes.batch} x {sizes.n} entries of {entry:,} each): the {sizes.n} x {sizes.n} Gram matrix "
        f"({format_bytes(gram_bytes)}) is over {GRAM_SHARE:.0%} of memory_budget ({format_bytes(budget)}). "
        f"A memory_budget of {format_bytes(int(gram_bytes / GRAM_SHARE))}{smaller} keeps it and makes the steps "
        'far cheaper; pass gram="on_the_fly" to silence this.',
        PerformanceWarning,
        stacklevel=3,
    )


def gram_matrix(data, dtype, budget: int) -> np.ndarray:
    """The (n, n) Gram matrix, computed in ``dtype`` (float32 BLAS for a float32 run), temporaries within ``budget``."""
    return data.gram(dtype=dtype, max_bytes=budget)
