"""KronSGD: exact SGD on Kronecker points whose step cost does not depend on d.

State (DESIGN.md §3): the implicit weights alpha (m, n), w_r = w_r(0) + Σ_j alpha[r, j] x_j,
and the pre-activations P (m, n) = <w_r, x_j>, kept up to date by every step. A step touches
only the rows of P whose neurons fired on the batch: O(nnz(c) · n) work.
"""

from __future__ import annotations

import numpy as np

from . import _kernels as K
from ._loop import SGDLoop
from ._model import fire_fraction
from ._memory import format_bytes, require, resolve_budget
from ._validation import check_choice

_GRAM_SHARE = 0.25  # "auto" precomputes G when it takes at most this share of the budget


class KronSGD(SGDLoop):
    """Kronecker SGD on a TwoLayerNet (sequential, exact).

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

    def __init__(self, net, data, y, lr, batch_size, seed=0, gram="auto", dtype=np.float32, memory_budget=None):
        super().__init__(net, data, y, lr, batch_size, seed, dtype)
        gram = check_choice(gram, "gram", ("auto", "precomputed", "on_the_fly"))
        budget = resolve_budget(memory_budget)
        m, n, item = self.net.width, self.n, self.dtype.itemsize
        require(
            2 * m * n * item,
            budget,
            f"P and alpha ({m} neurons x {n} points, {self.dtype.name}, two arrays)",
            "Use fewer points per trainer, a smaller width, or dtype=numpy.float32.",
        )
        gram_bytes = n * n * item
        if gram == "auto":
            gram = "precomputed" if gram_bytes <= _GRAM_SHARE * budget else "on_the_fly"
        if gram == "precomputed":
            require(
                gram_bytes + 2 * m * n * item,
                budget,
                f"the precomputed Gram matrix ({n} x {n}, {format_bytes(gram_bytes)}) with P and alpha",
                'Pass gram="on_the_fly" to compute the batch\'s Gram rows each step instead.',
            )
        self.gram_mode = gram
        self._counters = {"steps": 0, "samples": 0, "gram_entries": 0, "nnz": 0, "rows_touched": 0, "multiply_adds": 0}

        self.P = self.net.preactivations(self.data, prepared=True, dtype=self.dtype)  # (m, n) <w_r, x_j>
        self.alpha = np.zeros((m, n), dtype=self.dtype)  # (m, n) implicit weights, owned here
        self.net.attach_support(self.data, self.alpha)
        self._a = np.ascontiguousarray(self.net.a, dtype=np.float64)  # (m, C)
        if gram == "precomputed":
            self.G = self.data.gram().astype(self.dtype)  # (n, n)
            self._counters["gram_entries"] += n * n
        else:
            self.G = None
        # |G[i, j]| <= max_i ||x_i||², so one step moves a P entry by at most Σ|c| times this.
        self._gram_bound = float(np.max(self.data.norms()) ** 2)
        expected_nnz = self.batch_size * m * fire_fraction(self.net.shift)
        self._grow(self.batch_size, int(2 * expected_nnz) + 1024)
        self._step(np.zeros(0, dtype=np.int64))  # compiles (or loads) the kernels for this dtype now, not in step 1

    def _grow(self, batch_size: int, cap: int) -> None:
        """(Re)allocate the step buffers: for batches up to batch_size and cap fired pairs."""
        C = self.net.outputs
        self._ws = {
            "fired_ptr": np.zeros(batch_size + 1, dtype=np.int64),
            "fired_rows": np.zeros(cap, dtype=np.int64),
            "coefs": np.zeros(cap, dtype=self.dtype),
            "row_ptr": np.zeros(self.net.width + 1, dtype=np.int64),
            "entry_owner": np.zeros(cap, dtype=np.int64),
            "entry_index": np.zeros(cap, dtype=np.int64),
            "f": np.zeros((batch_size, C), dtype=np.float64),
        }

    # ---- one step ----------------------------------------------------------------------
    def _step(self, batch: np.ndarray) -> None:
        ws = self._ws
        B = batch.size
        if B + 1 > ws["fired_ptr"].size:
            self._grow(B, ws["fired_rows"].size)
            ws = self._ws
        net = self.net
        # compute: fired sets, outputs and coefficients from the current P (nothing written)
        nnz = K.forward_batch(self.P, self._a, batch, net.shift, self._inv_sqrt_m, ws["fired_ptr"], ws["fired_rows"], ws["f"])
        if nnz > ws["fired_rows"].size:
            self._grow(ws["fired_ptr"].size - 1, 2 * nnz)
            ws = self._ws
            K.forward_batch(self.P, self._a, batch, net.shift, self._inv_sqrt_m, ws["fired_ptr"], ws["fired_rows"], ws["f"])
        residual = ws["f"][:B] - self.y[batch]  # (B, C)
        batch_loss = 0.5 * float(np.sum(residual * residual))
        if not np.isfinite(batch_loss):
            raise self._diverged(batch_loss, batch)
        fired_ptr = ws["fired_ptr"][: B + 1]
        growth = K.coefficients(self._a, residual, fired_ptr, ws["fired_rows"], -self.lr * self._inv_sqrt_m, ws["coefs"])
        if not growth * self._gram_bound < 0.25 * np.finfo(self.dtype).max:
            raise self._diverged(batch_loss, batch)
        # apply: the record (batch, fired rows, coefs) to P and alpha
        if self.G is None:
            g_rows, g_index = self.data.gram(rows=batch).astype(self.dtype), np.arange(B)  # (B, n)
            self._counters["gram_entries"] += B * self.n
        else:
            g_rows, g_index = self.G, batch
        touched = K.group_by_row(net.width, fired_ptr, ws["fired_rows"], ws["row_ptr"], ws["entry_owner"], ws["entry_index"])
        K.apply_rows(self.P, g_rows, g_index, ws["row_ptr"], ws["entry_owner"], ws["entry_index"], ws["coefs"], 0, self.n)
        K.apply_alpha(self.alpha, batch, fired_ptr, ws["fired_rows"], ws["coefs"])
        if B == 0:
            return
        c = self._counters
        c["steps"] += 1
        c["samples"] += B
        c["nnz"] += nnz
        c["rows_touched"] += touched
        c["multiply_adds"] += nnz * self.n

    def _full_outputs(self):
        out = np.empty((self.n, self.net.outputs))  # (n, C)
        fired = K.full_outputs(self.P, self._a, self.net.shift, self._inv_sqrt_m, out)
        return out, fired

    # ---- results -----------------------------------------------------------------------
    def counters(self) -> dict:
        """Cost counters so far: steps, samples, gram_entries (inner products <x_i, x_j>
        computed), nnz (fired pairs = nonzero SGD coefficients), rows_touched (P rows
        updated), multiply_adds (P update work, nnz · n)."""
        return dict(self._counters)

    def predict(self, data) -> np.ndarray:
        """The trained net's outputs on new points (exact, from the implicit weights)."""
        return self.net.predict(data)

    def dense_weights(self, max_bytes=None) -> np.ndarray:
        return self.net.dense_weights(max_bytes)
