"""The update log: an ordered, append-only sequence of SGD update records, shared by workers.

A record is what one step changes: the batch, its Gram rows, and its fired pairs (neuron r,
batch position i, coefficient c) grouped by neuron. Its size depends on nnz, not on d.
Records live in a ring of preallocated slots (record s in slot s mod L); a slot is reused
once every worker has folded its record into its own columns of P.

Shared state (guarded by ``lock``): ``reserved`` (sequence numbers handed out),
``published`` (records 0..published-1 are complete), ``folded[w]`` (worker w's columns hold
records 0..folded[w]-1). Slot contents are written by one producer between reserve and
publish, and only read after publish.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Record:
    """One logged update: ``alpha[rows[t], batch[owner[t]]] += coef[t]`` for every pair t.

    Pairs are sorted by neuron (rows ascending), in batch order within a neuron.
    """

    seq: int
    worker: int
    staleness: int  # records published after the producer's snapshot, before this one
    batch: np.ndarray  # (B,) int64 point indices
    rows: np.ndarray  # (nnz,) int64 neurons
    owner: np.ndarray  # (nnz,) int64 batch positions
    coef: np.ndarray  # (nnz,) SGD coefficients

    @property
    def nbytes(self) -> int:
        return self.batch.nbytes + self.rows.nbytes + self.owner.nbytes + self.coef.nbytes


class Stopped(Exception):
    """Raised inside a worker when another worker failed and the run is being stopped."""


class UpdateLog:
    """A ring of ``slots`` records for P of shape (m, n), shared by ``workers`` workers."""

    def __init__(self, slots, m, n, batch_cap, pair_cap, dtype, workers, keep=False):
        self.slots, self.m, self.n, self.dtype = slots, m, n, np.dtype(dtype)
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)  # notified on publish, fold and stop
        self.reserved = 0
        self.published = 0
        self.folded = [0] * workers
        self.staleness: list[int] = []  # per published record, in publish order
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
        self.touched = np.zeros((L, pair_cap), dtype=np.int64)  # (L, cap) the rows with pairs, ascending
        self.n_touched = np.zeros(L, dtype=np.int64)  # (L,) how many: folds visit only those rows

    def grow(self, batch_cap: int, pair_cap: int) -> None:
        """Enlarge the slots; only when every published record is folded everywhere and none is reserved."""
        assert self.reserved == self.published == min(self.folded)
        self._allocate(max(batch_cap, self.batch_cap), max(pair_cap, self.pair_cap))

    def slot(self, seq: int) -> int:
        return seq % self.slots

    def slots_between(self, start: int, stop: int) -> np.ndarray:
        """Ring slots of records start..stop-1, in order."""
        return np.arange(start, stop, dtype=np.int64) % self.slots

    # ---- coordination ------------------------------------------------------------------
    def reserve(self, worker: int, snapshot: int, max_staleness: int | None, end: int):
        """Hand out the next sequence number to a worker whose state includes records < snapshot.

        Returns the number, or None when ``end`` records have been handed out, or "stale"
        (after waiting until the missing records are published: recompute from them), or
        "full" (the ring needs this worker to fold first).
        """
        with self.changed:
            while True:
                if self.error is not None:
                    raise Stopped
                seq = self.reserved
                if seq >= end:
                    return None
                if max_staleness is not None and seq - snapshot > max_staleness:
                    self.changed.wait_for(lambda seq=seq: self.published >= seq or self.error is not None)
                    return "stale"
                if seq - min(self.folded) >= self.slots:
                    if self.folded[worker] == min(self.folded) or self.published > snapshot:
                        return "full"
                    self.changed.wait()
                    continue
                self.reserved += 1
                return seq

    def publish(self, seq: int, staleness: int | None, record: Record | None = None) -> None:
        """Make record ``seq`` (already written to its slot) visible to every worker.

        ``staleness`` None marks an empty record (its producer failed); ``record`` is the
        copy kept for replay when the log keeps records.
        """
        with self.changed:
            if staleness is not None:
                self.staleness.append(staleness)
            if record is not None and self.records is not None:
                self.records[seq] = record
            self._ready.add(seq)
            while self.published in self._ready:
                self._ready.remove(self.published)
                self.published += 1
            self.changed.notify_all()

    def publish_empty(self, seq: int) -> None:
        """Fill a reserved slot with a record that changes nothing (its producer failed)."""
        s = self.slot(seq)
        self.rec_size[s] = 0
        self.row_ptr[s] = 0
        self.n_touched[s] = 0
        self.publish(seq, None)  # no staleness: it is no update

    def mark_folded(self, worker: int, upto: int) -> None:
        with self.changed:
            self.folded[worker] = upto
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
