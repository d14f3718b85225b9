"""KronSGD: exact SGD on Kronecker points whose step cost does not depend on d.

State (DESIGN.md §3): the implicit weights alpha (m, n), w_r = w_r(0) + Σ_j alpha[r, j] x_j,
and the pre-activations P (m, n) = <w_r, x_j>. A step touches only the rows of P whose
neurons fired on the batch: O(nnz(c) · n) work. Steps are update records in a log
(log.py); workers (worker.py) own shards of points and fold the log into their columns of
P. One worker is the sequential algorithm; several run on threads (threads.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..base.errors import ValidationError
from ..base.memory import GRAM_SHARE, format_bytes, require, resolve_budget
from ..base.random import BatchSampler
from ..base.validation import check_choice, check_int
from ..kernels import step as K
from ..model.net import fire_fraction
from .checkpoint import save_checkpoint
from .log import UpdateLog
from .loop import SGDLoop
from .ray_backend import RayEngine, frozen_copy
from .threads import run_workers
from .tree import FiredTree, predict_fired, tree_bytes
from .worker import NeedsRoom, Worker

_WINDOW_MAX = 8  # pending records; fastest at n = 4096 on a 2-core machine (benchmarks/bench_window.py)
_FOLD_BYTES = 16 * 2**20  # "auto": the Gram rows of one window's records stay inside L3 (window 8 up to n = 16384)
_P_CACHED_BYTES = 4 * 2**20  # "auto": below this P lives in cache and the window is 1 (measured: faster)
_SHORT_ROWS = 1024  # "auto": with fewer points than this the window is 1


class KronSGD(SGDLoop):
    """Kronecker SGD on a TwoLayerNet: exact, sequential or with asynchronous workers.

    Parameters
    ----------
    net : TwoLayerNet
        Trained in place: the run's alpha becomes part of its weights.
    data : KroneckerData or list of factor arrays
        n training points with ``dims == net.dims``.
    y : array-like, (n,) or (n, C)
        Targets, C = net.outputs.
    lr : float > 0
        Learning rate η of  w_r ← w_r - η ∂L_S/∂w_r,  L_S = ½ Σ_{i∈S} ||f(x_i) - y_i||².
    batch_size : int in [1, n]
    seed : int, default 0
        Seeds the batch sampler (the net has its own seed for W0 and a).
    gram : {"auto", "precomputed", "on_the_fly"}, default "auto"
        Keep the (n, n) Gram matrix, or compute the batch's Gram rows each step from the
        factors. "auto" precomputes when G fits in a quarter of the memory budget.
    dtype : numpy.float32 or numpy.float64, default float32
        Precision of P, alpha and G.
    memory_budget : int, optional
        Bytes the trainer may allocate; default half the free memory.
    window : int or "auto", default "auto"
        Update records kept before they are folded into P (1 = fold every step). Larger
        windows move P through memory less often; the iterates are the same bits for any
        window. "auto" picks up to 8, bounded so the records' Gram rows stay in cache.
    workers : int, default 1
        Threads, each owning a contiguous shard of the points and sampling its batches
        there; they never wait for each other except to respect ``max_staleness``.
        ``run(steps)`` counts updates over all workers. One worker is the exact sequential
        algorithm.
    max_staleness : int or None, default None
        The most updates a worker's state may lack when its update is logged (None: no
        bound). Staleness is reported in the history (mean, max, histogram).
    keep_log : bool, default False
        Keep every update record (``trainer.records``) so that ``replay`` can reproduce
        the run; memory grows with nnz per step, not with d.
    fired : {"auto", "scan", "tree"}, default "auto"
        How a step finds the fired neurons of its batch: scan the m pre-activations of each
        point, or ask a 16-ary max tree per point (DESIGN.md §5): about 2.3–5.5 cache lines
        read per fired neuron instead of all m keys, plus keeping the tree valid as P
        changes, and float32 bounds as large as P in float32 (half of P in float64). Both
        give the same fired sets in the same order: the iterates are the same bits. The
        tree folds every update at once (window 1). It wins when m is large (see
        benchmarks/bench_tree.py). "auto" picks the one a cost model, calibrated on this
        machine once per process, predicts faster; ``trainer.fired_mode`` and every
        history record say which.

    Examples
    --------
    >>> import numpy as np
    >>> from kronsgd import KroneckerData, TwoLayerNet
    >>> rng = np.random.default_rng(0)
    >>> data = KroneckerData([rng.normal(size=(50, 4)), rng.normal(size=(50, 6))])
    >>> net = TwoLayerNet(data.dims, width=128)
    >>> trainer = KronSGD(net, data, rng.normal(size=50), lr=0.5, batch_size=8, dtype=np.float64)
    >>> history = trainer.run(40)
    >>> history[-1]["loss"] < history[0]["loss"]
    True
    """

    def __init__(
        self,
        net,
        data,
        y,
        lr,
        batch_size,
        seed=0,
        gram="auto",
        dtype=np.float32,
        memory_budget=None,
        window="auto",
        workers=1,
        max_staleness=None,
        keep_log=False,
        fired="auto",
        backend="threads",
        ray_address=None,
        *,
        _restore=None,
    ):
        super().__init__(net, data, y, lr, batch_size, seed, dtype)
        workers = check_int(workers, "workers", low=1, high=self.n)
        if workers > 1 and self.batch_size > self.n // workers:
            raise ValidationError(
                f"batch_size must be at most the smallest shard, n // workers = {self.n // workers}, "
                f"since each worker samples from its own points. Got {self.batch_size}."
            )
        self.max_staleness = None if max_staleness is None else check_int(max_staleness, "max_staleness", low=0)
        gram = check_choice(gram, "gram", ("auto", "precomputed", "on_the_fly"))
        fired = check_choice(fired, "fired", ("auto", "scan", "tree"))
        backend = check_choice(backend, "backend", ("threads", "ray"))
        if backend == "ray":
            fired = "scan" if fired == "auto" else fired
            if fired == "tree":
                raise ValidationError("fired='tree' runs on the threads backend; the Ray backend scans.")
        window = window if window == "auto" else check_int(window, "window", low=1)
        budget = resolve_budget(memory_budget)
        self.fired_mode = _fired_mode(self, fired, window, workers, budget, gram)
        tree = self.fired_mode == "tree"
        tree_memory = tree_bytes(self.net.width, self.n, self.dtype.itemsize, workers) if tree else 0
        self.gram_mode, self.window_size, slots, pairs = _plan_memory(
            self, gram, budget, 1 if tree else window, workers, tree_memory
        )
        m, n = self.net.width, self.n
        net_for_workers = frozen_copy(self.net) if backend == "ray" else None  # the weights before this run
        if _restore is None and backend == "ray":  # the worker actors compute P0 on their shards
            _restore = {"P": np.zeros((m, n), self.dtype), "alpha": np.zeros((m, n), self.dtype)}
        if _restore is None:  # a checkpoint brings its own P and alpha (see resume.py)
            self._P = self.net.preactivations(self.data, prepared=True, dtype=self.dtype)  # (m, n) <w_r, x_j>
            self.alpha = np.zeros((m, n), dtype=self.dtype)  # (m, n) implicit weights, owned here
        else:
            self._P, self.alpha = _restore["P"], _restore["alpha"]
        self.net.attach_support(self.data, self.alpha)
        self._a = np.ascontiguousarray(self.net.a, dtype=np.float64)  # (m, C)
        self.G = self.data.gram().astype(self.dtype) if self.gram_mode == "precomputed" else None  # (n, n)
        self._gram_entries = n * n if self.G is not None else 0
        # |G[i, j]| <= max_i ||x_i||², so one step moves a P entry by at most Σ|c| times this.
        self._gram_bound = float(np.max(self.data.norms()) ** 2)

        self.log = UpdateLog(slots, m, n, self.batch_size, pairs, self.dtype, workers, keep=keep_log)
        bounds = np.linspace(0, n, workers + 1).round().astype(int)  # contiguous shards of points
        # the tree indexes P as it is now, so it is built after any restore; workers own its columns as P's
        self.tree = FiredTree(self._P, list(zip(bounds[:-1], bounds[1:], strict=True))) if tree else None
        self.workers = []
        for w in range(workers):
            shard = np.arange(bounds[w], bounds[w + 1])
            sampler = self.sampler if workers == 1 else BatchSampler(shard, self.batch_size, self.seed, worker=w)
            self.workers.append(Worker(w, self, bounds[w], bounds[w + 1], sampler))
        self._warm_up()
        self._ray = RayEngine(self, net_for_workers, workers, ray_address) if backend == "ray" else None

    def _warm_up(self) -> None:
        """Compile (or load from cache) every kernel for this dtype now rather than in step 1."""
        w = self.workers[0]
        empty = np.zeros(0, dtype=np.int64)
        for _ in range(2):  # the second empty update exercises the correction of the first
            w.produce(self.log.reserved + 1, batch=empty)
        self._flush()
        self.log.staleness.clear()
        if self.log.records is not None:
            self.log.records.clear()
        w.counters.update(steps=0)

    @property
    def P(self) -> np.ndarray:
        """Pre-activations (m, n) = <w_r, x_j>, with every published update folded in."""
        self._flush()
        return self._P

    def _flush(self) -> None:
        """Fold every published record into every worker's columns (call when no worker runs)."""
        if getattr(self, "_ray", None) is not None:
            return  # the Ray backend gathers P and alpha after every advance
        for w in self.workers:
            w.snapshot = self.log.published
            w.fold()

    # ---- training ----------------------------------------------------------------------
    def _step(self, batch: np.ndarray) -> None:
        """One sequential step on ``batch`` (single worker)."""
        while True:
            try:
                self.workers[0].produce(self.log.reserved + 1, batch=batch)
                return
            except NeedsRoom as room:
                self._make_room(room)

    def _make_room(self, room: NeedsRoom) -> None:
        self._flush()
        self.log.grow(room.batch, 2 * room.pairs)
        for w in self.workers:
            w.scratch = np.zeros((self.log.batch_cap, w.local.size), dtype=self.dtype)

    def _advance(self, work) -> None:
        if self._ray is not None:
            return self._ray.run_for(work)
        if len(self.workers) == 1:
            return super()._advance(work)
        if isinstance(work, list):
            raise ValidationError("batches= drives one worker; with workers > 1 each worker samples its own shard.")
        end = self.log.reserved + work
        while True:
            error = run_workers(self.workers, end)
            self._flush()
            self.step_count = sum(w.counters["steps"] for w in self.workers)
            if isinstance(error, NeedsRoom):
                self._make_room(error)
                continue
            if error is not None:
                raise error
            return

    def _full_outputs(self):
        out = np.empty((self.n, self.net.outputs))  # (n, C)
        fired = K.full_outputs(self.P, self._a, self.net.shift, self._inv_sqrt_m, out)
        return out, fired

    # ---- results -----------------------------------------------------------------------
    def counters(self) -> dict:
        """Cost counters so far, over all workers: steps, samples, gram_entries (inner
        products <x_i, x_j> computed), nnz (fired pairs = nonzero SGD coefficients),
        rows_touched (P rows changed, summed over updates), multiply_adds (P update work,
        nnz · n) and rows_folded (P rows written by folds: the memory traffic on P); with
        the tree also tree_reads (cache lines of bounds and keys read by queries),
        tree_reported (neurons they reported, updates computed again after a staleness wait
        included), tree_rebuilds (columns rebuilt because their bounds were loose) and
        tree_rows_raised (rows whose bounds a fold raised; the others only spent headroom)."""
        total = {"steps": 0, "samples": 0, "gram_entries": self._gram_entries, "nnz": 0, "rows_touched": 0}
        total["rows_folded"] = 0
        for counters in [w.counters for w in self.workers] if self._ray is None else [self._ray.counters]:
            for key, value in counters.items():
                total[key] = total.get(key, 0) + value
        total["multiply_adds"] = total["nnz"] * self.n
        return total

    def _log_extras(self, since: int) -> dict:
        """How fired sets are found, and the staleness of the updates since the last record."""
        recent = np.asarray(self.log.staleness[since:], dtype=np.int64)
        if recent.size == 0:
            return {"fired_mode": self.fired_mode}
        return {
            "fired_mode": self.fired_mode,
            "staleness_mean": float(recent.mean()),
            "staleness_max": int(recent.max()),
            "staleness_hist": np.bincount(recent).tolist(),
        }

    def _checkpoint_path(self, path):
        if self._ray is not None:
            raise ValidationError("checkpoints are written by the threads backend; the Ray backend has none yet.")
        if not isinstance(path, (str, os.PathLike)) or not str(path):
            raise ValidationError(f"checkpoint must be a file path (str or Path). Got {path!r}.")
        return Path(path)

    def _save_checkpoint(self, path) -> None:
        save_checkpoint(self, path)

    @property
    def records(self) -> list:
        """The update log, in order, when the trainer was made with keep_log=True."""
        return self.log.ordered_records()

    def replay(self, records) -> None:
        """Apply logged updates, in log order, to this trainer's state (single worker).

        A fresh trainer with the same net seed, data and dtype that replays another run's
        ``records`` ends with the same alpha and P, bit for bit: each entry receives the
        same additions in the same order.
        """
        if len(self.workers) != 1 or self._ray is not None:
            raise ValidationError("replay() runs on a trainer with workers=1 (threads backend).")
        worker, m = self.workers[0], self.net.width
        for k, rec in enumerate(records):
            if rec.batch.size and (rec.batch.max() >= self.n or (rec.rows.size and rec.rows.max() >= m)):
                raise ValidationError(f"records[{k}] does not fit this trainer's {self.n} points and {m} neurons.")
            fired_ptr = np.zeros(rec.batch.size + 1, dtype=np.int64)  # regroup the pairs by batch point
            order = np.argsort(rec.owner, kind="stable")
            np.cumsum(np.bincount(rec.owner, minlength=rec.batch.size), out=fired_ptr[1:])
            worker.fired_ptr, worker.fired_rows = fired_ptr, rec.rows[order]
            worker.coefs = rec.coef[order].astype(self.dtype)
            if rec.rows.size > self.log.pair_cap or rec.batch.size > self.log.batch_cap:
                self._make_room(NeedsRoom(rec.batch.size, rec.rows.size))
            worker.snapshot = self.log.published
            if worker.snapshot - self.log.folded[0] >= self.window_size:
                worker.fold()
            seq = self.log.reserve(0, self.log.published, None, self.log.reserved + 1)
            worker.publish(seq, rec.batch, rec.rows.size)
        worker._allocate(worker.local.size, self.log.pair_cap)
        self.step_count += len(records)

    def predict(self, data) -> np.ndarray:
        """The trained net's outputs on new points (exact, from the implicit weights)."""
        return self.net.predict(data)

    def dense_weights(self, max_bytes=None) -> np.ndarray:
        return self.net.dense_weights(max_bytes)


