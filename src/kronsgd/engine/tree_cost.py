"""fired="auto": which way of finding fired neurons is faster here, predicted from unit costs measured on this machine.

The scan reads all m keys of each batch point; the tree (tree.py) reads about 2.3–5.5 cache
lines per fired neuron but must be kept valid as P changes. Which costs less depends on m,
the fire fraction, n, the batch and the machine's caches: the model below predicts both
from a handful of unit costs, each measured the first time a prediction needs it.
"""

from __future__ import annotations

import math
import time

import numpy as np

from ..kernels import step as K
from ..kernels import tree as TK
from ..kernels import tree_fold as TF
from .tree import TOP, FiredTree

# ---- "auto": a cost model of the part of a step that differs --------------------------
# scan: per row of P, gather the batch's B keys into an (m, B) buffer (the distinct cache
#       lines they fall in, at t_line each, and t_key per key), plus, once that buffer
#       outgrows the cache, its traffic (written, read for ownership, read back); with a
#       window of W records, bring the gathered keys up to date with (W - 1) / 2 pending
#       records on average: a sweep of each (t_sweep per row) and a random update of a
#       buffer row per fired pair (t_read, the price of a random read);
# tree: B queries of expected_reads(m, Φ̄) reads at t_read each; keeping the tree valid for
#       the rows a fold rewrites (t_row per row: the fused fold's extra time over the plain
#       one, measured for folds touching one row in 64 and one in 4, which differ, plus, for
#       the RAISED share of them whose headroom ran out, t_raise per column);
#       and folding every record on its own (window 1): rows that several records of a
#       window touch are then rewritten once per record, not once per window.
# The Gram rows and the coefficients cost the same either way. The unit costs are measured
# on P of 1, 16 and 64 MiB (in L2, in the last-level cache, beyond it), each size the first
# time a prediction needs it, kept for the process, and interpolated in
# log(size of P): a small problem never pays for measuring a large one.
_MARGIN = 1.0  # no lean: near the crossover the predicted differences are within ~0.1 ms of the measured
RAISED = 0.03  # share of the rows a fold rewrites whose bounds are raised: 0.7-3 % in benchmarks/bench_tree.py
_CALIBRATION: dict = {}  # index into _SIZES -> unit costs measured there
_SIZES = (2**12, 2**16, 2**18)  # rows of the calibration P, n = 64 float32: 1, 16 and 64 MiB
_N, _B, _FRACTION = 64, 16, 0.003
_EVERY = (64, 4)  # folds are calibrated touching one row in 64 and one in 4 (they prefetch from one in 16 on)


