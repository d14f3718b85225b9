"""KronSGD: exact SGD on Kronecker points whose step cost does not depend on d.

State (DESIGN.md §3): the implicit weights alpha (m, n), w_r = w_r(0) + Σ_j alpha[r, j] x_j,
and the pre-activations P (m, n) = <w_r, x_j>, kept up to date by every step. A step touches
only the rows of P whose neurons fired on the batch: O(nnz(c) · n) work.
"""

from __future__ import annotations

import numpy as np

from . import _kernels as K
from ._loop import SGDLoop
from ._memory import format_bytes, require, resolve_budget
from ._model import fire_fraction
from ._validation import check_choice, check_int
from ._window import UpdateWindow

_GRAM_SHARE = 0.25  # "auto" precomputes G when it takes at most this share of the budget
_WINDOW_MAX = 8  # pending records; the fastest on a 2-core machine (see the benchmarks README)
_WINDOW_BYTES = 16 * 2**20  # "auto" keeps the window's Gram rows within this (about half an L3)


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
    window : int or "auto", default "auto"
        Update records kept before they are folded into P (1 = fold every step). Larger
        windows move P through memory less often; the iterates are the same bits for any
        window. "auto" picks up to 8, bounded so the records' Gram rows stay in cache.

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
        self, net, data, y, lr, batch_size, seed=0, gram="auto", dtype=np.float32, memory_budget=None, window="auto"
    ):
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
        self._counters = {
            "steps": 0,
            "samples": 0,
            "gram_entries": 0,
            "nnz": 0,
            "rows_touched": 0,
            "multiply_adds": 0,
            "rows_folded": 0,
        }

        self._P = self.net.preactivations(self.data, prepared=True, dtype=self.dtype)  # (m, n) <w_r, x_j>
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
        if window == "auto":
            window = int(min(_WINDOW_MAX, max(1, _WINDOW_BYTES // (self.batch_size * n * item))))
        self.window_size = check_int(window, "window", low=1)
        pairs = int(2 * self.batch_size * m * fire_fraction(self.net.shift)) + 1024
        self._window = UpdateWindow(self.window_size, m, n, self.batch_size, pairs, self.dtype)
        self._grow(self.batch_size, pairs)
        self._warm_up()

    def _warm_up(self) -> None:
        """Compile (or load from cache) every kernel for this dtype now rather than in step 1.

        Two empty steps exercise push, correct and fold without changing any state.
        """
        empty = np.zeros(0, dtype=np.int64)
        self._step(empty)
        self._step(empty)
        self._window.fold(self._P)

    @property
    def P(self) -> np.ndarray:
        """Pre-activations (m, n) = <w_r, x_j>, with every pending update folded in."""
        self._window.fold(self._P)
        return self._P

    def _grow(self, batch_size: int, cap: int) -> None:
        """(Re)allocate the step buffers: for batches up to batch_size and cap fired pairs."""
        m, C = self.net.width, self.net.outputs
        self._ws = {
            "cols": np.zeros(m * batch_size, dtype=self.dtype),  # flat; viewed as (m, B)
            "local": np.arange(batch_size, dtype=np.int64),  # column i of cols is batch point i
            "fired_ptr": np.zeros(batch_size + 1, dtype=np.int64),
            "fired_rows": np.zeros(cap, dtype=np.int64),
            "coefs": np.zeros(cap, dtype=self.dtype),
            "f": np.zeros((batch_size, C), dtype=np.float64),
        }

    # ---- one step ----------------------------------------------------------------------
    def _step(self, batch: np.ndarray) -> None:
        ws, net, m = self._ws, self.net, self.net.width
        B = batch.size
        if B > ws["local"].size:
            self._grow(B, ws["fired_rows"].size)
            ws = self._ws
        # compute: the batch's columns of P, brought up to date; fired sets, outputs, coefficients
        cols = ws["cols"][: m * B].reshape(m, B)  # (m, B)
        K.gather_columns(self._P, batch, cols)
        self._window.correct(cols, batch)
        args = (self._a, ws["local"][:B], net.shift, self._inv_sqrt_m)
        nnz = K.forward_batch(cols, *args, ws["fired_ptr"], ws["fired_rows"], ws["f"])
        if nnz > ws["fired_rows"].size:
            self._grow(ws["local"].size, 2 * nnz)
            ws = self._ws
            K.forward_batch(cols, *args, ws["fired_ptr"], ws["fired_rows"], ws["f"])
        residual = ws["f"][:B] - self.y[batch]  # (B, C)
        batch_loss = 0.5 * float(np.sum(residual * residual))
        if not np.isfinite(batch_loss):
            raise self._diverged(batch_loss, batch)
        fired_ptr = ws["fired_ptr"][: B + 1]
        growth = K.coefficients(
            self._a, residual, fired_ptr, ws["fired_rows"], -self.lr * self._inv_sqrt_m, ws["coefs"]
        )
        if not growth * self._gram_bound < 0.25 * np.finfo(self.dtype).max:
            raise self._diverged(batch_loss, batch)
        # apply: alpha at once; P through the window (folded when full)
        window = self._window
        window.reserve(self._P, B, nnz)
        rows = window.slot_rows(B)  # (B, n)
        if self.G is None:
            rows[:] = self.data.gram(rows=batch)
            self._counters["gram_entries"] += B * self.n
        else:
            np.take(self.G, batch, axis=0, out=rows)
        touched = window.push(fired_ptr, ws["fired_rows"], ws["coefs"])
        K.apply_alpha(self.alpha, batch, fired_ptr, ws["fired_rows"], ws["coefs"])
        if window.full():
            window.fold(self._P)
        if B == 0:
            return
        c = self._counters
        c["steps"] += 1
        c["samples"] += B
        c["nnz"] += nnz
        c["rows_touched"] += touched
        c["multiply_adds"] += nnz * self.n
        c["rows_folded"] = window.rows_folded

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
