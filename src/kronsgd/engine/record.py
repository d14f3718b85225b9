"""One update: computed by a pure function from a snapshot of the batch's columns, shipped as a Record.

DESIGN.md §6: whatever the backend, an update is computed by ``compute_update`` from the
batch's columns of P as a worker sees them (its snapshot), the second layer a, the
threshold, the batch's targets and the step size — it reads nothing else and writes
nothing shared — and applied by one fold (fold.py) to a range of columns, in log order.
The serial loop, the threads, the Ray actors and ``replay`` are drivers of those two.

A ``Record`` is an update as it travels (Ray messages, kept logs, checkpoints, replay): the
batch and its fired pairs grouped by neuron. Its size depends on nnz and the batch, never
on d or n.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..kernels import step as K


@dataclass(frozen=True)
class Record:
    """One logged update: ``alpha[rows[t], batch[owner[t]]] += coef[t]`` for every pair t.

    Pairs are sorted by neuron (rows ascending), in batch order within a neuron. Indices are
    int32 (m and the batch are far below 2^31): a record is what crosses the network.
    """

    seq: int
    worker: int
    staleness: int  # records published after the producer's snapshot, before this one
    batch: np.ndarray  # (B,) int64 point indices
    rows: np.ndarray  # (nnz,) int32 neurons
    owner: np.ndarray  # (nnz,) int32 batch positions
    coef: np.ndarray  # (nnz,) SGD coefficients, P's dtype

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays: 8 · B + (8 + itemsize) · nnz, whatever d and n are."""
        return self.batch.nbytes + self.rows.nbytes + self.owner.nbytes + self.coef.nbytes


@dataclass
class Update:
    """What ``compute_update`` finds for one batch: fired pairs in CSR form by batch point."""

    batch: np.ndarray  # (B,) int64
    fired_ptr: np.ndarray  # (B + 1,) point i's pairs are fired_ptr[i]:fired_ptr[i + 1]
    fired_rows: np.ndarray  # (cap,) neurons, ascending within a point; the first nnz are valid
    coefs: np.ndarray  # (cap,) SGD coefficients of the pairs
    nnz: int
    loss: float  # ½ Σ_{i∈S} ||f(x_i) - y_i||² at the snapshot


def step_coefficients(a, f, y_batch, fired_ptr, fired_rows, step, gram_bound, dtype, coefs) -> tuple[float, bool]:
    """The batch loss and the SGD coefficients of one step from its outputs.

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


def gram_rows(G, data, batch: np.ndarray, out: np.ndarray, other=None) -> int:
    """out (B, n) = the Gram rows of ``batch``: G's rows, or from the factors in out's dtype (against
    the points ``other`` when given). Returns the inner products computed (0 when G has them)."""
    if G is not None:
        np.take(G, batch, axis=0, out=out)
        return 0
    out[:] = data.gram(rows=batch, other=other, dtype=out.dtype)  # in P's dtype: a float32 GEMM for float32
    return out.size


class Buffers:
    """Scratch a producer reuses from step to step (grown when a batch needs more)."""

    def __init__(self, m: int, outputs: int, batch: int, pairs: int, dtype):
        self.m, self.outputs, self.dtype = m, outputs, np.dtype(dtype)
        self._allocate(batch)
        self.grow_pairs(pairs)

    def _allocate(self, batch: int) -> None:
        self.cols = np.zeros(self.m * batch, dtype=self.dtype)  # flat; viewed as (m, B)
        self.local = np.arange(batch, dtype=np.int64)  # column i of cols is batch point i
        self.fired_ptr = np.zeros(batch + 1, dtype=np.int64)
        self.f = np.zeros((batch, self.outputs), dtype=np.float64)

    def fit(self, batch: int) -> None:
        """Room for a batch of ``batch`` points (an explicit batch may exceed the batch size)."""
        if batch > self.local.size:
            self._allocate(batch)

    def columns(self, batch: int) -> np.ndarray:
        """An (m, batch) view of the column buffer, grown if needed."""
        self.fit(batch)
        return self.cols[: self.m * batch].reshape(self.m, batch)

    def grow_pairs(self, pairs: int) -> None:
        self.fired_rows = np.zeros(pairs, dtype=np.int64)
        self.coefs = np.zeros(pairs, dtype=self.dtype)


def compute_update(cols, batch, a, shift, y_batch, lr, gram_bound, buffers: Buffers, fired_sets=None) -> Update:
    """The SGD update of ``batch`` from cols (m, B) = P[:, batch] at the producer's snapshot.

    Pure: reads its arguments, writes only ``buffers``. ``fired_sets`` (optional) replaces the
    scan for finding fired sets and outputs (the tree, which answers from P as folded);
    it takes (fired_ptr, fired_rows, f) and returns nnz like ``kernels.step.forward_batch``.
    Returns an Update whose ``loss`` is the batch loss; when the step would diverge the
    Update has nnz = -1 and nothing was changed.
    """
    m, B = a.shape[0], batch.size
    inv_sqrt_m = 1.0 / np.sqrt(m)
    b = buffers
    b.fit(B)  # the tree's path has no columns to grow them
    f = b.f[:B]

    def forward() -> int:
        out = (b.fired_ptr[: B + 1], b.fired_rows, f)
        if fired_sets is not None:
            return fired_sets(*out)
        return K.forward_batch(cols, a, b.local[:B], shift, inv_sqrt_m, *out)

    nnz = forward()
    if nnz > b.fired_rows.size:  # both forward kernels only read P: growing and rerunning is safe
        b.grow_pairs(2 * nnz)
        nnz = forward()
    fired_ptr = b.fired_ptr[: B + 1]
    loss, diverged = step_coefficients(
        a, f, y_batch, fired_ptr, b.fired_rows, -lr * inv_sqrt_m, gram_bound, b.dtype, b.coefs
    )
    return Update(batch, fired_ptr, b.fired_rows, b.coefs, -1 if diverged else nnz, loss)


def to_record(update: Update, m: int, seq: int = -1, worker: int = 0, staleness: int = 0) -> Record:
    """The update grouped by neuron, as a self-contained Record (copies)."""
    nnz = update.nnz
    row_ptr, owner, coef = np.zeros(m + 1, np.int64), np.zeros(nnz, np.int64), np.zeros(nnz, update.coefs.dtype)
    K.group_by_row(m, update.fired_ptr, update.fired_rows, update.coefs, row_ptr, owner, coef, np.zeros(nnz, np.int64))
    rows = np.repeat(np.arange(m, dtype=np.int32), np.diff(row_ptr))
    return Record(seq, worker, staleness, update.batch.copy(), rows, owner.astype(np.int32), coef)