def _fired_mode(trainer, fired: str, window, workers: int, budget: int, gram: str) -> str:
    """The fired-set method: as asked, or for "auto" the one the cost model predicts faster."""
    if fired == "tree" and window not in ("auto", 1):
        raise ValidationError(
            f'window must be 1 or "auto" when fired="tree": the tree indexes P as folded, so every '
            f"update is folded before the next query. Got {window}."
        )
    if fired != "auto":
        return fired
    m, n, item = trainer.net.width, trainer.n, trainer.dtype.itemsize
    if window not in ("auto", 1) or 2 * m * n * item + tree_bytes(m, n, item, workers) > budget // 2:
        return "scan"  # an explicit window > 1 rules the tree out, and so does a tight memory budget
    scan_window = _plan_memory(trainer, gram, budget, window, workers)[1]  # what the scan would run with
    return predict_fired(m, fire_fraction(trainer.net.shift), n, trainer.batch_size, item, scan_window)


def _plan_memory(trainer, gram: str, budget: int, window, workers: int, tree_bytes: int = 0):
    """Choose the Gram mode and the window within the memory budget, or refuse clearly.

    Returns (gram mode, window, log slots, pairs per slot).
    """
    m, n, B, item = trainer.net.width, trainer.n, trainer.batch_size, trainer.dtype.itemsize
    # one log slot: a batch's Gram rows and indices, and its fired pairs (grown if needed)
    pairs = min(B * m, int(2 * B * m * fire_fraction(trainer.net.shift)) + 64)
    slot_bytes = B * (n * item + 8) + (m + 1) * 8 + pairs * (8 + item)
    fixed = 2 * m * n * item + (2 * workers + 2) * slot_bytes + tree_bytes  # P, alpha, the smallest log, the tree
    require(
        fixed,
        budget,
        f"P and alpha ({m} neurons x {n} points, {trainer.dtype.name}) with the update log"
        + (" and the fired-neuron tree" if tree_bytes else ""),
        "Use fewer points per trainer, a smaller width, or dtype=numpy.float32.",
    )
    gram_bytes = n * n * item
    if gram == "auto":
        fits = gram_bytes <= GRAM_SHARE * budget and fixed + gram_bytes <= budget
        gram = "precomputed" if fits else "on_the_fly"
    if gram == "precomputed":
        require(
            fixed + gram_bytes,
            budget,
            f"the precomputed Gram matrix ({n} x {n}, {format_bytes(gram_bytes)}) with P, alpha and the log",
            'Pass gram="on_the_fly" to compute the batch\'s Gram rows each step instead.',
        )
        fixed += gram_bytes
    if window == "auto":
        room = (budget - fixed) // (2 * workers * slot_bytes)  # what the budget allows beyond the smallest log
        # P in cache, or rows too short to be worth deferring (the corrections sweep all m rows per
        # pending record): deferring saves nothing, measured (benchmarks/bench_window.py, bench_tree.py)
        cached = m * n * item <= _P_CACHED_BYTES or n < _SHORT_ROWS
        window = 1 if cached else int(max(1, min(_WINDOW_MAX, _FOLD_BYTES // (B * n * item), room)))
    window = check_int(window, "window", low=1)
    slots = 2 * window * workers + 2  # enough that workers rarely wait for a free slot
    require(
        fixed + (slots - 2 * workers - 2) * slot_bytes,
        budget,
        f"the update log of {slots} records (window={window}) with P, alpha and G",
        "Use a smaller window.",
    )
    return gram, window, slots, pairs