def expected_reads(m: int, fraction: float, top: int = TOP) -> float:
    """Reads of a query on a tight tree when each of the m keys passes with probability ``fraction``.

    The level scanned whole, in lines; then a node of level l >= 1 (16^l keys) is entered when
    one of its keys passes; then every passing key is confirmed (see ``tight_visits``).
    """
    off, start = TK.layout(m), TK.start_level(m, top)
    miss = max(0.0, 1.0 - fraction)
    reads, size, keys = (off[start + 1] - off[start]) / TK.FANOUT, max(1, m), 1
    for _ in range(start):
        size, keys = -(-size // TK.FANOUT), keys * TK.FANOUT
        reads += size * (1.0 - miss ** min(keys, m))
    return float(reads + m * fraction)


def _lines(n: int, batch: int, itemsize: int) -> float:
    """Expected distinct cache lines holding ``batch`` random entries of a row of n."""
    per_row = max(1, n * itemsize // 64)
    return per_row * (1.0 - (1.0 - 1.0 / per_row) ** batch)


def predicted_seconds(m: int, fraction: float, n: int, batch: int, itemsize: int, window: int = 8) -> dict:
    """Predicted seconds per step of the scan and of the tree (the parts that differ)."""
    sizes = [math.log(rows * _N * 4) for rows in _SIZES]  # bytes of the calibration P (and of its (m, B) keys)

    def unit(key, nbytes):  # piecewise log-linear between the measured sizes, flat beyond them
        x = min(max(math.log(nbytes), sizes[0]), sizes[-1])
        k = max(i for i in range(len(sizes) - 1) if sizes[i] <= x) if x < sizes[-1] else len(sizes) - 2
        w = (x - sizes[k]) / (sizes[k + 1] - sizes[k])
        if w <= 0.0 or w >= 1.0:  # at a measured size: measure only that one
            return _costs(k if w <= 0.0 else k + 1)[key]
        return math.exp((1 - w) * math.log(_costs(k)[key]) + w * math.log(_costs(k + 1)[key]))

    size = m * n * itemsize  # P
    per_row = _lines(n, batch, itemsize) * unit("t_line", size) + batch * unit("t_key", size)
    spill = min(1.0, max(0.0, math.log(m * batch * itemsize / (_SIZES[-1] * _B * 4)) / math.log(4)))
    if spill > 0.0:  # the (m, B) keys outgrow the cache: their traffic, at a line from memory each
        per_row += spill * 3 * batch * itemsize / 64 * unit("t_line", 2**40)
    miss = max(0.0, 1.0 - fraction)
    rows = m * (1.0 - miss**batch)  # rows one record touches
    pending = (window - 1) / 2
    scan = m * per_row + pending * (m * unit("t_sweep", size) + rows * unit("t_read", size))
    reads = batch * expected_reads(m, fraction) * unit("t_read", size)
    share = min(max(rows / m, 1.0 / _EVERY[0]), 1.0 / _EVERY[1])  # of the rows a fold touches, log-interpolated:
    w = math.log(share * _EVERY[0]) / math.log(_EVERY[0] / _EVERY[1])
    t_row = math.exp((1 - w) * math.log(unit("t_row_sparse", size)) + w * math.log(unit("t_row_dense", size)))
    maintain = rows * (t_row + RAISED * n * unit("t_raise", size))
    shared = rows - m * (1.0 - miss ** (batch * window)) / window  # rows per step a window folds only once
    refold = shared * 2 * max(1.0, n * itemsize / 64) * unit("t_line", size)
    return {"scan": scan, "tree": reads + maintain + refold}


def predict_fired(m: int, fraction: float, n: int, batch: int, itemsize: int, window: int = 8) -> str:
    """"tree" when its predicted part of a step is at most _MARGIN times the scan's, else "scan".

    Near the crossover both methods take about as long, so a wrong pick there costs little
    (benchmarks/bench_tree.py prints the predictions next to the measured steps).
    """
    seconds = predicted_seconds(m, fraction, n, batch, itemsize, window)
    return "tree" if seconds["tree"] <= _MARGIN * seconds["scan"] else "scan"


def calibration() -> list:
    """Unit costs in seconds at every calibration size, kept for the process.

    Measuring a size costs, on this project's 2-core machine, about 0.1 s at 1 MiB, 0.4 s at
    16 MiB and 0.5 s at 64 MiB when the machine is quiet (4 s with other work running);
    a prediction measures only the sizes it needs, the first time it needs them.
    """
    return [_costs(i) for i in range(len(_SIZES))]


def _costs(i: int) -> dict:
    """Unit costs at calibration size i, measured on first use."""
    if i not in _CALIBRATION:
        if not _CALIBRATION:
            _measure(64)  # load every kernel first: compilation is not a cost of a step
        _CALIBRATION[i] = _measure(_SIZES[i])
    return _CALIBRATION[i]


def _best(run, repeats=3) -> float:
    """The fastest of ``repeats`` runs: the first also pays for touching fresh memory."""
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def _measure(m: int) -> dict:
    """Unit costs on a (m, 64) float32 P of standard normal keys (tiled from 4096 rows)."""
    rng = np.random.default_rng(0)
    tile = rng.standard_normal((min(m, 4096), _N)).astype(np.float32)
    P = np.tile(tile, (m // tile.shape[0], 1))  # (m, 64)
    shift = float(np.quantile(tile, 1 - _FRACTION))
    a = np.ones((m, 1))
    fired_ptr, f = np.zeros(_B + 1, np.int64), np.zeros((_B, 1))
    fired_rows = np.zeros(int(4 * _FRACTION * _B * m) + 1024, np.int64)  # room for the fired pairs
    cols = np.zeros((m, _B), np.float32)  # (m, B)
    columns = rng.permutation(_N)[: 3 * _B].astype(np.int64)  # three batches of distinct columns

    def scan(width):
        K.gather_columns(P, columns[:width], cols[:, :width])
        K.forward_batch(cols[:, :width], a, np.arange(width), shift, 1.0, fired_ptr, fired_rows, f)

    one, many = _best(lambda: scan(1)) / m, _best(lambda: scan(_B)) / m
    lines = _lines(_N, _B, 4)  # per row: one line and one key with B = 1, `lines` lines and B keys with B
    t_key = max((many - lines * one) / (_B - lines), 0.05 * one)
    t_line = max(one - t_key, 0.05 * one)
    empty = np.zeros((1, m + 1), np.int64)  # a pending record with no pairs: the sweep alone
    g_rows, rec_size, owner = np.zeros((1, 1, _N), np.float32), np.ones(1, np.int64), np.zeros((1, 1), np.int64)
    scratch = np.zeros((1, _B), np.float32)
    sweep = _best(lambda: K.correct_columns(cols, columns[:_B], g_rows, rec_size, empty, owner,
                                            owner.astype(np.float32), np.zeros(1, np.int64), scratch))  # fmt: skip

    tree = FiredTree(P)
    stats, waste, reads = np.zeros(3, np.int64), np.zeros(_N, np.int64), []
    batches = iter(columns.reshape(3, _B))  # each repeat queries other columns

    def queries():
        TK.tree_forward(P, tree.bounds, tree.off, tree.start, tree.slack, a, next(batches), shift, 1.0, fired_ptr,
                        fired_rows, f, tree._frontier[0], waste, tree.headroom[0], stats)  # fmt: skip
        reads.append(int(stats[0]))

    t_read = _best(queries) / max(1, min(reads))
    g_rows = rng.standard_normal((1, 1, _N)).astype(np.float32)
    seconds = {}
    for every in _EVERY:  # records of SGD size touching one row in `every`
        pairs = np.zeros(m, np.int64)
        pairs[rng.choice(m, size=max(1, m // every), replace=False)] = 1
        row_ptr = np.concatenate([[0], np.cumsum(pairs)])[None]  # (1, m + 1)
        nnz = int(row_ptr[0, -1])
        lists = np.flatnonzero(pairs)[None], np.array([nnz])  # (1, nnz), (1,): the rows with a pair
        for name, scale in (("spend", 1e-6), ("raise", 1.0)):  # within every headroom; past every one
            coef = (scale * rng.standard_normal((1, nnz + 1))).astype(np.float32)
            record = (g_rows, row_ptr, np.zeros((1, nnz + 1), np.int64), coef, np.zeros(1, np.int64))
            plain, fused = _fold_seconds(P, tree, record, lists, raising=name == "raise")
            seconds[name, every] = max(fused - plain, 0.01 * plain) / max(1, nnz)
    sparse, dense = _EVERY
    t_raise = max(seconds["raise", sparse] - seconds["spend", sparse], 0.01 * seconds["spend", sparse]) / _N
    return {"t_line": t_line, "t_key": t_key, "t_sweep": sweep / m, "t_read": t_read,
            "t_row_sparse": seconds["spend", sparse], "t_row_dense": seconds["spend", dense], "t_raise": t_raise}


def _fold_seconds(P, tree, record, lists, raising: bool) -> tuple[float, float]:
    """Best of 3 seconds of folding ``record`` into P plainly and keeping ``tree`` valid.

    ``raising``: every row's headroom is set to 0 (always valid: the bounds are >= the keys)
    before each fused fold, so that every row whose key rises is raised, as the first time
    (a raise buys room for the next folds); else the record's changes fit the headroom.
    """
    plain = fused = math.inf
    counts = np.zeros(2, np.int64)
    for _ in range(3):
        plain = min(plain, _best(lambda: K.fold_records(P, *record, 0, P.shape[1], *lists), 1))
        if raising:
            tree.headroom[0][:] = 0.0
        fused = min(fused, _best(lambda: TF.fold_and_raise(
            P, tree.bounds, tree.off, *record, 0, P.shape[1], tree.headroom[0], tree.slack, counts, *lists), 1))
    return plain, fused
