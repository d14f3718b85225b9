"""The update log: an ordered, append-only sequence of SGD update records, shared by workers.

A record is what one step changes: the batch, its Gram rows, and its fired pairs (neuron r,
batch position i, coefficient c) grouped by neuron. Its size depends on nnz, not on d.
Records live in a ring of preallocated slots (record s in slot s mod L); a slot is reused
once every worker has folded its record into its own columns of P.

Shared state (guarded by ``lock``): ``reserved`` (sequence numbers handed out),
``published`` (records 0..published-1 are complete), ``folded[w]`` and ``alpha_folded[w]``
(worker w's columns of P, and of alpha, hold the records before them) and ``totals``
(steps, samples, nnz and rows touched of the published updates: counted with the
publication, so they always agree with the log).
Slot contents are written by one producer between reserve and publish, and only read after
publish. Publishing is the one moment an update takes effect: before it nothing shared has
changed (P and alpha receive a record only when their owners fold it), so a producer that
fails at any earlier point leaves no trace but an empty record.
"""

from __future__ import annotations

import enum
import threading

import numpy as np

from ..kernels import step as K
from .record import Record


class Answer(enum.Enum):
    """What ``UpdateLog.reserve`` answers instead of a sequence number."""

    DONE = "done"  # ``end`` records have been handed out: the run is complete
    STALE = "stale"  # the snapshot lacks more than max_staleness records: recompute from the newer ones
    FULL = "full"  # every slot holds a record some worker has not folded: fold first


class Stopped(Exception):
    """Raised inside a worker when another worker failed, or the run was interrupted, and it is being stopped."""


