"""A worker: owns a contiguous shard of training points (columns of P and alpha) and makes updates.

Its loop is the asynchronous SGD of DESIGN.md §6: take the records published so far as its
snapshot, compute an update on a batch of its own points from its columns of P brought up to
that snapshot, append the update to the log, and fold the records into its columns every
``window`` records. It waits for nobody except to respect the staleness bound.

"Compute an update" (``compute``) only reads shared state (except that a fired-neuron tree,
engine/tree.py, may rebuild the bounds of this worker's own columns); "apply an update"
(``publish`` for alpha, ``fold`` for P and the tree) writes only this worker's columns.
"""

from __future__ import annotations

import numpy as np

from ..kernels import step as K
from .log import Record


def step_coefficients(a, f, y_batch, fired_ptr, fired_rows, step, gram_bound, dtype, coefs) -> tuple[float, bool]:
    """The batch loss and the SGD coefficients of one step from its outputs; the one rule of both engines.

    f (B, C) the outputs, y_batch (B, C) the targets, step = -lr / sqrt(m); coefs receives one
    coefficient per fired pair. Returns (batch loss, diverged): diverged when the loss is not
    finite or when the coefficients, times the largest Gram entry, could overflow P's dtype.
    """
    residual = f - y_batch  # (B, C)
    batch_loss = 0.5 * float(np.sum(residual * residual))
    if not np.isfinite(batch_loss):
        return batch_loss, True
    growth = K.coefficients(a, residual, fired_ptr, fired_rows, step, coefs)
    return batch_loss, not growth * gram_bound < 0.25 * np.finfo(dtype).max


class NeedsRoom(Exception):
    """An update does not fit the log's slots; the engine grows them and retries the step."""

    def __init__(self, batch: int, pairs: int):
        super().__init__(f"a record of {batch} points and {pairs} pairs needs larger log slots")
        self.batch, self.pairs = batch, pairs


_STALE, _FULL = "stale", "full"


