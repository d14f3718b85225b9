"""Slow, obviously-correct twins of the numba kernels, and a plain NumPy SGD.

Each function here is written for clarity, not speed; the tests compare the library with them.
"""

import numpy as np


def fired_and_outputs(P, a, batch, shift):
    """([F_i as sorted int arrays], f (B, C)) with F_i = {r : P[r, batch[i]] > shift}."""
    m = P.shape[0]
    fired = [np.flatnonzero(P[:, j] > shift) for j in batch]
    f = np.stack([np.maximum(P[:, j] - shift, 0.0) @ a for j in batch]) / np.sqrt(m)
    return fired, f


def coefficients(a, residual, fired, lr, m):
    """The SGD coefficient of x_i in w_r's update, one array per batch point (aligned with fired)."""
    return [-lr / np.sqrt(m) * (a[F] @ residual[i]) for i, F in enumerate(fired)]


def apply_update(P, alpha, G, batch, fired, coefs):
    """P[r, :] += Σ_i c[r, i] G[batch[i], :];  alpha[r, batch[i]] += c[r, i]."""
    for i, (F, c) in enumerate(zip(fired, coefs, strict=True)):
        for r, cr in zip(F, c, strict=True):
            P[r, :] += cr * G[batch[i], :]
            alpha[r, batch[i]] += cr


def full_outputs(P, a, shift):
    """((n, C) outputs on every column of P, number of fired pairs)."""
    return np.maximum(P - shift, 0.0).T @ a / np.sqrt(P.shape[0]), int(np.sum(P > shift))


def plain_sgd(X, W, a, y, shift, lr, batches):
    """Minibatch SGD on ½Σ(f(x_i) - y_i)² for f(x) = a^T max(Wx - b, 0) / sqrt(m); returns the final W.

    X (n, d) unit rows, W (m, d), a (m, C), y (n, C). The gradient is written out by hand.
    """
    W = W.copy()
    m = W.shape[0]
    for batch in batches:
        grad = np.zeros_like(W)
        for i in batch:
            z = W @ X[i]  # (m,)
            f = np.maximum(z - shift, 0.0) @ a / np.sqrt(m)  # (C,)
            e = f - y[i]
            grad += np.outer((a @ e) * (z > shift), X[i]) / np.sqrt(m)  # ∂/∂W of ½||f - y||²
        W -= lr * grad
    return W


def kron_all(vectors):
    """u1 ⊗ u2 ⊗ ... with numpy.kron."""
    out = vectors[0]
    for v in vectors[1:]:
        out = np.kron(out, v)
    return out
