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
    for batch in batches:
        W -= lr * batch_gradient(X, W, a, y, shift, batch)
    return W


def delayed_sgd(X, W, a, y, shift, lr, batches, staleness):
    """Asynchronous SGD replayed: update s is the gradient on batches[s] at the weights as they were
    before the last staleness[s] updates, W_{s - staleness[s]}; returns the final W."""
    iterates = [W.copy()]  # W_0, W_1, ...: W_s holds updates 0..s-1
    for s, (batch, late) in enumerate(zip(batches, staleness, strict=True)):
        assert 0 <= late <= s
        iterates.append(iterates[-1] - lr * batch_gradient(X, iterates[s - late], a, y, shift, batch))
    return iterates[-1]


def batch_gradient(X, W, a, y, shift, batch):
    """∂/∂W of ½Σ_{i∈batch} ||f(x_i) - y_i||², (m, d), summed point by point."""
    grad = np.zeros_like(W)
    m = W.shape[0]
    for i in batch:
        z = W @ X[i]  # (m,)
        f = np.maximum(z - shift, 0.0) @ a / np.sqrt(m)  # (C,)
        e = f - y[i]
        grad += np.outer((a @ e) * (z > shift), X[i]) / np.sqrt(m)
    return grad


def kron_all(vectors):
    """u1 ⊗ u2 ⊗ ... with numpy.kron."""
    out = vectors[0]
    for v in vectors[1:]:
        out = np.kron(out, v)
    return out


# ---- the AsynchronousTree (src/kronsgd/kernels/tree.py) --------------------------------
def tree_levels(m, fanout=16):
    """The sizes s_l = ceil(m / 16^l) of the levels, down to the single root."""
    sizes = [max(1, m)]
    while sizes[-1] > 1:
        sizes.append(-(-sizes[-1] // fanout))
    return sizes


def up32(x):
    """The smallest float32 >= x, elementwise (x float64)."""
    x = np.asarray(x, np.float64)
    v = x.astype(np.float32)
    below = v.astype(np.float64) < x
    v[below] = np.nextafter(v[below], np.float32(np.inf))
    return v


def tree_bounds(P, off, slack=0.0, fanout=16):
    """The float32 (n, S) tree as built: level 0 = keys + slack (computed in float64, rounded up),
    each entry of level l the max of its 16 children, -inf in the padding."""
    m, n = P.shape
    tree = np.full((n, off[-1]), -np.inf, np.float32)
    tree[:, :m] = up32(P.T.astype(np.float64) + slack)
    for level, size in enumerate(tree_levels(m, fanout)[1:], start=1):
        below = tree[:, off[level - 1] : off[level - 1] + size * fanout]
        tree[:, off[level] : off[level] + size] = below.reshape(n, size, fanout).max(axis=2)
    return tree


def bounds_are_upper(P, tree, off, fanout=16):
    """The tree's invariant: every level-0 bound >= its key, every entry >= each of its children."""
    m = P.shape[0]
    if not np.all(tree[:, :m] >= P.T):
        return False
    for level, size in enumerate(tree_levels(m, fanout)[1:], start=1):
        below = tree[:, off[level - 1] : off[level - 1] + size * fanout].reshape(tree.shape[0], size, fanout)
        if not np.all(tree[:, off[level] : off[level] + size] >= below.max(axis=2)):
            return False
    return True


def raise_bounds(P, tree, off, rows, col0, col1, fanout=16):
    """After the keys of ``rows`` changed on columns col0:col1: every bound on each path = max(bound, key)."""
    for r in rows:
        for level in range(off.size - 1):
            v = off[level] + r // fanout**level
            tree[col0:col1, v] = np.maximum(tree[col0:col1, v], up32(P[r, col0:col1]))


def headroom_holds(P, tree, headroom, col0, col1):
    """The headroom invariant: tree[c, r] - P[r, c] >= headroom[r] for every row and column col0:col1."""
    m = P.shape[0]
    gaps = tree[col0:col1, :m].T.astype(np.float64) - P[:, col0:col1].astype(np.float64)
    return bool(np.all(gaps >= headroom[:, None]))
