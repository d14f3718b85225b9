"""Kernel ridge regression on a precomputed kernel: (H + αI) c = Y, α fixed or chosen exactly.

With H = Q diag(λ) Qᵀ, every ridge value costs O(n²) once the eigendecomposition is paid:

    c(α)       = Q diag(1 / (λ + α)) Qᵀ Y
    G(α)_ii    = [(H + αI)⁻¹]_ii = Σ_k Q_ik² / (λ_k + α)
    LOO        e_i = c_i / G_ii            (the residual of point i when it is left out)
    GCV        n ‖α c‖² / (Σ_k α / (λ_k + α))²

the exact leave-one-out and generalised cross-validation formulas of scikit-learn's
``_RidgeGCV`` (Rifkin & Lippert, "Notes on regularized least squares", 2007). All ridge
values of a grid are evaluated together by two GEMMs. A fixed α is solved by Cholesky
(n³/3 flops against about 9n³ for the eigendecomposition): one LAPACK call up to
``cholesky.DIRECT_MAX``, by tiles beyond (LAPACK's threaded dpotrf crashes there).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import numpy as np
import scipy.linalg
from threadpoolctl import threadpool_limits

from .cholesky import DIRECT_MAX, factor_lower, solve_lower

_ROWS_BYTES = 64 * 2**20  # one (rows, n) temporary of squared eigenvector entries stays this small


def lapack_threads():
    """One BLAS thread for the factorisations while the machine is busy, else as many as BLAS likes.

    A symmetric eigendecomposition is dominated by the tridiagonal reduction, one
    matrix-vector product per column with a barrier each; a thread of the pool that is
    waiting for a core stalls every barrier. Measured on 2 cores at a load average of 6:
    eigh at n = 1,400 took 14 s with 2 threads and 0.8 s with 1; at n = 3,000, 27 s and 8 s.
    """
    try:
        busy = os.getloadavg()[0] >= (os.cpu_count() or 1)
    except (AttributeError, OSError):  # pragma: no cover - no load average on this platform
        busy = False
    return threadpool_limits(1) if busy else contextlib.nullcontext()


@dataclass(frozen=True)
class RidgePath:
    """The ridge values tried and their cross-validation errors.

    Attributes
    ----------
    alphas : ndarray (A,)
    errors : ndarray (A,)
        Mean squared LOO residual, or the GCV score, per α (over points and outputs).
    best : int
        Index of the smallest error (the first of equals).
    dual_coef : ndarray (n, C)
        c at ``alphas[best]``.
    """

    alphas: np.ndarray
    errors: np.ndarray
    best: int
    dual_coef: np.ndarray


def eigen_bytes(n: int, evd: bool, alphas: int, outputs: int) -> int:
    """Bytes of ``ridge_path`` on an (n, n) kernel beyond the kernel itself.

    The eigenvectors (or LAPACK's workspace: one more n x n for "evd"), and the (n, A, C)
    coefficients of every α with their temporary, the (n, A) inverse diagonals and the
    eigensolver's O(n) work.
    """
    return 8 * n * n * (2 if evd else 1) + 8 * n * (2 * alphas * outputs + 2 * alphas + 32)


def ridge_path(H: np.ndarray, Y: np.ndarray, alphas: np.ndarray, criterion: str, evd: bool = True) -> RidgePath:
    """Choose α among ``alphas`` by exact leave-one-out ("loo") or GCV ("gcv") from one eigh of H.

    Parameters
    ----------
    H : ndarray (n, n), float64, symmetric
        Overwritten (its memory holds the eigenvectors or LAPACK's work).
    Y : ndarray (n, C), float64
    alphas : ndarray (A,) of positive floats
    criterion : {"loo", "gcv"}
    evd : bool, default True
        LAPACK's divide and conquer (about 1.4x faster, 2n² workspace) or the relatively
        robust representations driver (O(n) workspace).

    Returns
    -------
    RidgePath
    """
    n = H.shape[0]
    # H is symmetric, so its transpose is the same matrix in Fortran order: LAPACK works in place.
    driver = "evd" if evd else "evr"
    with lapack_threads():
        lam, Q = scipy.linalg.eigh(H.T, overwrite_a=True, check_finite=False, driver=driver)  # (n,), (n, n)
    lam = np.maximum(lam, 0.0)  # H is positive semi-definite; rounding can leave -1e-17
    inv = 1.0 / (lam[:, None] + alphas[None, :])  # (n, A)
    QtY = Q.T @ Y  # (n, C)
    A, C = alphas.size, Y.shape[1]
    coefs = (Q @ (QtY[:, None, :] * inv[:, :, None]).reshape(n, A * C)).reshape(n, A, C)  # (n, A, C) all c(α)
    if criterion == "loo":
        diag = np.empty((n, A))  # G(α)_ii
        rows = max(1, _ROWS_BYTES // (8 * n))
        for i0 in range(0, n, rows):
            diag[i0 : i0 + rows] = np.square(Q[i0 : i0 + rows]) @ inv  # (rows, n) @ (n, A)
        errors = np.mean(np.square(coefs / diag[:, :, None]), axis=(0, 2))  # (A,)
    else:
        trace = np.sum(alphas[None, :] * inv, axis=0)  # (A,) trace of I - H (H + αI)⁻¹
        residual = np.mean(np.square(coefs * alphas[None, :, None]), axis=(0, 2))  # (A,)
        errors = residual / np.square(trace / n)
    best = int(np.argmin(errors))
    return RidgePath(alphas, errors, best, np.ascontiguousarray(coefs[:, best, :]))


def cholesky_solve(H: np.ndarray, Y: np.ndarray, alpha: float, rebuild=None) -> np.ndarray:
    """c = (H + αI)⁻¹ Y by Cholesky. Returns (n, C).

    Parameters
    ----------
    H : ndarray (n, n), float64, symmetric
        Kept when ``rebuild`` is None (the factor is a copy); else factored in place, so that
        the solve needs no second n x n array.
    Y : ndarray (n, C)
    alpha : float > 0
    rebuild : callable () -> H, optional
        Builds H again where the Cholesky fails: a kernel whose rounding makes H + αI
        indefinite (α below about 1e-15 · λ_max) is then solved through its eigendecomposition,
        with the negative eigenvalues taken as 0.
    """
    shifted = H if rebuild is not None else H.copy()  # (n, n)
    shifted.flat[:: shifted.shape[0] + 1] += alpha
    try:
        if shifted.shape[0] > DIRECT_MAX:  # LAPACK's threaded dpotrf crashes there: by tiles (estimators.cholesky)
            return solve_lower(factor_lower(shifted), Y)
        # symmetric: the transpose is the same matrix in Fortran order, which LAPACK factors in place
        with lapack_threads():
            factor = scipy.linalg.cho_factor(shifted.T, lower=False, overwrite_a=True, check_finite=False)
        return scipy.linalg.cho_solve(factor, Y, check_finite=False)
    except np.linalg.LinAlgError:
        H = H if rebuild is None else rebuild()
        with lapack_threads():
            lam, Q = scipy.linalg.eigh(H, check_finite=False)  # (n,), (n, n)
        return Q @ ((Q.T @ Y) / (np.maximum(lam, 0.0) + alpha)[:, None])
