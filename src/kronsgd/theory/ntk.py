"""The infinite-width neural tangent kernel of the shifted-ReLU net and what it predicts.

For f(x) = (1/√m) Σ_r a_r σ_b(<w_r, x>) the gradient of output i with respect to w_r is
(1/√m) a_r 1[<w_r, x_i> > b] x_i, so the kernel of gradient flow on ½ ||f - y||²,
du/dt = -H(t) (u - y), is

    H(t)[i, j] = <x_i, x_j> · (1/m) Σ_r 1[<w_r, x_i> > b] 1[<w_r, x_j> > b]      (a_r² = 1)

At initialisation (w_r ~ N(0, I)) and m → ∞ this is the expectation

    H[i, j] = ρ_ij · Pr[Z1 > b, Z2 > b],   (Z1, Z2) standard normal with correlation ρ_ij,

ρ_ij = <x_i, x_j> for unit inputs. A full-batch GD step of rate η on the linearised model
maps the residual e = u - y to (I - η H) e, so ||e|| shrinks by at least
max(|1 - η λ_min|, |1 - η λ_max|) per step (1 - η λ_min when η <= 1/λ_max) and the loss by
its square.

With a shift b > 0 the eigenvalues of H scale roughly like Φ̄(b) (every entry carries that
factor): at a fixed η the predicted rate is slow, and the stable η ≈ 1/λ_max is large. The
finite-width kernel averages over the ≈ m Φ̄(b) neurons that fire, so the large-width
regime needs m Φ̄(b) large against n. Example (32 points, dims (8, 8), m = 4096): at b = 1
H(0) and H agree to 3% in λ_min and a full-batch run contracts at the predicted rate; at the
default b = sqrt(0.4 ln m) ≈ 1.82 with η = 1/λ_max ≈ 25, the weights move by up to 2.5 and
λ_min(H(t)) falls to 40% of λ_min(H) during training.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from ..base.errors import ValidationError
from ..base.validation import check_array, check_choice, check_float, check_int
from ..model.net import as_data, check_init, check_seed
from ..model.net import fire_fraction as _fire_fraction
from .kron_ntk import kronecker_ntk_gram

_NODES = 32  # Gauss–Legendre nodes per panel; 48 gains nothing measurable (see orthant_probability)
_CHUNK = 1 << 15  # correlations per block of the quadrature: bounds the (chunk, nodes) temporaries
_TINY_SHIFT = 1e-12  # below this, b is taken as 0: |dPr/db| <= 2φ(b) < 1, so the error is < 1e-12
_GL_T, _GL_W = np.polynomial.legendre.leggauss(_NODES)
_GL_T, _GL_W = (_GL_T + 1.0) / 2.0, _GL_W / 2.0  # nodes and weights on [0, 1]


def fire_fraction(shift) -> float:
    """Φ̄(b) = Pr[Z > b], Z ~ N(0, 1): the share of neurons firing on a unit input at init.

    Examples
    --------
    >>> round(fire_fraction(0.0), 3), round(fire_fraction(1.0), 4)
    (0.5, 0.1587)
    """
    return _fire_fraction(check_float(shift, "shift", low=0.0))


def orthant_probability(rho, shift) -> np.ndarray:
    """Pr[Z1 > b, Z2 > b] for a standard bivariate normal pair of correlation ρ.

    From d/dρ Pr = exp(-b²/(1 + ρ)) / (2π √(1 - ρ²)), with ρ = sin θ to remove the
    singularity at |ρ| = 1, in two forms whose terms are all positive (no cancellation):

    * ρ >= 0:  Φ̄(b)² + (1/2π) ∫_0^θ exp(-b²/(1 + sin s)) ds,  θ = arcsin ρ;
    * ρ < 0:   (1/π) ∫_0^φ exp(-b²/(2 sin² v)) dv,  φ = arccos(-ρ)/2 (integrated from
      ρ = -1, where Pr = 0; s = 2v - π/2). Near v = 0 this integrand turns on over a scale
      of about b, so [0, φ] is cut into panels at b/4, b, 4b, ...

    Each piece by 32-point Gauss–Legendre. Checked against mpmath wherever Pr > 1e-30: relative
    error below 1e-13 for b <= 2.5 and below 1e-10 up to b = 6; smaller Pr lose relative (never
    absolute) accuracy.
    b = 0 uses the closed form 1/4 + arcsin(ρ)/(2π), and so does b < 1e-12 (|dPr/db| <=
    2φ(0) < 1, so Pr moves by less than b between 0 and b).

    Parameters
    ----------
    rho : array-like of any shape
        Correlations in [-1, 1]; values within 1e-12 outside are clipped (rounding of Grams).
    shift : float >= 0
        The threshold b.

    Returns
    -------
    ndarray of rho's shape, float64

    Examples
    --------
    >>> p = orthant_probability([-1.0, 0.0, 1.0], 1.0)
    >>> bool(p[0] == 0.0), bool(np.isclose(p[1], fire_fraction(1.0) ** 2)), bool(np.isclose(p[2], fire_fraction(1.0)))
    (True, True, True)
    """
    b = check_float(shift, "shift", low=0.0)
    shape = np.shape(rho)
    rho = check_array(rho, "rho", ndim=tuple(range(33)), allow_empty=True).reshape(shape)
    if rho.size and (rho.min() < -1.0 - 1e-12 or rho.max() > 1.0 + 1e-12):
        raise ValidationError(f"rho must lie in [-1, 1]. Got values in [{rho.min()}, {rho.max()}].")
    flat = np.clip(rho, -1.0, 1.0).ravel()  # (N,)
    if b < _TINY_SHIFT:
        return (0.25 + np.arcsin(flat) / (2.0 * np.pi)).reshape(rho.shape)
    out = np.empty_like(flat)  # (N,)
    up = flat >= 0.0  # (N,)
    out[up] = _upper_half(np.arcsin(flat[up]), b)
    out[~up] = _lower_half(0.5 * np.arccos(-flat[~up]), b)
    return out.reshape(rho.shape)


def _upper_half(theta: np.ndarray, b: float) -> np.ndarray:
    """Φ̄(b)² + (1/2π) ∫_0^θ exp(-b²/(1 + sin s)) ds for θ (N,) in [0, π/2]; 1 + sin s >= 1."""
    out = np.empty_like(theta)  # (N,)
    for start in range(0, theta.size, _CHUNK):
        th = theta[start : start + _CHUNK]  # (c,)
        g = np.exp(-b * b / (1.0 + np.sin(th[:, None] * _GL_T)))  # (c, nodes)
        out[start : start + th.size] = g @ _GL_W * th / (2.0 * np.pi)
    return _fire_fraction(b) ** 2 + out


def _lower_half(phi: np.ndarray, b: float) -> np.ndarray:
    """(1/π) ∫_0^φ exp(-b²/(2 sin² v)) dv for φ (N,) in [0, π/4], on panels graded at scale b."""
    edges = [0.0]
    edge = b / 4.0
    while edge < 0.25 * np.pi:
        edges.append(edge)
        edge *= 4.0
    edges.append(0.25 * np.pi)
    edges = np.asarray(edges)  # (P+1,)
    out = np.empty_like(phi)  # (N,)
    chunk = max(1, _CHUNK // (edges.size - 1))
    for start in range(0, phi.size, chunk):
        ph = phi[start : start + chunk, None]  # (c, 1)
        lo, hi = np.minimum(edges[:-1], ph), np.minimum(edges[1:], ph)  # (c, P) panels clipped to [0, φ]
        s = np.sin(lo[..., None] + (hi - lo)[..., None] * _GL_T)  # (c, P, nodes)
        with np.errstate(divide="ignore"):  # sin v = 0 exactly: the integrand is exp(-inf) = 0
            g = np.exp(-b * b / (2.0 * s * s))  # (c, P, nodes)
        out[start : start + ph.shape[0]] = np.sum(g @ _GL_W * (hi - lo), axis=1) / np.pi
    return out


def ntk_gram(data, shift, *, init="gaussian", init_rank=None, samples=1 << 14, seed=0) -> np.ndarray:
    """The infinite-width NTK H[i, j] = ρ_ij · Pr[Z1 > b, Z2 > b], ρ = Gram of the unit points.

    The points are scaled to unit norm first (as the net does by default); ρ comes from the
    factors only, never from dense x. With init="gaussian" (Z Gaussian) H is exact; with
    init="kronecker" (``init_rank`` K terms, default 16) the orthant probabilities are a
    Monte Carlo estimate over ``samples`` neurons drawn from ``seed`` and the diagonal is exact
    for two factors (``kronsgd.theory.kron_ntk``).

    Parameters
    ----------
    data : KroneckerData or list of factor arrays
        n points.
    shift : float >= 0
        The net's threshold b (``net.shift``).

    Returns
    -------
    ndarray of shape (n, n), float64, symmetric positive semi-definite

    Examples
    --------
    >>> from kronsgd import KroneckerData
    >>> rng = np.random.default_rng(0)
    >>> data = KroneckerData([rng.normal(size=(5, 3)), rng.normal(size=(5, 4))])
    >>> H = ntk_gram(data, 0.0)
    >>> H.shape, bool(np.allclose(np.diag(H), 0.5))
    ((5, 5), True)
    """
    data = as_data(data)
    b = check_float(shift, "shift", low=0.0)
    init, init_rank = check_init(init, init_rank)
    if init == "kronecker":
        return kronecker_ntk_gram(data, b, init_rank, samples, seed)
    rho = data.normalized().gram()  # (n, n)
    rho = np.clip(0.5 * (rho + rho.T), -1.0, 1.0)  # exactly symmetric, rounding clipped
    np.fill_diagonal(rho, 1.0)
    H = np.empty_like(rho)  # (n, n)
    rows = max(1, _CHUNK // max(rho.shape[0], 1))
    for i0 in range(0, data.n, rows):  # the upper triangle by row blocks, then mirrored
        i1 = min(i0 + rows, data.n)
        block = rho[i0:i1, i0:]  # (rows, n - i0)
        H[i0:i1, i0:] = block * orthant_probability(block, b)
    upper = np.triu_indices(data.n, 1)
    H[upper[1], upper[0]] = H[upper]  # mirror: vectorised exp/arcsin may round the same ρ differently by position
    return H


@dataclass(frozen=True)
class EigenvalueEstimate:
    """λ_min of a kernel matrix with a certified interval: lower <= λ_min <= upper.

    Attributes
    ----------
    value : float
        The estimate: exact λ_min, or the smallest λ_min over the random principal submatrices.
    lower, upper : float
        Bounds that hold up to floating-point rounding. "exact": both equal ``value``.
        "subsample": lower = 0 (an NTK is positive semi-definite) and upper = value (Cauchy
        interlacing: a principal submatrix's λ_min is >= the whole matrix's). The estimate is
        thus optimistic; it tends to λ_min as ``size`` grows to n.
    method : str
        "exact" or "subsample".
    size : int
        Points per submatrix (n for "exact").
    trials : int
        Submatrices examined (1 for "exact").
    """

    value: float
    lower: float
    upper: float
    method: str
    size: int
    trials: int

    def __float__(self) -> float:
        return self.value


def min_eigenvalue(
    source, shift=None, method="exact", size=512, trials=8, seed=0, *, init="gaussian", init_rank=None
) -> EigenvalueEstimate:
    """The smallest eigenvalue λ_min of an NTK, exactly or bounded from random subsets.

    A Nyström (low-rank) approximation cannot estimate λ_min (it is rank-deficient), so
    "subsample" takes principal submatrices on random subsets of ``size`` points instead:
    each λ_min is an upper bound of the full λ_min, and the smallest of ``trials`` is reported.
    With data, only those (size, size) blocks are ever formed.

    Parameters
    ----------
    source : (n, n) array or KroneckerData or list of factor arrays
        A kernel matrix (then ``shift`` must be None), or points whose ``ntk_gram`` is meant.
    shift : float >= 0, optional
        The threshold b; required with points.
    method : {"exact", "subsample"}, default "exact"
        "subsample" with size >= n is exact.
    size, trials : int, default 512, 8
        Subset size and number of subsets for "subsample".
    seed : int, default 0
        Seeds the subsets (and the neurons of init="kronecker").
    init, init_rank : optional
        The initial layer whose NTK is meant when source is points (see ``ntk_gram``).

    Returns
    -------
    EigenvalueEstimate
        ``float(result)`` is the estimate; ``result.lower``/``result.upper`` bound λ_min.
    """
    method = check_choice(method, "method", ("exact", "subsample"))
    size = check_int(size, "size", low=1)
    trials = check_int(trials, "trials", low=1)
    rng = np.random.default_rng(check_seed(seed))
    if isinstance(source, np.ndarray) or (isinstance(source, list) and source and np.ndim(source[0]) == 1):
        if shift is not None:
            raise ValidationError("shift must be None when source is a kernel matrix (it is already built).")
        H = check_array(source, "source", ndim=2)
        if H.shape[0] != H.shape[1] or not np.allclose(H, H.T, rtol=1e-10, atol=1e-12):
            raise ValidationError(f"source as a matrix must be square and symmetric. Got shape {H.shape}.")
        n, block = H.shape[0], lambda idx: H[np.ix_(idx, idx)]
    else:
        if shift is None:
            raise ValidationError("shift is required with points as source: pass shift=net.shift.")
        data = as_data(source, "source")
        b = check_float(shift, "shift", low=0.0)
        n, block = data.n, lambda idx: ntk_gram(data[idx], b, init=init, init_rank=init_rank, seed=seed)
    if method == "exact" or size >= n:
        value = float(np.linalg.eigvalsh(block(np.arange(n)))[0])
        return EigenvalueEstimate(value, value, value, "exact", n, 1)
    value = min(float(np.linalg.eigvalsh(block(np.sort(rng.choice(n, size, replace=False))))[0]) for _ in range(trials))
    return EigenvalueEstimate(value, 0.0, value, "subsample", size, trials)


def contraction_factor(ntk, lr) -> float:
    """Per-step factor by which full-batch GD shrinks ||f - y|| in the linearised (NTK) regime.

    The linearised step is e ← (I - η H) e, so ||e(t+1)|| <= q ||e(t)|| with

    * H given as an (n, n) matrix: q = ||I - η H||₂ = max(|1 - η λ_min|, |1 - η λ_max|),
      which equals 1 - η λ_min when η <= 2/(λ_min + λ_max) (in particular η <= 1/λ_max);
    * λ_min given as a number (or EigenvalueEstimate): q = |1 - η λ_min|, the rate of the
      slowest mode, a valid bound only when the caller keeps η <= 1/λ_max.

    The training loss ½||e||² then shrinks by at least q² per step: L(t) <= q^{2t} L(0).

    Parameters
    ----------
    ntk : (n, n) array, float or EigenvalueEstimate
    lr : float > 0
        The learning rate η of the full-batch step.

    Returns
    -------
    float

    Examples
    --------
    >>> contraction_factor(0.2, 0.5)
    0.9
    >>> contraction_factor(np.diag([0.2, 1.0]), 0.5)
    0.9
    """
    lr = check_float(lr, "lr", low=0.0, low_inclusive=False)
    if isinstance(ntk, EigenvalueEstimate) or isinstance(ntk, numbers.Real):
        lam = check_float(float(ntk), "ntk", low=0.0)
        return abs(1.0 - lr * lam)
    H = check_array(ntk, "ntk", ndim=2)
    if H.shape[0] != H.shape[1]:
        raise ValidationError(f"ntk as a matrix must be square. Got shape {H.shape}.")
    eig = np.linalg.eigvalsh(0.5 * (H + H.T))  # (n,)
    return float(max(abs(1.0 - lr * eig[0]), abs(1.0 - lr * eig[-1])))


def lr_limit(ntk) -> float:
    """1/λ_max(H): the largest rate for which the linearised factor is 1 - η λ_min.

    Parameters
    ----------
    ntk : (n, n) array

    Returns
    -------
    float
    """
    H = check_array(ntk, "ntk", ndim=2)
    if H.shape[0] != H.shape[1]:
        raise ValidationError(f"ntk must be square. Got shape {H.shape}.")
    top = float(np.linalg.eigvalsh(0.5 * (H + H.T))[-1])
    return math.inf if top <= 0.0 else 1.0 / top
