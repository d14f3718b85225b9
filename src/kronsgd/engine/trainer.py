"""KronSGD: exact SGD on Kronecker points whose step cost does not depend on d.

State (DESIGN.md §3): the implicit weights alpha (m, n), w_r = w_r(0) + Σ_j alpha[r, j] x_j,
and the pre-activations P (m, n) = <w_r, x_j>. A step touches only the rows of P whose
neurons fired on the batch: O(nnz(c) · n) work. Steps are update records in a log
(log.py); workers (worker.py) own shards of points and fold the log into their columns of
P and alpha (fold.py). One worker is the sequential algorithm; several run on threads
(threads.py) or as Ray actors (ray_backend.py). This module wires them together: the plan
(plan.py) decides sizes and modes, and nothing here computes or applies an update itself.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..base.errors import ValidationError
from ..base.memory import resolve_budget
from ..base.random import BatchSampler
from ..kernels import step as K
from ..kernels.warmup import compile_step_kernels
from .checkpoint import save_checkpoint
from .interrupts import InterruptGuard, interrupt_guard
from .log import UpdateLog
from .loop import SGDLoop
from .options import check_options
from .plan import Sizes, gram_matrix, plan_run, warn_gram_rows
from .ray_backend import RayEngine, frozen_copy
from .record import gram_rows
from .threads import run_workers
from .tree import FiredTree
from .worker import NeedsRoom, Shared, Worker


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
        benchmarks/bench_tree.py). "auto" picks the one a cost model predicts faster
        (``engine.tree_cost``: unit costs measured on this machine the first time they are
        needed, kept for the process); ``trainer.fired_mode`` and every history record say
        which. The Ray backend scans.
    backend : {"threads", "ray"}, default "threads"
        Where the workers run: threads of this process (numba kernels release the GIL), or
        Ray actors, one per worker, each holding its shard of P and alpha and a copy of the
        factors, with an ordering actor holding the log (see the README's "Ray" section).
    delay : int, tuple or callable, optional
        Delayed SGD, exactly and deterministically on one worker: update t is computed from
        the model as it was τ_t updates earlier and applied to the current one. An int
        (constant τ), ("uniform", τ_max), ("geometric", mean[, cap]), ("pareto", shape, cap),
        or a callable step -> τ (cap 1024, or (f, cap)); see ``kronsgd.engine.delay``.
        delay=0 gives the same bits as no delay. The log keeps the last cap records.
    staleness_lr : {"none", "inverse"}, default "none"
        "inverse": an update computed τ updates late is applied with lr / (1 + τ) (Zhang et
        al., IJCAI 2016), the same way by ``delay``, threads and Ray; the history reports τ.
        A Ray worker sends several updates per round trip, computed from one snapshot, and
        computes the next ones while they travel: its updates are staler than on threads
        (the history says how much); max_staleness bounds it, and 0 with one worker is the
        sequential algorithm.
    ray_address : str, optional
        With backend="ray": the cluster to join, passed to ``ray.init(address=...)`` (e.g.
        "auto" or "ray://host:10001"); None starts a local Ray, or uses the one already
        initialised in this process.
    max_restarts : int, default 3
        With backend="ray": how many times a worker whose actor (or node) died is replaced
        before the run stops with a KronsgdError. A replacement rebuilds its columns from
        the last alpha snapshot and the records since; no update is lost or applied twice.
    snapshot_every : int or "auto", default "auto"
        With backend="ray": records between alpha snapshots. The ordering actor keeps at
        most 2 × snapshot_every records whatever the length of the run (plus, with
        keep_log=True, those the driver has not yet copied). "auto": as many records as
        one shard's alpha holds bytes (the log then holds about two shards' alpha).

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
        delay=None,
        staleness_lr="none",
        max_restarts=3,
        snapshot_every="auto",
        *,
        _restore=None,
    ):
        super().__init__(net, data, y, lr, batch_size, seed, dtype)
        o = check_options(
            self.n, self.batch_size, self.seed, workers=workers, max_staleness=max_staleness, gram=gram, fired=fired,
            backend=backend, window=window, delay=delay, staleness_lr=staleness_lr, max_restarts=max_restarts,
            snapshot_every=snapshot_every,
        )  # fmt: skip
        workers, gram, fired, window = o.workers, o.gram, o.fired, o.window
        self.max_staleness, self.backend, self.staleness_lr = o.max_staleness, o.backend, o.staleness_lr
        self.delay, self.delay_spec = o.delay, delay
        self.max_restarts, self.snapshot_every = o.max_restarts, o.snapshot_every  # Ray's; kept by checkpoints
        m, n = self.net.width, self.n
        lag = 0 if self.delay is None else self.delay.cap + 1
        sizes = Sizes(m, n, self.batch_size, self.dtype, self.net.shift, workers, lag)
        budget = resolve_budget(memory_budget)
        plan = plan_run(sizes, gram, window, fired, budget)
        self.fired_mode, self.gram_mode = plan.fired, plan.gram
        if gram == "auto":
            warn_gram_rows(sizes, plan.gram, self.data, budget)
        net_for_workers = frozen_copy(self.net) if self.backend == "ray" else None  # the weights before this run
        if _restore is not None:  # a checkpoint brings its own P and alpha (see resume.py)
            self._P, self.alpha = _restore["P"], _restore["alpha"]
        elif self.backend == "ray":  # the worker actors compute P0 on their shards
            self._P, self.alpha = np.zeros((m, n), self.dtype), np.zeros((m, n), self.dtype)
        else:
            self._P = self.net.preactivations(self.data, prepared=True, dtype=self.dtype, max_bytes=budget)  # (m, n)
            self.alpha = np.zeros((m, n), dtype=self.dtype)  # (m, n) implicit weights, owned here
        self.net.attach_support(self.data, self.alpha)
        self._a = np.ascontiguousarray(self.net.a, dtype=np.float64)  # (m, C)
        self.G = gram_matrix(self.data, self.dtype, budget) if self.gram_mode == "precomputed" else None  # (n, n)
        self._gram_entries = n * n if self.G is not None else 0

        self.log = UpdateLog(plan.slots, m, n, self.batch_size, plan.pairs, self.dtype, workers, keep=keep_log)
        bounds = np.linspace(0, n, workers + 1).round().astype(int)  # contiguous shards of points
        ranges = list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))
        # the tree indexes P as it is now, so it is built after any restore; workers own its columns as P's
        tree = FiredTree(self._P, ranges) if self.fired_mode == "tree" else None
        self.shared = Shared(
            P=self._P, alpha=self.alpha, a=self._a, shift=self.net.shift, y=self.y, lr=self.lr,
            # |G[i, j]| <= max_i ||x_i||², so one step moves a P entry by at most Σ|c| times this
            gram_bound=float(np.max(self.data.norms()) ** 2), G=self.G, data=self.data, window=plan.window,
            max_staleness=self.max_staleness, tree=tree, delay=self.delay, staleness_lr=self.staleness_lr,
        )  # fmt: skip
        self.workers = []
        for w, (start, stop) in enumerate(ranges):
            shard = np.arange(start, stop)
            sampler = self.sampler if workers == 1 else BatchSampler(shard, self.batch_size, self.seed, worker=w)
            self.workers.append(Worker(w, self.shared, self.log, start, stop, sampler, self.batch_size))
        compile_step_kernels(self.dtype, tree is not None)
        self._ray = None
        if self.backend == "ray":
            cfg = {"dtype": self.dtype.name, "gram": self.gram_mode, "batch_size": self.batch_size, "seed": self.seed}
            self._ray = RayEngine(self.shared, self.log, cfg, net_for_workers, workers, ray_address,
                                  samplers=[w.sampler for w in self.workers], restore=_restore,
                                  max_restarts=max_restarts, snapshot_every=snapshot_every)  # fmt: skip

    @property
    def window_size(self) -> int:
        """Records a worker may leave unfolded (1: every update is folded at once)."""
        return self.shared.window

    @window_size.setter
    def window_size(self, value: int) -> None:
        self.shared.window = value

    @property
    def tree(self):
        """The fired-neuron tree (FiredTree) when fired_mode is "tree", else None."""
        return self.shared.tree

    @property
    def P(self) -> np.ndarray:
        """Pre-activations (m, n) = <w_r, x_j>, with every published update folded in."""
        return self._P

    def _flush(self) -> None:
        """Fold every published record into every worker's columns (call when no worker runs)."""
        if self._ray is not None:
            return  # the Ray backend gathers P and alpha after every advance
        for w in self.workers:
            w.fold(self.log.published)

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

    def _advance(self, work, guard=None) -> None:
        """Run ``work`` steps; on return, or on any exception, every published record is folded
        everywhere and ``step_count`` counts exactly the published updates."""
        guard = InterruptGuard() if guard is None else guard
        try:
            if self._ray is not None:
                return self._ray.run_for(work, guard)
            if len(self.workers) == 1:
                return super()._advance(work, guard)
            if isinstance(work, list):
                raise ValidationError("batches= drives one worker; with workers > 1 each worker samples its own shard.")
            end = self.log.reserved + work
            while True:
                error = run_workers(self.workers, end, guard)
                self._flush()
                if isinstance(error, NeedsRoom):
                    self._make_room(error)
                    continue
                if error is not None:
                    raise error
                guard.check()
                return
        finally:
            self._flush()
            self.step_count = self.log.totals["steps"]

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
        total = dict(self.log.totals)  # the Ray driver mirrors the ordering actor's totals there
        total["gram_entries"] = self._gram_entries
        total["rows_folded"] = 0
        for counters in [w.counters for w in self.workers] if self._ray is None else []:
            for key, value in counters.items():
                total[key] = total.get(key, 0) + value
        total["multiply_adds"] = total.get("nnz", 0) * self.n
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
        same additions in the same order (the same fold as training).
        """
        if len(self.workers) != 1 or self._ray is not None:
            raise ValidationError("replay() runs on a trainer with workers=1 (threads backend).")
        m, log, worker = self.net.width, self.log, self.workers[0]
        records = list(records)
        for k, rec in enumerate(records):
            if rec.batch.size and (rec.batch.max() >= self.n or (rec.rows.size and rec.rows.max() >= m)):
                raise ValidationError(f"records[{k}] does not fit this trainer's {self.n} points and {m} neurons.")
        with interrupt_guard() as guard:
            try:
                for rec in records:
                    if not log.fits(rec.batch.size, rec.rows.size):
                        self._make_room(NeedsRoom(rec.batch.size, rec.rows.size))
                    if log.published - log.folded[0] >= self.window_size or log.reserved - log.folded[0] >= log.slots:
                        worker.fold(log.published)
                    self._replay_one(rec)
                    guard.check()
            finally:
                self._flush()
                self.step_count = log.totals["steps"]

    def _replay_one(self, rec) -> None:
        """Log one Record as the next update (the fold applies it like any other)."""
        log = self.log
        seq = log.reserve(0, log.published, None, log.reserved + 1)
        try:
            gram_rows(self.G, self.data, rec.batch, log.g_rows[log.slot(seq), : rec.batch.size])
            touched = log.write_record(seq, rec)
            log.publish(seq, 0, rec.staleness, rec.batch.size, rec.rows.size, touched, rec)
        except BaseException:
            if not log.is_published(seq):
                log.publish_empty(seq)
            raise

    def predict(self, data) -> np.ndarray:
        """The trained net's outputs on new points (exact, from the implicit weights)."""
        return self.net.predict(data)

    def dense_weights(self, max_bytes=None) -> np.ndarray:
        return self.net.dense_weights(max_bytes)
