"""A blocked Cholesky factorisation and solve, in place, by tiles of GEMM.

Why not one LAPACK call: the threaded ``dpotrf`` of the OpenBLAS that SciPy's wheels bundle
(0.3.30) dies with a segmentation fault on large matrices (measured here: n = 23,000, 24,000
and 32,000 with two threads, within seconds; n = 16,400 factors): a crash of the whole
process, not an error. The kernel estimators reach those sizes, so beyond ``DIRECT_MAX``
they factor by tiles: LAPACK only on (block x block) diagonal tiles, the panel by LU solves
against its diagonal tile (backward stable, as accurate as LAPACK's triangular solve), and
the trailing update as matrix products into one scratch array of at most ``CHUNK_BYTES``.
The same n³ / 3 flops, 1.5-1.7x LAPACK's time at n = 8,192 (the update's GEMMs run at
LAPACK's speed; the tiles' small calls cost the rest). Only NumPy is called: the module
needs no SciPy (the advisor imports its constants without the optional extras), and mixing
in SciPy's BLAS (a second OpenBLAS whose threads spin on the same cores) slowed the products
by a third. Ctrl-C is answered between tiles (one LAPACK call on n = 32,000 takes minutes
and cannot be interrupted).

Only the lower triangle is read; on return it holds L with H = L Lᵀ, and the strict upper
triangle holds scratch.
"""

from __future__ import annotations

import numpy as np

BLOCK = 512  # columns factored per tile (measured at n = 8,192: 512 beats 256, 1,024 and 2,048)
CHUNK_BYTES = 64 * 2**20  # largest temporary of the panel solve and the trailing update
DIRECT_MAX = 16_384  # up to this n, one LAPACK call (measured safe and as fast)


def factor_lower(A: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """Factor the symmetric positive definite (n, n) A = L Lᵀ in place; returns A.

    Raises ``numpy.linalg.LinAlgError`` if a diagonal tile is not positive definite.
    """
    n = A.shape[0]
    cols = max(block, CHUNK_BYTES // (8 * block))
    scratch = np.empty((min(block, n), min(cols, n)))  # one temporary for every product of the update
    for k in range(0, n, block):
        e = min(k + block, n)
        A[k:e, k:e] = np.linalg.cholesky(A[k:e, k:e])  # (b, b) reads the lower triangle
        if e == n:
            break
        rows = max(1, CHUNK_BYTES // (8 * (e - k)))
        for r in range(e, n, rows):  # panel: A[e:, k:e] = A[e:, k:e] L_kk⁻ᵀ (LU solves: backward stable)
            A[r : r + rows, k:e] = np.linalg.solve(A[k:e, k:e], A[r : r + rows, k:e].T).T
        panel = A[:, k:e]  # (n, b) strided view: BLAS reads it in place
        for j0 in range(e, n, block):  # trailing update of the lower triangle, one block row at a time
            j1 = min(j0 + block, n)
            for c0 in range(e, j1, cols):
                c1 = min(c0 + cols, j1)
                product = np.matmul(panel[j0:j1], panel[c0:c1].T, out=scratch[: j1 - j0, : c1 - c0])
                A[j0:j1, c0:c1] -= product  # (rows, cols)
    return A


def solve_lower(L: np.ndarray, Y: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """X = (L Lᵀ)⁻¹ Y for the factor of ``factor_lower`` (lower triangle of L). Returns (n, C)."""
    n = L.shape[0]
    Z = np.array(Y, dtype=np.float64, order="C")  # (n, C), overwritten by L⁻¹ Y then by the solution
    for k in range(0, n, block):  # forward: L Z = Y
        e = min(k + block, n)
        rhs = Z[k:e] - L[k:e, :k] @ Z[:k]  # (b, C)
        Z[k:e] = np.linalg.solve(np.tril(L[k:e, k:e]), rhs)  # the tile's L (its upper triangle is scratch)
    for k in reversed(range(0, n, block)):  # backward: Lᵀ X = Z
        e = min(k + block, n)
        rhs = Z[k:e] - L[e:, k:e].T @ Z[e:]  # (b, C)
        Z[k:e] = np.linalg.solve(np.tril(L[k:e, k:e]).T, rhs)
    return Z
