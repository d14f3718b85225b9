"""The update window: SGD update records that are not yet folded into P.

A record is what one step changes: the batch's Gram rows and its fired pairs (neuron r,
batch position i, coefficient c), grouped by neuron. Eager maintenance adds each record to
every touched row of P at once, streaming those rows through memory every step. Deferred
maintenance keeps the last K records here, brings just the batch's columns of P up to date
when a step needs them (``correct``), and folds the K records into P in one pass over each
touched row (``fold``): the same additions in the same order, so the iterates are
bit-identical for every K, with up to K times less memory traffic on P.
"""

from __future__ import annotations

import numpy as np

from . import _kernels as K


class UpdateWindow:
    """Up to ``size`` pending records for P of shape (m, n); buffers grow on demand."""

    def __init__(self, size: int, m: int, n: int, batch: int, cap: int, dtype):
        self.size, self.m, self.n, self.dtype = size, m, n, np.dtype(dtype)
        self.count = 0  # pending records
        self.rows_folded = 0  # Σ over folds of distinct P rows written
        self._allocate(batch, cap)

    def _allocate(self, batch: int, cap: int) -> None:
        K_, m = self.size, self.m
        self.batch_cap, self.pair_cap = batch, cap
        self.g_rows = np.zeros((K_, batch, self.n), dtype=self.dtype)  # (K, B, n) Gram rows of each batch
        self.rec_size = np.zeros(K_, dtype=np.int64)  # (K,) batch size of each record
        self.row_ptr = np.zeros((K_, m + 1), dtype=np.int64)  # (K, m+1) pairs of row r: row_ptr[k, r]:row_ptr[k, r+1]
        self.owner = np.zeros((K_, cap), dtype=np.int64)  # (K, cap) batch position of each pair
        self.coef = np.zeros((K_, cap), dtype=self.dtype)  # (K, cap) coefficient of each pair
        self.scratch = np.zeros((batch, batch), dtype=self.dtype)  # (B, B) G[batch_k, batch]

    def reserve(self, P: np.ndarray, batch: int, pairs: int) -> None:
        """Make room for a record of ``batch`` points and ``pairs`` pairs (folds first if it must grow)."""
        if batch > self.batch_cap or pairs > self.pair_cap:
            self.fold(P)
            self._allocate(max(batch, self.batch_cap), max(pairs, 2 * self.pair_cap))

    def slot_rows(self, batch: int) -> np.ndarray:
        """The (batch, n) buffer that receives the next record's Gram rows."""
        return self.g_rows[self.count, :batch]

    def push(self, fired_ptr, fired_rows, coefs) -> int:
        """Store the next record (its Gram rows already in slot_rows); returns rows it touches."""
        k = self.count
        B = fired_ptr.size - 1
        touched = K.group_by_row(self.m, fired_ptr, fired_rows, coefs, self.row_ptr[k], self.owner[k], self.coef[k])
        self.rec_size[k] = B
        self.count += 1
        return touched

    def correct(self, cols: np.ndarray, batch: np.ndarray) -> None:
        """cols (m, B) = P[:, batch] before the pending records → after them."""
        if self.count:
            K.correct_columns(
                cols, batch, self.g_rows, self.rec_size, self.row_ptr, self.owner, self.coef, self.count, self.scratch
            )

    def full(self) -> bool:
        return self.count == self.size

    def fold(self, P: np.ndarray, col0: int = 0, col1: int | None = None) -> None:
        """Add every pending record to P[:, col0:col1] and empty the window."""
        if self.count:
            col1 = self.n if col1 is None else col1
            self.rows_folded += K.fold_records(
                P, self.g_rows, self.row_ptr, self.owner, self.coef, self.count, col0, col1
            )
            self.count = 0