class UpdateLog:
    """A ring of ``slots`` records for P of shape (m, n), shared by ``workers`` workers."""

    def __init__(self, slots, m, n, batch_cap, pair_cap, dtype, workers, keep=False):
        self.slots, self.m, self.n, self.dtype = slots, m, n, np.dtype(dtype)
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)  # notified on publish, fold and stop
        self.reserved = 0
        self.published = 0
        self.folded = [0] * workers  # worker w's columns of P hold records 0..folded[w]-1
        self.alpha_folded = [0] * workers  # and its columns of alpha records 0..alpha_folded[w]-1
        self.staleness: list[int] = []  # per published update, in publish order
        self.totals = {"steps": 0, "samples": 0, "nnz": 0, "rows_touched": 0}
        self.steps_by_worker = [0] * workers
        self.records: dict[int, Record] | None = {} if keep else None
        self.error: BaseException | None = None
        self._ready: set[int] = set()
        self._allocate(batch_cap, pair_cap)

    def _allocate(self, batch_cap: int, pair_cap: int) -> None:
        L, m = self.slots, self.m
        self.batch_cap, self.pair_cap = batch_cap, pair_cap
        self.g_rows = np.zeros((L, batch_cap, self.n), dtype=self.dtype)  # (L, B, n) Gram rows of each batch
        self.batch = np.zeros((L, batch_cap), dtype=np.int64)  # (L, B) the batch of each record
        self.rec_size = np.zeros(L, dtype=np.int64)  # (L,) batch size of each record
        self.row_ptr = np.zeros((L, m + 1), dtype=np.int64)  # (L, m+1) row r's pairs: row_ptr[s, r]:row_ptr[s, r+1]
        self.owner = np.zeros((L, pair_cap), dtype=np.int64)  # (L, cap) batch position of each pair
        self.coef = np.zeros((L, pair_cap), dtype=self.dtype)  # (L, cap) coefficient of each pair
        self.pair_row = np.zeros((L, pair_cap), dtype=np.int32)  # (L, cap) row of each pair (alpha's fold reads it)
        self.touched = np.zeros((L, pair_cap), dtype=np.int64)  # (L, cap) the rows with pairs, ascending
        self.n_touched = np.zeros(L, dtype=np.int64)  # (L,) how many: folds visit only those rows

    def fits(self, batch: int, pairs: int) -> bool:
        return batch <= self.batch_cap and pairs <= self.pair_cap

    def grow(self, batch_cap: int, pair_cap: int) -> None:
        """Enlarge the slots, keeping their records; only when every published record is folded everywhere
        and none is reserved (a delayed update may still read records it keeps)."""
        if not self.quiescent():
            raise RuntimeError("the update log can grow only when every record is folded and none is in flight")
        names = ("g_rows", "batch", "row_ptr", "owner", "coef", "touched", "pair_row")
        old = {name: getattr(self, name) for name in names}
        rec_size, n_touched = self.rec_size, self.n_touched
        self._allocate(max(batch_cap, self.batch_cap), max(pair_cap, self.pair_cap))
        for name, array in old.items():
            getattr(self, name)[tuple(slice(0, s) for s in array.shape)] = array
        self.rec_size[:], self.n_touched[:] = rec_size, n_touched

    def quiescent(self) -> bool:
        """Every reserved record published, every published record folded into P and alpha everywhere."""
        return self.reserved == self.published == self._oldest_unfolded()

    def _oldest_unfolded(self) -> int:
        return min(min(self.folded), min(self.alpha_folded))

    def is_published(self, seq: int) -> bool:
        with self.lock:
            return seq < self.published or seq in self._ready

    def slot(self, seq: int) -> int:
        return seq % self.slots

    def slots_between(self, start: int, stop: int) -> np.ndarray:
        """Ring slots of records start..stop-1, in order."""
        return np.arange(start, stop, dtype=np.int64) % self.slots

    # ---- slot contents -------------------------------------------------------------------
    def write_update(self, seq: int, update) -> int:
        """Write an Update (its Gram rows already in ``g_rows[slot, :B]``) to slot ``seq``; returns rows touched."""
        s, B = self.slot(seq), update.batch.size
        self.batch[s, :B] = update.batch
        self.rec_size[s] = B
        self.n_touched[s] = K.group_by_row(
            self.m, update.fired_ptr, update.fired_rows, update.coefs, self.row_ptr[s], self.owner[s], self.coef[s],
            self.touched[s], self.pair_row[s],
        )  # fmt: skip
        return int(self.n_touched[s])

    def write_record(self, seq: int, record: Record) -> int:
        """Write a Record (its Gram rows already in ``g_rows[slot, :B]``) to slot ``seq``; returns rows touched."""
        s, B, nnz = self.slot(seq), record.batch.size, record.rows.size
        self.batch[s, :B] = record.batch
        self.rec_size[s] = B
        counts = np.bincount(record.rows, minlength=self.m)  # (m,) pairs per row; rows are ascending
        np.cumsum(counts, out=self.row_ptr[s, 1:])
        self.row_ptr[s, 0] = 0
        self.owner[s, :nnz] = record.owner
        self.coef[s, :nnz] = record.coef
        self.pair_row[s, :nnz] = record.rows
        rows = np.flatnonzero(counts)
        self.touched[s, : rows.size] = rows
        self.n_touched[s] = rows.size
        return rows.size

    def record(self, seq: int, worker: int, staleness: int) -> Record:
        """The update in slot ``seq`` as a self-contained Record (copies)."""
        s = self.slot(seq)
        counts = np.diff(self.row_ptr[s])
        nnz = int(self.row_ptr[s, -1])
        return Record(
            seq=seq, worker=worker, staleness=staleness, batch=self.batch[s, : self.rec_size[s]].copy(),
            rows=np.repeat(np.arange(self.m, dtype=np.int32), counts), owner=self.owner[s, :nnz].astype(np.int32),
            coef=self.coef[s, :nnz].copy(),
        )  # fmt: skip

    # ---- coordination ------------------------------------------------------------------
    def reserve(self, worker: int, snapshot: int, max_staleness: int | None, end: int) -> int | Answer:
        """Hand out the next sequence number to a worker whose state includes records < snapshot.

        Returns the number, or Answer.DONE when ``end`` records have been handed out, or
        Answer.STALE (after waiting until the missing records are published: recompute from
        them), or Answer.FULL (the ring needs this worker to fold first). Raises Stopped
        when the run is being stopped.
        """
        with self.changed:
            while True:
                if self.error is not None:
                    raise Stopped
                seq = self.reserved
                if seq >= end:
                    return Answer.DONE
                if max_staleness is not None and seq - snapshot > max_staleness:
                    self.changed.wait_for(lambda seq=seq: self.published >= seq or self.error is not None)
                    return Answer.STALE
                if seq - self._oldest_unfolded() >= self.slots:
                    mine = min(self.folded[worker], self.alpha_folded[worker])
                    if mine == self._oldest_unfolded() or self.published > snapshot:
                        return Answer.FULL
                    self.changed.wait()
                    continue
                self.reserved += 1
                return seq

    def publish(self, seq: int, worker: int, staleness: int, samples: int, nnz: int, touched: int, record=None) -> None:
        """Make the update in slot ``seq`` (already written) visible to every worker: it takes effect now.

        ``record`` is the copy kept for replay when the log keeps records.
        """
        with self.changed:
            self.staleness.append(staleness)
            t = self.totals
            t["steps"], t["samples"], t["nnz"], t["rows_touched"] = (
                t["steps"] + 1, t["samples"] + samples, t["nnz"] + nnz, t["rows_touched"] + touched
            )  # fmt: skip
            self.steps_by_worker[worker] += 1
            if record is not None and self.records is not None:
                self.records[seq] = record
            self._advance(seq)

    def publish_empty(self, seq: int) -> None:
        """Fill a reserved slot with a record that changes nothing (its producer failed): no hole in the log."""
        s = self.slot(seq)
        self.rec_size[s] = 0
        self.row_ptr[s] = 0
        self.n_touched[s] = 0
        with self.changed:
            self._advance(seq)

    def _advance(self, seq: int) -> None:
        self._ready.add(seq)
        while self.published in self._ready:
            self._ready.remove(self.published)
            self.published += 1
        self.changed.notify_all()

    def mark_folded(self, worker: int, upto: int, alpha: bool = False) -> None:
        """Worker ``worker``'s columns of P (or of alpha) now hold every record before ``upto``."""
        with self.changed:
            (self.alpha_folded if alpha else self.folded)[worker] = upto
            self.changed.notify_all()

    def stop(self, error: BaseException) -> None:
        with self.changed:
            if self.error is None:
                self.error = error
            self.changed.notify_all()

    def clear_error(self) -> None:
        with self.changed:
            self.error = None

    def ordered_records(self) -> list[Record]:
        """The kept records in log order (empty when the log was not asked to keep them)."""
        return [self.records[s] for s in sorted(self.records)] if self.records is not None else []