class Worker:
    """Worker ``wid`` of an engine (a KronSGD), owning points ``start:stop``."""

    def __init__(self, wid: int, engine, start: int, stop: int, sampler):
        self.id, self.engine = wid, engine
        self.start, self.stop = start, stop
        self.sampler = sampler
        self.snapshot = 0  # this worker's view includes records 0..snapshot-1
        self.retry_batch = None  # a batch whose update could not be logged yet
        self.counters = {"steps": 0, "samples": 0, "gram_entries": 0, "nnz": 0, "rows_touched": 0, "rows_folded": 0}
        self._allocate(engine.batch_size, engine.log.pair_cap)

    def _allocate(self, batch: int, cap: int) -> None:
        e = self.engine
        m = e.net.width
        self.cols = np.zeros(m * batch, dtype=e.dtype)  # flat; viewed as (m, B)
        self.local = np.arange(batch, dtype=np.int64)  # column i of cols is batch point i
        self.fired_ptr = np.zeros(batch + 1, dtype=np.int64)
        self.fired_rows = np.zeros(cap, dtype=np.int64)
        self.coefs = np.zeros(cap, dtype=e.dtype)
        self.f = np.zeros((batch, e.net.outputs), dtype=np.float64)
        self.scratch = np.zeros((max(batch, e.log.batch_cap), batch), dtype=e.dtype)

    # ---- the loop body -----------------------------------------------------------------
    def produce(self, end: int, batch: np.ndarray | None = None) -> bool:
        """Make one update and append it to the log; False once ``end`` records exist."""
        log = self.engine.log
        if batch is None:  # a batch drawn for an attempt that had to be retried is reused
            batch = self.retry_batch if self.retry_batch is not None else self.sampler.next()
        self.retry_batch = batch
        while True:
            self.snapshot = log.published
            if self.snapshot - log.folded[self.id] >= self.engine.window_size:
                self.fold()
            nnz = self.compute(batch)
            if nnz > log.pair_cap or batch.size > log.batch_cap:
                raise NeedsRoom(batch.size, nnz)
            seq = log.reserve(self.id, self.snapshot, self.engine.max_staleness, end)
            if seq is None:
                return False
            if seq == _FULL:
                self.snapshot = log.published
                self.fold()
            if not isinstance(seq, str):
                break
        self.publish(seq, batch, nnz)
        self.retry_batch = None
        return True

    def compute(self, batch: np.ndarray) -> int:
        """Fired sets and SGD coefficients of ``batch`` from this worker's snapshot; writes nothing shared.

        Returns nnz; raises DivergenceError (nothing changed) when the step would diverge.
        """
        e, log = self.engine, self.engine.log
        m, B = e.net.width, batch.size
        if B > self.local.size:
            self._allocate(B, self.fired_rows.size)
        pending = log.slots_between(log.folded[self.id], self.snapshot)
        cols = None  # the tree indexes P as folded: it answers exactly when no record is pending
        if e.tree is None or pending.size:
            cols = self.cols[: m * B].reshape(m, B)  # (m, B) = P[:, batch] at the snapshot
            K.gather_columns(e._P, batch, cols)
        if pending.size:
            K.correct_columns(
                cols, batch, log.g_rows, log.rec_size, log.row_ptr, log.owner, log.coef, pending, self.scratch
            )
        nnz = self._fired_sets(batch, cols)
        if nnz > self.fired_rows.size:
            self._allocate(self.local.size, 2 * nnz)
            self._fired_sets(batch, cols)
        batch_loss, diverged = step_coefficients(
            e._a, self.f[:B], e.y[batch], self.fired_ptr[: B + 1], self.fired_rows, -e.lr * e._inv_sqrt_m,
            e._gram_bound, e.dtype, self.coefs,
        )  # fmt: skip
        if diverged:
            raise e._diverged(batch_loss, batch)
        return nnz

    def _fired_sets(self, batch: np.ndarray, cols: np.ndarray | None) -> int:
        """Fired sets and outputs of ``batch`` from cols (m, B) by a scan, or from the tree when cols is None."""
        e = self.engine
        out = (self.fired_ptr, self.fired_rows, self.f)
        if cols is None:
            return e.tree.forward(self.id, e._P, e._a, batch, e.net.shift, e._inv_sqrt_m, *out, self.counters)
        return K.forward_batch(cols, e._a, self.local[: batch.size], e.net.shift, e._inv_sqrt_m, *out)

    def publish(self, seq: int, batch: np.ndarray, nnz: int) -> None:
        """Write the computed update to log slot ``seq``, add it to alpha, and publish it."""
        e, log = self.engine, self.engine.log
        B, s = batch.size, log.slot(seq)
        fired_ptr = self.fired_ptr[: B + 1]
        try:
            if e.G is None:
                log.g_rows[s, :B] = e.data.gram(rows=batch)
                self.counters["gram_entries"] += B * e.n
            else:
                np.take(e.G, batch, axis=0, out=log.g_rows[s, :B])
            log.batch[s, :B] = batch
            log.rec_size[s] = B
            touched = K.group_by_row(
                e.net.width, fired_ptr, self.fired_rows, self.coefs, log.row_ptr[s], log.owner[s], log.coef[s],
                log.touched[s],
            )  # fmt: skip
            log.n_touched[s] = touched
            record = self._record(seq, batch, nnz) if log.records is not None else None
        except BaseException:
            log.publish_empty(seq)  # no hole in the log: the others never wait on this slot
            raise
        # nothing below can fail: alpha and the log change together
        K.apply_alpha(e.alpha, batch, fired_ptr, self.fired_rows, self.coefs)
        log.publish(seq, seq - self.snapshot, record)
        c = self.counters
        c["steps"] += 1
        c["samples"] += B
        c["nnz"] += nnz
        c["rows_touched"] += touched

    def _record(self, seq: int, batch: np.ndarray, nnz: int) -> Record:
        log, s = self.engine.log, self.engine.log.slot(seq)
        counts = np.diff(log.row_ptr[s])
        return Record(
            seq=seq,
            worker=self.id,
            staleness=seq - self.snapshot,
            batch=batch.copy(),
            rows=np.repeat(np.arange(counts.size, dtype=np.int64), counts),
            owner=log.owner[s, :nnz].copy(),
            coef=log.coef[s, :nnz].copy(),
        )

    def fold(self) -> None:
        """Fold the records of this worker's snapshot into its columns of P."""
        log = self.engine.log
        pending = log.slots_between(log.folded[self.id], self.snapshot)
        if pending.size:
            P, tree = self.engine._P, self.engine.tree
            if tree is None:
                rows = K.fold_records(P, log.g_rows, log.row_ptr, log.owner, log.coef, pending, self.start, self.stop,
                                      log.touched, log.n_touched)  # fmt: skip
            else:  # the same additions to P, and the tree kept valid in the same sweep
                rows = tree.fold(self.id, P, log, pending, self.counters)
            self.counters["rows_folded"] += rows
            log.mark_folded(self.id, self.snapshot)
