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
from ..kernels.bivariate import ntk_from_inner_products
from ..model.net import as_data, check_init, check_seed
from .gram import BLOCK_BYTES, kernel_matrix
from .kron_ntk import kronecker_ntk_gram
from .orthant import fire_fraction, orthant_probability
from .orthant_table import orthant_table

__all__ = [
    "EigenvalueEstimate",
    "contraction_factor",
    "fire_fraction",
    "lr_limit",
    "min_eigenvalue",
    "ntk_cross",
    "ntk_gram",
    "orthant_probability",
]


def ntk_gram(
    data, shift, *, normalize: bool = True, block_bytes: int = BLOCK_BYTES, init="gaussian", init_rank=None,
    samples=1 << 14, seed=0,
) -> np.ndarray:
    """The infinite-width NTK H[i, j] = <x_i, x_j> · Pr[Z_i > b, Z_j > b], w·x ~ N(0, |x|²).

    With ``normalize`` (the net's default) the points are scaled to unit norm first, and
    H[i, j] = ρ_ij · Pr[Z1 > b, Z2 > b] with ρ the Gram of the unit points, by a tabulated
    orthant probability (``orthant_table``, within 1e-12 · Φ̄(b) of ``orthant_probability``).
    Without, a point of norm s fires when a standard normal exceeds b / s: H[i, j] =
    <x_i, x_j> · Pr[Z1 > b / s_i, Z2 > b / s_j] (Genz's bivariate normal, about 1e-15), and a
    zero point's row is 0. The inner products come from the factors (or from blocks of
    dense rows where that is cheaper, see ``kernel_matrix``), never from a whole dense X;
    blocks of the upper triangle are turned into NTK entries in place and mirrored: the
    only (n, n) array is the result.

    Parameters
    ----------
    data : KroneckerData or list of factor arrays
        n points.
    shift : float >= 0
        The net's threshold b (``net.shift``).
    normalize : bool, default True
        Scale the points to unit norm first, as a net with normalize=True does.
    block_bytes : int, optional
        Bytes of one block temporary.
    init : {"gaussian", "kronecker"}, default "gaussian"
        The initial layer whose NTK is meant. "gaussian" (the paper's) is exact; with
        "kronecker" (``init_rank`` K terms, default 16) the orthant probabilities are a Monte
        Carlo estimate over ``samples`` neurons drawn from ``seed``, and the diagonal is exact
        for two factors (``kronsgd.theory.kron_ntk``).
    init_rank, samples, seed : optional
        For init="kronecker".

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
    >>> bool(np.allclose(np.diag(ntk_gram(data, 0.0, normalize=False)), data.norms() ** 2 / 2))
    True
    """
    data = as_data(data)
    b = check_float(shift, "shift", low=0.0)
    init, init_rank = check_init(init, init_rank)
    if init == "kronecker":  # w(0) a sum of K Kronecker products: a Monte Carlo estimate (kron_ntk.py)
        if not normalize:
            raise ValidationError('ntk_gram with init="kronecker" is for unit points: pass normalize=True.')
        return kronecker_ntk_gram(data, b, init_rank, samples, seed)
    if normalize:
        table = orthant_table(b)

        def to_ntk(block: np.ndarray, i0: int, j0: int) -> None:
            if i0 == j0:
                np.fill_diagonal(block, 1.0)  # unit points: ρ_ii = 1 exactly (arcsin amplifies 1 - 1e-16)
            table.ntk_inplace(block)

        return kernel_matrix(data.normalized(), transform=to_ntk, block_bytes=block_bytes)
    norms = data.norms()  # (n,)

    def to_ntk_scaled(block: np.ndarray, i0: int, j0: int) -> None:
        rows, cols = slice(i0, i0 + block.shape[0]), slice(j0, j0 + block.shape[1])
        ntk_from_inner_products(block, norms[rows], norms[cols], b)
        if i0 == j0:  # ρ_ii = 1 exactly: H_ii = s² Φ̄(b / s)
            s = norms[rows]
            with np.errstate(divide="ignore", invalid="ignore"):  # a zero point: b / 0, its entry is 0
                np.fill_diagonal(block, np.where(s > 0, s * s * _upper_tail(b / s), 0.0))

    return kernel_matrix(data, transform=to_ntk_scaled, block_bytes=block_bytes)


def ntk_cross(data, other, shift, *, normalize: bool = True, block_bytes: int = BLOCK_BYTES) -> np.ndarray:
    """The NTK between two sets of points, H[i, j] = <x_i, y_j> · Pr[Z_i > b, Z_j > b].

    What prediction needs: the rows of new points against the training points. The same
    kernel as ``ntk_gram``, with or without scaling the points to unit norm.

    Parameters
    ----------
    data : KroneckerData or list of factor arrays
        n points x_i.
    other : KroneckerData or list of factor arrays
        n2 points y_j of the same factor dims.
    shift : float >= 0
    normalize : bool, default True
    block_bytes : int, optional

    Returns
    -------
    ndarray of shape (n, n2), float64

    Examples
    --------
    >>> from kronsgd import KroneckerData
    >>> rng = np.random.default_rng(0)
    >>> data = KroneckerData([rng.normal(size=(5, 3)), rng.normal(size=(5, 4))])
    >>> bool(np.allclose(ntk_cross(data[:2], data, 0.7), ntk_gram(data, 0.7)[:2]))
    True
    """
    data, other = as_data(data), as_data(other, "other")
    if other.dims != data.dims:
        raise ValidationError(f"other must have the factor dims {data.dims} of data. Got {other.dims}.")
    b = check_float(shift, "shift", low=0.0)
    if normalize:
        table = orthant_table(b)
        unit, other_unit = data.normalized(), other.normalized()
        to_ntk = lambda block, *_: table.ntk_inplace(block)  # noqa: E731 - ρ ↦ ρ · Pr, in place
        return kernel_matrix(unit, other_unit, transform=to_ntk, block_bytes=block_bytes)
    norms, other_norms = data.norms(), other.norms()  # (n,), (n2,)

    def to_ntk_scaled(block: np.ndarray, i0: int, j0: int) -> None:
        ntk_from_inner_products(block, norms[i0 : i0 + block.shape[0]], other_norms[j0 : j0 + block.shape[1]], b)

    return kernel_matrix(data, other, transform=to_ntk_scaled, block_bytes=block_bytes)


def _upper_tail(z: np.ndarray) -> np.ndarray:
    """Φ̄(z) elementwise (z may be inf: 0)."""
    return 0.5 * np.vectorize(math.erfc)(z / math.sqrt(2.0))


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
