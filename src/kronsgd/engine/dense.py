"""DenseSGD: the same SGD on materialised inputs x (n, d) and weights W (m, d). The reference.

It is what a user would write without the Kronecker trick, and the oracle of KronSGD: with
the same net seed, batches and float64 it must produce the same iterates up to rounding.
"""

from __future__ import annotations

import numpy as np

from ..base.memory import format_bytes, require, resolve_budget
from .loop import SGDLoop

_NEURON_BLOCK = 256  # neurons per float64 block when computing outputs


class DenseSGD(SGDLoop):
    """Plain minibatch SGD on dense x and W; the same interface as KronSGD.

    Costs Θ(m · |S| · d) per step and m · d memory for W. The net is only read (its W0, a,
    shift and current weights); the trained weights live in ``self.W``.
    """

    def __init__(self, net, data, y, lr, batch_size, seed=0, dtype=np.float64, memory_budget=None):
        super().__init__(net, data, y, lr, batch_size, seed, dtype)
        budget = resolve_budget(memory_budget)
        m, n, d, item = self.net.width, self.n, self.net.d, self.dtype.itemsize
        need = (m + n) * d * (8 + item)  # built in float64, then cast: both copies exist for a moment
        require(
            need,
            budget,
            f"DenseSGD's dense weights and inputs ({m} + {n} rows of d = {d}, {format_bytes(need)})",
            "Use KronSGD, which never materialises them.",
        )
        self.X = self.data.to_dense(budget).astype(self.dtype)  # (n, d), unit rows
        self.W = self.net.dense_weights(budget).astype(self.dtype)  # (m, d)
        self._a = self.net.a.astype(self.dtype)  # (m, C)
        self._shift = np.float64(self.net.shift)  # compare in float64 whatever the dtype, as KronSGD does
        self._counters = {"steps": 0, "samples": 0, "nnz": 0, "multiply_adds": 0}

    def _step(self, batch: np.ndarray) -> None:
        x = self.X[batch]  # (B, d)
        z = x @ self.W.T  # (B, m) pre-activations
        fired = z > self._shift  # (B, m)
        f = np.where(fired, z - self._shift, 0.0) @ self._a * self._inv_sqrt_m  # (B, C)
        residual = f - self.y[batch]  # (B, C)
        batch_loss = 0.5 * float(np.sum(residual * residual))
        if not np.isfinite(batch_loss):
            raise self._diverged(batch_loss, batch)
        coef = ((-self.lr * self._inv_sqrt_m) * (residual @ self._a.T) * fired).astype(self.dtype)  # (B, m)
        self.W += coef.T @ x  # (m, d), in the training dtype
        c = self._counters
        c["steps"] += 1
        c["samples"] += batch.size
        c["nnz"] += int(fired.sum())
        c["multiply_adds"] += 2 * self.net.width * batch.size * self.net.d

    def _outputs_of(self, x: np.ndarray):
        """Outputs (n, C) and fired pairs, accumulated in float64 whatever the training dtype
        (float32 weights near the top of their range must not overflow on the way)."""
        x = x.astype(np.float64, copy=False)
        out = np.zeros((x.shape[0], self.net.outputs))  # (n, C)
        fired = 0
        for r0 in range(0, self.net.width, _NEURON_BLOCK):
            w = self.W[r0 : r0 + _NEURON_BLOCK].astype(np.float64)  # (block, d)
            h = np.maximum(x @ w.T - self._shift, 0.0)  # (n, block)
            out += h @ self._a[r0 : r0 + _NEURON_BLOCK].astype(np.float64)
            fired += int(np.count_nonzero(h))
        return out * self._inv_sqrt_m, fired

    def _full_outputs(self):
        return self._outputs_of(self.X)

    def counters(self) -> dict:
        """steps, samples, nnz (fired pairs), multiply_adds (2 · m · |S| · d per step)."""
        return dict(self._counters)

    def predict(self, data) -> np.ndarray:
        """Outputs of the dense weights on new points, (n,) or (n, C)."""
        x = self.net.prepare(data).to_dense().astype(self.dtype)  # (n_new, d)
        out, _ = self._outputs_of(x)
        return out[:, 0] if self.net.outputs == 1 else out

    def dense_weights(self, max_bytes=None) -> np.ndarray:
        """The trained weights W, (m, d) float64."""
        return self.W.astype(np.float64)
