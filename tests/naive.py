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


# ---- the AsynchronousTree (src/kronsgd/_tree_kernels.py) --------------------------------
def tree_shape(m, block):
    """M, the number of block nodes: the power of two >= ceil(m / block)."""
    blocks = -(-m // block)
    return 1 << max(0, blocks - 1).bit_length()


def tree_bounds(P, block, slack=0.0):
    """Bounds (2M, n) as built: row M + b is the max of block b's keys plus slack (-inf past m), row v the
    max of rows 2v, 2v+1; in P's dtype."""
    m, n = P.shape
    M = tree_shape(m, block)
    padded = np.full((M * block, n), -np.inf, P.dtype)
    padded[:m] = P
    bounds = np.full((2 * M, n), -np.inf, P.dtype)
    bounds[M:] = (padded.reshape(M, block, n).max(axis=1).astype(np.float64) + slack).astype(P.dtype)
    for v in range(M - 1, 0, -1):
        bounds[v] = np.maximum(bounds[2 * v], bounds[2 * v + 1])
    return bounds


def bounds_are_upper(P, bounds, block):
    """The tree's invariant: every bound >= its children's bounds and a block's bound >= its keys."""
    M = bounds.shape[0] // 2
    tight = tree_bounds(P, block)
    children = np.maximum(bounds[2::2], bounds[3::2])  # (M - 1, n): of nodes 1 .. M - 1
    return bool(np.all(bounds[M:] >= tight[M:]) and np.all(bounds[1:M] >= children))


def raise_bounds(P, bounds, block, rows, col0, col1):
    """After the keys of ``rows`` changed on columns col0:col1: bounds on each path = max(bound, key)."""
    M = bounds.shape[0] // 2
    for r in rows:
        v = M + r // block
        while v >= 1:
            bounds[v, col0:col1] = np.maximum(bounds[v, col0:col1], P[r, col0:col1])
            v //= 2


def headroom_holds(P, bounds, block, headroom, col0, col1):
    """The headroom invariant: bounds[block(r), c] - P[r, c] >= headroom[r] for every row and column col0:col1."""
    M = bounds.shape[0] // 2
    block_rows = bounds[M + np.arange(P.shape[0]) // block, col0:col1].astype(np.float64)
    return bool(np.all(block_rows - P[:, col0:col1].astype(np.float64) >= headroom[:, None]))
