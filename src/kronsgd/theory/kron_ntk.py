"""The NTK and the fire fraction of the Kronecker-structured initial layer (init="kronecker").

With w = K^{-1/2} Σ_{q=1..K} g_q^(1) ⊗ g_q^(2) (standard Gaussian factors) and a point x whose
row-major reshape X (d1 x d2) has singular values σ_1, σ_2, ..., the pre-activation is

    <w, x> = K^{-1/2} Σ_q g_q^(1)ᵀ X g_q^(2) = K^{-1/2} Σ_q Σ_i σ_i a_qi c_qi      (a, c iid N(0, 1))

and since a·c = ((a + c)² - (a - c)²) / 2 its characteristic function is exactly

    φ(s) = Π_i (1 + σ_i² s² / K)^{-K/2}           → exp(-s²/2) as K → ∞ (the Gaussian init).

It is real and even, so Pr[<w, x> > b] = 1/2 - (1/π) ∫_0^∞ sin(s b) φ(s) / s ds (Gil-Pelaez):
the fire fraction at initialisation, exact, for two factors. The NTK entries off the diagonal
need the joint law of two such sums; they are estimated by Monte Carlo over drawn neurons
(the finite-width kernel at init, averaged over ``samples`` neurons), with the exact diagonal.
"""

from __future__ import annotations

import numpy as np

from ..base.errors import ValidationError
from ..base.validation import check_float, check_int
from ..data.contract import project_w0
from ..model.net import DEFAULT_INIT_RANK, as_data, check_seed

_S_MAX = 4000.0  # upper end of the Gil-Pelaez integral: the K = 1 tail beyond it is < 1e-6
_S_STEP = 0.004  # trapezoid step: sin(s b) resolved for b up to ~50
_SAMPLE_BLOCK = 4096  # neurons per block of the Monte Carlo kernel


def _singular_values_squared(data) -> np.ndarray:
    """σ_i² of each unit point's (d1, d2) matrix, shape (n, R): eigenvalues of (U Uᵀ)(V Vᵀ)."""
    U, V = data.factors  # (n, R, d1), (n, R, d2)
    gu = np.einsum("nqa,npa->nqp", U, U)  # (n, R, R)
    gv = np.einsum("nqa,npa->nqp", V, V)  # (n, R, R)
    return np.clip(np.linalg.eigvals(gu @ gv).real, 0.0, None)  # (n, R)


def kronecker_fire_fraction(data, shift, init_rank=DEFAULT_INIT_RANK) -> np.ndarray:
    """Pr[<w_r(0), x_i> > b] for each unit-normalised point under init="kronecker", exact.

    Parameters
    ----------
    data : KroneckerData or list of factor arrays
        n points with two factors (the exact law is derived for k = 2).
    shift : float >= 0
        The threshold b.
    init_rank : int >= 1, default 16
        K, the Kronecker terms of each initial neuron.

    Returns
    -------
    ndarray of shape (n,), float64; tends to Φ̄(b) as K grows.

    Examples
    --------
    >>> import numpy as np
    >>> from kronsgd.model.net import fire_fraction
    >>> x = [np.ones((1, 3)), np.ones((1, 4))]  # one rank-1 point
    >>> p = kronecker_fire_fraction(x, 1.0, init_rank=4096)
    >>> bool(abs(p[0] - fire_fraction(1.0)) < 1e-3)
    True
    """
    data = as_data(data)
    b = check_float(shift, "shift", low=0.0)
    K = check_int(init_rank, "init_rank", low=1)
    if len(data.dims) != 2:
        raise ValidationError(
            f"data must have two factors for the exact law (k = 2). Got k = {len(data.dims)}; "
            "use ntk_gram(..., init='kronecker') for a Monte Carlo estimate."
        )
    sigma2 = _singular_values_squared(data.normalized())  # (n, R)
    # Σ σ² = 1 makes φ(s) <= (1 + s²/K)^{-K/2} (a rank-1 point decays slowest): stop where that is < e^-30
    end = min(_S_MAX, np.sqrt(K * np.expm1(60.0 / K)))
    s = np.arange(1, int(end / _S_STEP) + 1) * _S_STEP  # (S,) from s > 0; the integrand -> b at 0
    out = np.empty(data.n)
    for i in range(data.n):
        log_phi = -0.5 * K * np.log1p(np.outer(s * s, sigma2[i]) / K).sum(axis=1)  # (S,)
        f = np.sin(s * b) * np.exp(log_phi) / s  # (S,)
        integral = _S_STEP * (0.5 * b + f[:-1].sum() + 0.5 * f[-1])  # trapezoid from s = 0 (limit b)
        out[i] = 0.5 - integral / np.pi
    return out


def kronecker_ntk_gram(data, shift, init_rank=DEFAULT_INIT_RANK, samples=1 << 14, seed=0) -> np.ndarray:
    """The infinite-width NTK of init="kronecker", H[i, j] = ρ_ij · Pr[Z_i > b, Z_j > b], estimated.

    Z_i = <w, x_i> with w the Kronecker-structured initial neuron. Off the diagonal the
    orthant probability is a Monte Carlo average over ``samples`` drawn neurons (standard
    error at most 0.5 / sqrt(samples)); the diagonal is exact for two factors
    (``kronecker_fire_fraction``). Cost samples · n · K · R · Σ d_l, nothing of size d.

    Returns
    -------
    ndarray of shape (n, n), float64, symmetric positive semi-definite
    """
    data = as_data(data).normalized()
    b = check_float(shift, "shift", low=0.0)
    K = check_int(init_rank, "init_rank", low=1)
    samples = check_int(samples, "samples", low=1)
    seed = check_seed(seed)
    both = np.zeros((data.n, data.n))  # (n, n) counts of neurons firing on both points
    for start in range(0, samples, _SAMPLE_BLOCK):
        count = min(_SAMPLE_BLOCK, samples - start)
        # each block is its own net of ``count`` neurons: a different seed per block
        fired = (project_w0(seed + start, count, data, np.float64, init="kronecker", terms=K) > b).astype(np.float64)
        both += fired.T @ fired  # (n, n)
    H = data.gram() * (both / samples)
    if len(data.dims) == 2:
        np.fill_diagonal(H, kronecker_fire_fraction(data, b, K))
    return 0.5 * (H + H.T)
