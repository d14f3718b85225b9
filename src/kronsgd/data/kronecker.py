"""KroneckerData: n points, each a rank-R sum of k-fold Kronecker products, kept as factors.

Point i is  x_i = sum_q  u_i^(q,1) ⊗ u_i^(q,2) ⊗ ... ⊗ u_i^(q,k),  and the dense vector
follows numpy.kron's row-major convention: kron(u, v) == (u[:, None] * v[None, :]).ravel().
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..base.errors import ValidationError
from ..base.memory import require, resolve_budget
from ..base.validation import check_array, check_choice, check_dtype, check_indices
from . import products as P
from .structure import resolve, split

# Gram blocks are built in row chunks so that one (rows·R, cols·R) temporary stays this small.
_GRAM_CHUNK_BYTES = 64 * 2**20


class KroneckerData:
    """Points given by Kronecker factors, never materialised unless asked.

    Parameters
    ----------
    factors : sequence of k >= 2 array-likes
        Each ``(n, d_l)`` for rank-1 points or ``(n, R, d_l)`` for rank-R sums; all share n
        and R. Converted to float64.

    Examples
    --------
    >>> import numpy as np
    >>> u, v = np.ones((3, 2)), np.arange(12.0).reshape(3, 4)
    >>> data = KroneckerData([u, v])
    >>> data.n, data.dims, data.rank, data.d
    (3, (2, 4), 1, 8)
    >>> bool(np.allclose(data.to_dense()[1], np.kron(u[1], v[1])))
    True
    """

    def __init__(self, factors):
        if isinstance(factors, KroneckerData):
            factors = factors.factors
        if not isinstance(factors, Sequence) or isinstance(factors, (str, bytes)):  # not ndarray, dict, set
            raise ValidationError(
                f"factors must be a list of k >= 2 arrays, each (n, d_l) or (n, R, d_l). Got {type(factors).__name__}."
            )
        if len(factors) < 2:
            raise ValidationError(f"factors must hold at least 2 arrays (k >= 2). Got {len(factors)}.")
        arrays = [check_array(f, f"factors[{l}]", ndim=(2, 3)) for l, f in enumerate(factors)]
        arrays = [a[:, None, :] if a.ndim == 2 else a for a in arrays]
        n, rank = arrays[0].shape[:2]
        for l, a in enumerate(arrays):
            if a.shape[0] != n:
                raise ValidationError(
                    f"factors must all have the same number of points n; factors[0] has {n}, "
                    f"factors[{l}] has {a.shape[0]}."
                )
            if a.shape[1] != rank:
                raise ValidationError(
                    f"factors must all have the same rank R; factors[0] has {rank}, factors[{l}] has {a.shape[1]}."
                )
        self._factors = tuple(arrays)  # each (n, R, d_l), float64, C-contiguous
        self._cast: dict[str, list[np.ndarray]] = {}  # factors_in(dtype) for narrower types, made on first use
        self.scale = None  # (n,) original norms once normalized(), else None

    # ---- shape -------------------------------------------------------------------------
    @property
    def factors(self) -> tuple[np.ndarray, ...]:
        """The k factor arrays, each of shape (n, R, d_l)."""
        return self._factors

    def factors_in(self, dtype) -> list[np.ndarray]:
        """The factors in ``dtype``, each (n, R, d_l): as stored for float64; for a narrower type each
        term of each point is first rebalanced across its factors by exact powers of two.

        u ⊗ v = (2^s u) ⊗ (2^-s v) exactly, and so are every product and sum computed from
        them (a power of two only moves the exponent), so the results keep their bits; but
        factors such as 6.9e80 and 1.4e-81 (x = 1), which would overflow float32 one by one,
        now fit.
        """
        dtype = np.dtype(dtype)
        if dtype.itemsize >= 8:
            return [f.astype(dtype, copy=False) for f in self._factors]
        cached = self._cast.get(dtype.str)
        if cached is None:  # made once per dtype: on-the-fly Gram rows ask for them every step
            cached = self._cast[dtype.str] = self._balanced_cast(dtype)
        return list(cached)

    def _balanced_cast(self, dtype) -> list[np.ndarray]:
        with np.errstate(divide="ignore"):
            exps = [np.frexp(np.abs(f).max(axis=2))[1] for f in self._factors]  # k x (n, R) binary exponents
        live = np.all([np.abs(f).max(axis=2) > 0 for f in self._factors], axis=0)  # (n, R) nonzero terms
        target = np.round(np.mean(exps, axis=0)).astype(np.int64)  # (n, R) the exponent every factor moves to
        shifts = [np.where(live, target - e, 0) for e in exps]
        shifts[0] = -np.sum(shifts[1:], axis=0)  # the shifts of a term add up to 0: the term is unchanged
        return [np.ldexp(f, s[:, :, None]).astype(dtype) for f, s in zip(self._factors, shifts, strict=True)]

    @property
    def n(self) -> int:
        return self._factors[0].shape[0]

    @property
    def rank(self) -> int:
        return self._factors[0].shape[1]

    @property
    def dims(self) -> tuple[int, ...]:
        return tuple(f.shape[2] for f in self._factors)

    @property
    def d(self) -> int:
        return math.prod(self.dims)

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"KroneckerData(n={self.n}, dims={self.dims}, rank={self.rank})"

    def __getitem__(self, index) -> KroneckerData:
        idx = check_indices(index, "index", self.n)
        if idx.size == 0:
            raise ValidationError("index selects no points; a KroneckerData holds at least one.")
        return KroneckerData([f[idx] for f in self._factors])

    # ---- inner products ----------------------------------------------------------------
    def gram(self, rows=None, other: KroneckerData | None = None, dtype=np.float64, route="auto", max_bytes=None):
        """Exact inner products G[i, j] = <x_rows[i], other_j>, computed in ``dtype``.

        Two routes (see ``kronsgd.data.products``): from the factors, R1 · R2 · Σ d_l
        multiply-adds per entry and no d-dimensional vector; or on blocks of materialised
        points, d per entry plus building them. "auto" takes the one predicted cheaper;
        the dense blocks stay inside a working-memory share of ``max_bytes`` (default: half
        the free memory). Either way the values are exact up to rounding in ``dtype``.

        Returns
        -------
        ndarray of shape (len(rows), other.n), ``dtype``
        """
        other = self if other is None else other
        if not isinstance(other, KroneckerData):
            raise ValidationError(f"other must be a KroneckerData. Got {type(other).__name__}.")
        if other.dims != self.dims:
            raise ValidationError(f"other must have dims {self.dims} to pair with these points. Got {other.dims}.")
        route = check_choice(route, "route", ("auto", "factors", "dense"))
        dtype = check_dtype(dtype)
        idx = np.arange(self.n) if rows is None else check_indices(rows, "rows", self.n)
        if route == "auto":
            dense = P.dense_cost(idx.size, other.n, self.rank, other.rank, self.d)
            route = "dense" if dense < P.factor_cost(idx.size, other.n, self.rank, other.rank, self.dims) else "factors"
        with np.errstate(over="ignore", invalid="ignore"):  # checked below
            if route == "dense":
                out = self._dense_gram(idx, other, dtype, resolve_budget(max_bytes, "max_bytes"))
            else:
                out = self._factor_gram(idx, other, dtype)
        return _finite(out, "gram()")

    def _factor_gram(self, idx: np.ndarray, other: KroneckerData, dtype) -> np.ndarray:
        out = np.empty((idx.size, other.n), dtype=dtype)  # (rows, other.n)
        r1, r2 = self.rank, other.rank
        chunk = max(1, _GRAM_CHUNK_BYTES // (8 * r1 * r2 * max(other.n, 1)))
        left, right = self.factors_in(dtype), other.factors_in(dtype)
        if other is self and chunk >= self.n and idx.size == self.n and bool(np.all(idx == np.arange(self.n))):
            # the whole set against itself: A Aᵀ on one buffer, which BLAS does as a symmetric rank-k update
            out[...] = P.factor_products(right, right, dtype)
            return out
        for start in range(0, idx.size, chunk):
            sel = idx[start : start + chunk]
            out[start : start + sel.size] = P.factor_products([f[sel] for f in left], right, dtype)
        return out

    def _dense_gram(self, idx: np.ndarray, other: KroneckerData, dtype, budget: int) -> np.ndarray:
        """Blocks of materialised points and one GEMM per pair of blocks, inside the working cap."""
        item = np.dtype(dtype).itemsize
        same = other is self and idx.size == self.n and bool(np.all(idx == np.arange(self.n)))
        rows, cols = P.plan_rows(idx.size, other.n, self.d * item, self.d * item, P.work_bytes(budget), "gram()")
        out = np.empty((idx.size, other.n), dtype=dtype)  # (rows, other.n)
        if same and rows >= idx.size:  # the whole set at once: X Xᵀ, which BLAS does as a symmetric rank-k update
            X = P.materialise(self.factors_in(dtype), dtype)  # (n, d)
            np.matmul(X, X.T, out=out)
            return out
        left, right = self.factors_in(dtype), other.factors_in(dtype)
        whole = P.materialise(right, dtype) if cols >= other.n else None  # (other.n, d), built once
        for r in range(0, idx.size, rows):
            A = P.materialise([f[idx[r : r + rows]] for f in left], dtype)  # (rows, d)
            for c in range(0, other.n, cols):
                # when the columns do not fit at once, each block is built again for every row block
                B = whole if whole is not None else P.materialise([g[c : c + cols] for g in right], dtype)
                np.matmul(A, B.T, out=out[r : r + A.shape[0], c : c + B.shape[0]])
        return out

    def _balanced(self) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """Factors rescaled per point so each has largest entry 1, with sqrt of the core norm².

        Returns (factors, log of the scale taken out (n,), core (n,)) with ||x_i|| =
        exp(log_scale[i]) · core[i]: no product of large or tiny factors ever overflows.
        """
        log_scale = np.zeros(self.n)
        balanced = []
        for f in self._factors:
            peak = np.abs(f).max(axis=(1, 2))  # (n,)
            peak = np.where(peak > 0, peak, 1.0)
            balanced.append(f / peak[:, None, None])
            log_scale += np.log(peak)
        sq = np.ones((self.n, self.rank, self.rank))  # (n, R, R)
        for f in balanced:
            sq *= np.einsum("iqa,ipa->iqp", f, f)
        return balanced, log_scale, np.sqrt(np.maximum(sq.sum(axis=(1, 2)), 0.0))

    def norms(self) -> np.ndarray:
        """Euclidean norms of the points, shape (n,), from the factors (inf beyond float64's range)."""
        _, log_scale, core = self._balanced()
        with np.errstate(over="ignore"):
            return np.where(core > 0, core * np.exp(log_scale), 0.0)

    def normalized(self) -> KroneckerData:
        """The same points scaled to unit norm; the original norms are kept in ``.scale``.

        Every factor is rescaled per point (largest entry 1 before the final division), so
        points of any magnitude normalise without overflow. Raises ValidationError naming
        the first zero-norm point (it has no direction).
        """
        factors, log_scale, core = self._balanced()
        zero = np.flatnonzero(~(core > 0))
        if zero.size:
            raise ValidationError(
                f"data has {zero.size} point(s) of zero norm (the first is index {zero[0]}); "
                "a zero vector cannot be scaled to unit norm. Remove them or pass normalize=False."
            )
        factors[0] = factors[0] / core[:, None, None]
        unit = KroneckerData(factors)
        with np.errstate(over="ignore"):
            unit.scale = core * np.exp(log_scale)  # (n,) original norms: x_original = scale[i] * x_unit[i]
        return unit

    # ---- dense -------------------------------------------------------------------------
    def to_dense(self, max_bytes: int | None = None) -> np.ndarray:
        """Materialise the points as an (n, d) float64 array, row i = x_i.

        Refuses with MemoryBudgetError above ``max_bytes`` (default: half the free memory).
        """
        budget = resolve_budget(max_bytes, "max_bytes")
        require(
            8 * self.n * self.d,
            budget,
            f"to_dense() of {self.n} points of dimension d = {self.d}",
            "The structured API never needs it: use gram(), or subset the points first (data[:k]).",
        )
        out = np.zeros((self.n, self.d))  # (n, d)
        with np.errstate(over="ignore", invalid="ignore"):  # checked below
            for q in range(self.rank):
                term = self._factors[0][:, q, :]  # (n, d_1)
                for f in self._factors[1:]:
                    term = (term[:, :, None] * f[:, q, None, :]).reshape(self.n, -1)  # (n, d_1···d_l)
                out += term
        return _finite(out, "to_dense()")

    @classmethod
    def from_dense(cls, X, shape="auto", rank="auto", energy=0.99) -> KroneckerData:
        """Nearest Kronecker factors of dense samples, as a KroneckerData.

        Parameters
        ----------
        X : array-like, (n, d) or (n, d1, d2)
            Dense samples; sample i is read as the row-major matrix X[i].reshape(shape).
        shape : "auto", tuple of k >= 2 ints or str such as "8x8" or "8x8x16"
            Factor dimensions, product d. "auto" keeps (d1, d2) of a 3-d X, else picks the factor
            pair of d that stores the data in the fewest numbers (see ``choose_shape``).
        rank : "auto" or int
            Terms kept at every split; k factors then have rank R^(k - 1). "auto": for two factors
            the smallest R whose kept energy Σ_i Σ_{q<=R} s_iq² reaches ``energy`` · Σ_i ||x_i||²
            over the whole data set; for k factors each split may discard (1 - energy) / (k - 1).
        energy : float in (0, 1], default 0.99
            Share of the data set's squared norm to keep when rank="auto".

        Returns
        -------
        KroneckerData
            Factors (n, R, d_l), term q of sample i scaled so its factors have equal norms, with
            ``residual`` (n,) ||x_i - x̂_i|| / ||x_i||, ``energy`` (share kept over the data set),
            ``energy_target`` and ``level_ranks`` (terms kept at each split) attached.

        Examples
        --------
        >>> rng = np.random.default_rng(0)
        >>> u, v = rng.normal(size=(5, 2, 4)), rng.normal(size=(5, 2, 6))
        >>> X = np.einsum("iqa,iqb->iab", u, v).reshape(5, 24)  # rank-2 sums of kron(u, v)
        >>> data = KroneckerData.from_dense(X, shape=(4, 6))
        >>> data.dims, data.rank, bool(data.residual.max() < 1e-12)
        ((4, 6), 2, True)
        """
        X, dims, rank, energy, _ = resolve(X, shape, rank, energy)
        result = split(X, dims, rank, energy, factors=True)
        data = cls(result.factors)
        data.residual = result.residual  # (n,) relative residual per sample
        data.energy = result.energy
        data.energy_target = energy
        data.level_ranks = result.level_ranks
        return data


def _finite(values: np.ndarray, what: str) -> np.ndarray:
    if not np.isfinite(values).all():
        raise ValidationError(
            f"{what} overflows float64: the points are too large. Use data.normalized() (or a net with "
            "normalize=True), or rescale the factors."
        )
    return values
