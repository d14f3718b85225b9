"""The AsynchronousTree index of P (DESIGN.md §5): fired sets in O(|F| log m) instead of O(m).

``FiredTree`` owns every point's 16-ary max tree (see kernels/tree.py for the layout, the
headroom that spares most folds from touching the bounds, and the rule that rebuilds a column
whose bounds have become loose) and answers the fired sets of a batch with the same sets, the
same order and the same outputs, bit for bit, as the scan of ``kernels.step.forward_batch``. It
is kept valid by ``fold``, which folds update records into P and maintains the tree in the
same sweep.

Queries confirm their candidates from P as folded, so the trainer folds every record before
the next query (window = 1) when the tree is on; a worker that still has records pending (it
cannot happen with window 1, but stays correct) falls back to the scan. Columns are owned by
workers: a worker queries, rebuilds and maintains only its own points' trees, as it does for
P's columns, so no locks are needed.
"""

from __future__ import annotations

import numpy as np

from ..kernels import tree as TK
from ..kernels import tree_fold as TF

TOP = 4096  # a query scans whole the lowest level of at most this many entries (16 KiB in float32)
SLACK = 0.01  # headroom a build gives every key, in units of the keys' spread (see kernels/tree.py)
_STAT_KEYS = ("tree_reads", "tree_reported", "tree_rebuilds")


def tree_bytes(m: int, n: int, itemsize: int, workers: int = 1) -> int:
    """Memory of a FiredTree: the float32 trees (n, S), and per worker the headroom (m,) and the frontier (2, s_0).

    ``itemsize`` (P's) does not matter: the bounds are float32 for either dtype.
    """
    off = TK.layout(m)
    return int(off[-1]) * n * 4 + 64 + workers * (m + 2 * int(off[1])) * 8


class FiredTree:
    """Max trees over every column of P (m, n), with lazily maintained upper bounds.

    Parameters
    ----------
    P : ndarray (m, n), C-contiguous float32 or float64
        The keys; read, never written, except by ``fold``.
    ranges : list of (start, stop)
        The columns each worker owns: it queries, folds and rebuilds only those.
    top : int
        A query scans whole the lowest level of at most ``top`` entries and descends from it.
    """

    def __init__(self, P: np.ndarray, ranges=None, top: int = TOP):
        m, n = P.shape
        self.ranges = [(0, n)] if ranges is None else [(int(a), int(b)) for a, b in ranges]
        workers = len(self.ranges)
        self.off = TK.layout(m)
        self.start = TK.start_level(m, top)
        spread = float(np.std(P[: min(m, 4096)])) if P.size else 0.0
        self.slack = SLACK * spread if np.isfinite(spread) else 0.0  # bounds start this far above the keys
        self.bounds = TK.empty_tree(n, m)  # (n, S) float32, point-major, 64-byte aligned
        self.headroom = np.zeros((workers, m))  # (workers, m) bounds[c, r] - P[r, c] >= headroom[w, r]
        self.waste = np.zeros(n, dtype=np.int64)  # (n,) reads beyond a tight tree's, since the last rebuild
        self._frontier = [np.zeros((2, int(self.off[1])), dtype=np.int64) for _ in range(workers)]
        self._stats = [np.zeros(3, dtype=np.int64) for _ in range(workers)]  # (reads, reported, rebuilds)
        self._counts = [np.zeros(2, dtype=np.int64) for _ in range(workers)]  # (rows raised, rows within headroom)
        self.build(P)

    def build(self, P: np.ndarray) -> None:
        """Bounds of every column from P as it is now (keys + slack), and every row's headroom."""
        TK.build(P, self.bounds, self.off, self.slack, 0, P.shape[1])
        for w, (start, stop) in enumerate(self.ranges):
            TK.headroom_of(P, self.bounds, self.headroom[w], start, stop)
        self.waste[:] = 0

    def forward(self, worker, P, a, batch, shift, inv_sqrt_m, fired_ptr, fired_rows, f, counters) -> int:
        """Fired sets and outputs of ``batch``, as ``kernels.step.forward_batch`` on P[:, batch]; returns nnz.

        a (m, C); batch (B,) point indices of the worker's columns; fired_ptr (B + 1,),
        fired_rows (cap,) and f (B, C) are written as by forward_batch. When nnz >
        fired_rows.size grow it and call again. Adds tree_reads, tree_reported and
        tree_rebuilds to ``counters``.
        """
        stats = self._stats[worker]
        nnz = TK.tree_forward(
            P, self.bounds, self.off, self.start, self.slack, a, batch, shift, inv_sqrt_m, fired_ptr, fired_rows, f,
            self._frontier[worker], self.waste, self.headroom[worker], stats,
        )  # fmt: skip
        if nnz <= fired_rows.size:
            for key, value in zip(_STAT_KEYS, stats.tolist(), strict=True):
                counters[key] = counters.get(key, 0) + value
        return nnz

    def fold(self, worker, P, log, slots, counters) -> int:
        """Fold log records ``slots`` (in order) into the worker's columns of P and keep the tree valid.

        P receives exactly the additions of ``kernels.step.fold_records`` (the same bits). Returns
        the rows touched; adds tree_rows_raised (rows whose bounds were raised) to ``counters``.
        """
        start, stop = self.ranges[worker]
        counts = self._counts[worker]
        touched = TF.fold_and_raise(
            P, self.bounds, self.off, log.g_rows, log.row_ptr, log.owner, log.coef, slots, start, stop,
            self.headroom[worker], self.slack, counts, log.touched, log.n_touched,
        )  # fmt: skip
        counters["tree_rows_raised"] = counters.get("tree_rows_raised", 0) + int(counts[0])
        return touched

    def query(self, P, j: int, threshold: float, worker: int = 0) -> np.ndarray:
        """The neurons r with P[r, j] > threshold, ascending (int64)."""
        out = np.zeros(P.shape[0], dtype=np.int64)
        end, _ = TK.query(P, self.bounds, self.off, self.start, j, threshold, out, 0, self._frontier[worker])
        return out[:end]
