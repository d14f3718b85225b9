"""A worker: owns a contiguous shard of training points (columns of P and alpha) and makes updates.

Its loop is the asynchronous SGD of DESIGN.md §6: take the records published so far as its
snapshot, compute an update on a batch of its own points from its columns of P brought up to
that snapshot (``record.compute_update``: reads only), reserve a place in the log, write the
record there and publish it. Publishing is the moment the update takes effect; P and alpha
receive it when each owner folds the log into its own columns (``fold.fold``), every
``window`` records. It waits for nobody except to respect the staleness bound.

A worker holds arrays and settings (``Shared``), not the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..kernels import step as K
from .delay import staleness_factor
from .fold import fold
from .log import Answer
from .loop import divergence_error
from .record import Buffers, compute_update, gram_rows


@dataclass
class Shared:
    """What every worker of one run reads. P and alpha are shared arrays: each column is written
    only by the fold of the worker that owns it; the tree's columns likewise."""

    P: np.ndarray  # (m, n) pre-activations <w_r, x_j>
    alpha: np.ndarray  # (m, n) implicit weights
    a: np.ndarray  # (m, C) float64 second layer
    shift: float
    y: np.ndarray  # (n, C) float64 targets
    lr: float
    gram_bound: float  # max |G[i, j]|: bounds how far one step can move a P entry
    G: np.ndarray | None  # (n, n) precomputed Gram matrix, or None: rows from ``data`` each step
    data: object  # KroneckerData of the (unit) training points
    window: int  # records a worker may leave unfolded
    max_staleness: int | None
    tree: object = None  # FiredTree, or None: scan
    delay: object = None  # DelaySchedule (delay.py): update t computed from the model after t - τ_t; None: 0
    staleness_lr: str = "none"  # "inverse": an update computed τ updates late takes lr / (1 + τ)


class NeedsRoom(Exception):
    """An update does not fit the log's slots; the engine grows them and retries the step."""

    def __init__(self, batch: int, pairs: int):
        super().__init__(f"a record of {batch} points and {pairs} pairs needs larger log slots")
        self.batch, self.pairs = batch, pairs


class Worker:
    """Worker ``wid`` of a run, owning points ``start:stop``."""

    def __init__(self, wid: int, shared: Shared, log, start: int, stop: int, sampler, batch_size: int):
        self.id, self.shared, self.log = wid, shared, log
        self.start, self.stop = start, stop
        self.sampler = sampler
        self.snapshot = 0  # this worker's view includes records 0..snapshot-1
        self.retry_batch = None  # a batch whose update could not be logged yet
        self.counters = {"gram_entries": 0, "rows_folded": 0}  # steps, samples, nnz: the log counts them
        m, dtype = shared.P.shape[0], shared.P.dtype
        self.buffers = Buffers(m, shared.a.shape[1], batch_size, log.pair_cap, dtype)
        self.scratch = np.zeros((log.batch_cap, batch_size), dtype=dtype)

    # ---- the loop body -----------------------------------------------------------------
    def produce(self, end: int, batch: np.ndarray | None = None) -> bool:
        """Make one update and publish it; False once ``end`` records exist."""
        log, window = self.log, self.shared.window
        if batch is None:  # a batch drawn for an attempt that had to be retried is reused
            batch = self.retry_batch if self.retry_batch is not None else self.sampler.next()
        self.retry_batch = batch
        while True:
            published = log.published
            if published - log.folded[self.id] >= window:
                self.fold(published)
            self.snapshot = published if self.shared.delay is None else published - self.shared.delay(published)
            update = self.compute(batch)
            if not log.fits(batch.size, update.nnz):
                raise NeedsRoom(batch.size, update.nnz)
            seq = log.reserve(self.id, self.snapshot, self.shared.max_staleness, end)
            if seq is Answer.DONE:
                return False
            if seq is Answer.FULL:
                self.fold(log.published)
            if not isinstance(seq, Answer):
                break
        self.publish(seq, update)
        self.retry_batch = None
        return True

    def compute(self, batch: np.ndarray):
        """The update of ``batch`` from this worker's snapshot; writes nothing shared.

        Raises DivergenceError (nothing changed) when the step would diverge.
        """
        s, log = self.shared, self.log
        B = batch.size
        folded = log.folded[self.id]
        pending = log.slots_between(folded, self.snapshot)  # records the snapshot has and P not yet
        late = log.slots_between(self.snapshot, folded)[::-1]  # records P has and a delayed snapshot not
        cols = fired_sets = None
        if s.tree is None or pending.size or late.size:  # the tree answers for P as folded, and only then
            cols = self.buffers.columns(B)  # (m, B) = P[:, batch] at the snapshot
            K.gather_columns(s.P, batch, cols)
            if pending.size or late.size:
                if self.scratch.shape[0] < log.batch_cap or self.scratch.shape[1] < B:
                    self.scratch = np.zeros((max(log.batch_cap, B), B), dtype=s.P.dtype)
                arrays = (log.g_rows, log.rec_size, log.row_ptr, log.owner, log.coef)
                if pending.size:
                    K.correct_columns(cols, batch, *arrays, pending, self.scratch)
                else:
                    K.revert_columns(cols, batch, *arrays, late, self.scratch)
        else:
            inv_sqrt_m = 1.0 / np.sqrt(s.P.shape[0])

            def fired_sets(fired_ptr, fired_rows, f):
                return s.tree.forward(self.id, s.P, s.a, batch, s.shift, inv_sqrt_m, fired_ptr, fired_rows, f,
                                      self.counters)  # fmt: skip

        update = compute_update(cols, batch, s.a, s.shift, s.y[batch], s.lr, s.gram_bound, self.buffers, fired_sets)
        if update.nnz < 0:
            raise self.diverged(update.loss, batch.size)
        return update

    def diverged(self, loss: float, batch_size: int, cause: str | None = None):
        """The DivergenceError of a step that would diverge after the updates published so far."""
        return divergence_error(self.log.totals["steps"], self.shared.lr, loss, batch_size, cause)

    def publish(self, seq: int, update) -> None:
        """Write the computed update to log slot ``seq`` and publish it (it takes effect there)."""
        s, log = self.shared, self.log
        batch, B = update.batch, update.batch.size
        staleness = seq - self.snapshot
        factor = staleness_factor(s.staleness_lr, staleness)
        if factor != 1.0:  # a staleness-aware step: the coefficients are linear in the rate
            update.coefs[: update.nnz] *= factor
        try:
            self.counters["gram_entries"] += gram_rows(s.G, s.data, batch, log.g_rows[log.slot(seq), :B])
            touched = log.write_update(seq, update)
            record = log.record(seq, self.id, staleness) if log.records is not None else None
            log.publish(seq, self.id, staleness, B, update.nnz, touched, record)
        except BaseException:
            if not log.is_published(seq):
                log.publish_empty(seq)  # no hole in the log: the others never wait on this slot
            raise

    def fold(self, upto: int) -> None:
        """Fold the published records before ``upto`` into this worker's columns of P and alpha."""
        s = self.shared
        fold(self.log, self.id, s.P, s.alpha, (self.start, self.stop), upto, tree=s.tree, counters=self.counters)
