"""Structure detection: the nearest Kronecker factors of dense samples (DESIGN.md §7).

Van Loan–Pitsianis: for x = M.reshape(-1) with M a d1 × d2 matrix (row-major, numpy.kron's
convention), <x, u ⊗ v> = uᵀ M v, so the best sum of R Kronecker products Σ_q u_q ⊗ v_q is
the rank-R truncated SVD M ≈ Σ_q s_q a_q b_qᵀ, with u_q = sqrt(s_q) a_q, v_q = sqrt(s_q) b_q,
and the discarded singular values give the exact residual ||x - x̂||² = Σ_{q>R} s_q².

More than two factors, e.g. shape (8, 8, 16): split x as (8, 128), then split every kept
right vector (length 128) again as (8, 16). The left vectors of one split are orthonormal,
so the errors of all splits are orthogonal and the squared residual is the sum of every
discarded s². Ranks multiply: R_1 terms at the first split, each split into R_2, gives
R_1 · R_2 terms, and data that is exactly rank R in that shape is recovered exactly with
ranks (R, R) (its right vectors lie in span{b_q ⊗ c_q}, which has rank <= R as 8 × 16).
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np

from ..base.errors import ValidationError
from ..base.validation import check_array, check_float, check_int

_CHUNK_BYTES = 8 * 2**20  # input bytes of one batched SVD call; its outputs take about twice this
_EXACT_TAIL = 1e-20  # discarded share of the energy counted as rounding: a relative residual of 1e-10
_SCORE_SAMPLES = 256  # shape="auto" scores candidate shapes on at most this many samples


class Candidate(NamedTuple):
    """One factor pair scored by shape="auto": its rank, stored numbers per sample, energy."""

    shape: tuple[int, ...]
    rank: int
    stored: int
    energy: float


class Split(NamedTuple):
    """The outcome of the recursive split of n samples into a given shape."""

    shape: tuple[int, ...]
    level_ranks: tuple[int, ...]  # terms kept at each of the k - 1 splits
    factors: list | None  # k arrays (n, R, d_l) with R = prod(level_ranks), when asked for
    residual: np.ndarray  # (n,) ||x - x̂|| / ||x|| per sample (0 for a zero sample)
    energy: float  # share of Σ ||x_i||² kept over the whole data set
    first_power: np.ndarray  # (min(d_1, d / d_1),) Σ_i s_iq² of the first split, descending


# ---- validation ------------------------------------------------------------------------
def check_samples(X) -> tuple[np.ndarray, tuple[int, int] | None]:
    """X as an (n, d) float64 array, plus (d1, d2) when X came as an (n, d1, d2) stack."""
    try:
        ndim = None if isinstance(X, (str, bytes)) else np.ndim(X)
    except ValueError:  # ragged nested lists: check_array says why
        ndim = None
    if ndim is not None and ndim not in (2, 3):
        raise ValidationError(
            f"X must be an (n, d) array of samples or an (n, d1, d2) stack of matrices. Got shape {np.shape(X)}."
        )
    array = check_array(X, "X", ndim=(2, 3))
    natural = tuple(array.shape[1:]) if array.ndim == 3 else None
    return array.reshape(array.shape[0], -1), natural


def check_energy(energy) -> float:
    if isinstance(energy, bool) or not isinstance(energy, numbers.Real) or not 0.0 < float(energy) <= 1.0:
        raise ValidationError(
            f"energy must be a number in (0, 1]: the share of the data set's squared norm to keep "
            f"(0.99 keeps 99%). Got {energy!r}."
        )
    return check_float(energy, "energy")


def check_rank(rank) -> int | None:
    """'auto' becomes None; otherwise an int >= 1 (its upper bound depends on the shape)."""
    if isinstance(rank, str) and rank == "auto":
        return None
    if isinstance(rank, bool) or not isinstance(rank, numbers.Integral):
        raise ValidationError(f"rank must be 'auto' or an int >= 1. Got {rank!r}.")
    return check_int(rank, "rank", low=1)


def parse_shape(shape, d: int) -> tuple[int, ...] | None:
    """'auto' becomes None; '8x8', (8, 8) or [8, 8, 16] become a tuple of k >= 2 ints with product d."""
    dims = None
    if isinstance(shape, str):
        text = shape.strip().lower()
        if text == "auto":
            return None
        parts = text.split("x")
        if all(p.strip().isdigit() for p in parts):
            dims = tuple(int(p) for p in parts)
    elif isinstance(shape, (tuple, list)) and all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in shape
    ):
        dims = tuple(int(v) for v in shape)
    if dims is None or len(dims) < 2 or min(dims) < 1:
        raise ValidationError(
            "shape must be 'auto', a tuple of k >= 2 positive ints such as (8, 8) or (8, 8, 16), "
            f"or a string such as '8x8'. Got {shape!r}."
        )
    if math.prod(dims) != d:
        example = "x".join(str(v) for v in factor_pairs(d)[-1])
        raise ValidationError(
            f"shape {dims} multiplies to {math.prod(dims)}, but X has d = {d} features per sample; "
            f"the factor dimensions must multiply to d (e.g. '{example}'), or pass shape='auto'."
        )
    return dims


def check_rank_fits(rank: int | None, dims: tuple[int, ...]) -> None:
    """An int rank is kept at every split (d_l, d_{l+1}···d_k): it must not exceed that matrix's rank."""
    if rank is None:
        return
    for level, dl in enumerate(dims[:-1]):
        rest = math.prod(dims[level + 1 :])
        if rank > min(dl, rest):
            raise ValidationError(
                f"rank must be 'auto' or an int in [1, {min(dl, rest)}] for shape {dims}: the split "
                f"{dl} x {rest} has rank at most min(d1, d2) = {min(dl, rest)}. Got {rank}."
            )


def factor_pairs(d: int) -> list[tuple[int, int]]:
    """Factor pairs (d1, d2) of d with 1 < d1 <= d2, most unequal first; [(1, d)] when there is none."""
    pairs = [(d1, d // d1) for d1 in range(2, math.isqrt(d) + 1) if d % d1 == 0]
    return pairs or [(1, d)]


# ---- batched SVD -----------------------------------------------------------------------
def _blas_one_thread():
    """Limit BLAS to one thread while the chunks run one LAPACK call per thread of ours.

    OpenBLAS's own threads made batched SVDs of small matrices 2-30x slower (measured on a
    2-core machine, worst under load). The limit needs threadpoolctl (it comes with
    scikit-learn); without it BLAS keeps its threads and the chunks run one at a time.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - depends on the environment
        return contextlib.nullcontext(False)
    return threadpool_limits(1, user_api="blas")


def _map_chunks(fn, stack: np.ndarray) -> None:
    """Call fn(start, block) on consecutive blocks of an (N, a, b) stack, in parallel threads."""
    step = max(1, _CHUNK_BYTES // (8 * stack.shape[1] * stack.shape[2]))
    starts = range(0, stack.shape[0], step)
    with _blas_one_thread() as limited:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        workers = min(len(starts), cpus) if limited is not False else 1
        if workers <= 1:
            for start in starts:
                fn(start, stack[start : start + step])
            return
        with ThreadPoolExecutor(workers) as pool:  # numpy.linalg releases the GIL
            list(pool.map(lambda start: fn(start, stack[start : start + step]), starts))


def singular_values(stack: np.ndarray) -> np.ndarray:
    """Singular values of every matrix of an (N, a, b) stack, shape (N, min(a, b)), descending."""
    N, a, b = stack.shape
    out = np.empty((N, min(a, b)))  # (N, min(a, b))

    def chunk(start, block):  # LAPACK is faster on tall matrices: transpose the wide ones
        tall = block.transpose(0, 2, 1) if a < b else block  # (N', max, min)
        out[start : start + block.shape[0]] = np.linalg.svd(tall, compute_uv=False)

    _map_chunks(chunk, stack)
    return out


def truncated_svd(stack: np.ndarray, r: int):
    """Top-r singular vectors of every matrix of an (N, a, b) stack, and all its singular values.

    Returns
    -------
    U : (N, a, r)   s : (N, min(a, b))   Vt : (N, r, b)
    """
    N, a, b = stack.shape
    U, s, Vt = np.empty((N, a, r)), np.empty((N, min(a, b))), np.empty((N, r, b))

    def chunk(start, block):
        u, sv, vt = np.linalg.svd(block, full_matrices=False)  # (N', a, p), (N', p), (N', p, b)
        stop = start + block.shape[0]
        U[start:stop], s[start:stop], Vt[start:stop] = u[:, :, :r], sv, vt[:, :r, :]

    _map_chunks(chunk, stack)
    return U, s, Vt


def rank_for_energy(power: np.ndarray, total: float, share: float) -> int:
    """Smallest r >= 1 whose discarded energy Σ_{q>=r} power[q] is at most share · total.

    ``power`` (r_max,) holds Σ_i s_iq² per singular value index; a discarded share below
    1e-20 (a relative residual of 1e-10) counts as rounding, so exact data keeps its rank.
    """
    suffix = np.append(np.cumsum(power[::-1])[::-1], 0.0)  # (r_max + 1,) suffix[r] = Σ_{q>=r}
    allowed = (share + _EXACT_TAIL) * total
    return int(np.flatnonzero(suffix[1:] <= allowed)[0]) + 1


# ---- the recursive split ---------------------------------------------------------------
def split(X: np.ndarray, dims: tuple[int, ...], rank: int | None, energy: float, *, factors: bool) -> Split:
    """Nearest Kronecker factors of the rows of X (n, d) in shape ``dims``, split by split.

    Parameters
    ----------
    X : ndarray (n, d), float64, d = prod(dims)
    dims : tuple of k >= 2 ints
    rank : int or None
        Terms kept at every split; None chooses each split's rank for ``energy``: the k - 1
        splits may each discard (1 - energy) / (k - 1) of Σ_i ||x_i||², so at least
        ``energy`` of it is kept in total.
    energy : float in (0, 1]
    factors : bool
        Compute the factors (full SVDs); without them the last split needs singular values only.
    """
    n, k = X.shape[0], len(dims)
    norms2 = np.einsum("ij,ij->i", X, X)  # (n,) squared norms
    total = float(norms2.sum())
    share = (1.0 - energy) / (k - 1)
    right = X.reshape(n, 1, -1)  # (n, T, D): the T weighted right vectors of each sample
    lefts: list[np.ndarray] = []  # orthonormal left vectors, each (n, T, d_l)
    tail = np.zeros(n)  # (n,) discarded squared norm per sample
    ranks, first_power = [], None
    for level, dl in enumerate(dims[:-1]):
        T, D = right.shape[1], right.shape[2] // dl
        stack = right.reshape(n * T, dl, D)  # (n·T, d_l, D)
        vectors = factors or level < k - 2
        if rank is None or not vectors:
            s = singular_values(stack)  # (n·T, p)
        r = rank if rank is not None else rank_for_energy((s * s).sum(axis=0), total, share)
        if vectors:
            U, s, Vt = truncated_svd(stack, r)  # (n·T, d_l, r), (n·T, p), (n·T, r, D)
        power = (s * s).reshape(n, T, -1)  # (n, T, p)
        if first_power is None:
            first_power = power.sum(axis=(0, 1))
        tail += power[:, :, r:].sum(axis=(1, 2))
        ranks.append(r)
        if vectors:
            # term t of the previous split becomes terms t·r ... t·r + r - 1 of this one
            lefts = [np.repeat(f, r, axis=1) for f in lefts]  # each (n, T·r, d_j)
            lefts.append(U.transpose(0, 2, 1).reshape(n, T * r, dl))  # (n, T·r, d_l)
            right = (s[:, :r, None] * Vt).reshape(n, T * r, D)  # (n, T·r, D)
    out = _balance(lefts, right) if factors else None
    residual = np.sqrt(np.divide(tail, norms2, out=np.zeros(n), where=norms2 > 0))  # (n,)
    captured = 1.0 - float(tail.sum()) / total if total > 0 else 1.0
    return Split(tuple(dims), tuple(ranks), out, residual, min(max(captured, 0.0), 1.0), first_power)


def _balance(lefts: list[np.ndarray], right: np.ndarray) -> list[np.ndarray]:
    """Give every factor of a term the same norm w^(1/k), w the term's weight (sqrt(s) u, sqrt(s) v for k = 2)."""
    k = len(lefts) + 1
    weight = np.linalg.norm(right, axis=2)  # (n, R): the left vectors are unit
    scale = weight ** (1.0 / k)  # (n, R)
    inverse = np.divide(scale, weight, out=np.zeros_like(weight), where=weight > 0)  # (n, R)
    return [f * scale[:, :, None] for f in lefts] + [right * inverse[:, :, None]]


def choose_shape(X: np.ndarray, rank: int | None, energy: float) -> tuple[tuple[int, int], list[Candidate]]:
    """Pick the factor pair (d1, d2) of d, d1 <= d2, that stores the data best.

    Candidates are the pairs with 1 < d1 (the trivial (1, d) only when d has no other), each
    scored on a fixed random subset of at most 256 samples (seed 0, so the choice is
    reproducible). With rank=None each candidate takes the rank that keeps ``energy``, and
    the pick is the one storing the fewest numbers R · (d1 + d2) per sample (ties: more
    energy, then the squarer pair). With an int rank the pick is the one keeping the most
    energy among those that store fewer than d numbers (all of them if none does).
    """
    n, d = X.shape
    pairs = factor_pairs(d)
    if rank is not None:
        pairs = [p for p in pairs if rank <= p[0]]
        if not pairs:
            largest = factor_pairs(d)[-1]
            raise ValidationError(
                f"rank must be 'auto' or an int in [1, {largest[0]}] for X with d = {d}: no factor "
                f"pair d1 x d2 of d has min(d1, d2) >= {rank} (the squarest is {largest[0]} x {largest[1]}). "
                f"Got {rank}."
            )
    sample = X
    if n > _SCORE_SAMPLES:
        sample = X[np.sort(np.random.default_rng(0).choice(n, _SCORE_SAMPLES, replace=False))]
    candidates = []
    for dims in pairs:
        result = split(sample, dims, rank, energy, factors=False)
        r = result.level_ranks[0]
        candidates.append(Candidate(dims, r, r * sum(dims), result.energy))
    if rank is None:
        best = min(candidates, key=lambda c: (c.stored, -c.energy, c.shape[1] - c.shape[0]))
    else:
        pool = [c for c in candidates if c.stored < d] or candidates
        best = min(pool, key=lambda c: (-c.energy, c.stored))
    return best.shape, candidates


def resolve(X, shape, rank, energy):
    """Validate the arguments of from_dense and inspect, and settle the shape.

    Returns (X as (n, d) float64, shape, rank or None, energy, candidates scored by "auto").
    A 3-d X of shape (n, d1, d2) with shape="auto" keeps its own (d1, d2).
    """
    X, natural = check_samples(X)
    energy = check_energy(energy)
    rank = check_rank(rank)
    dims = parse_shape(shape, X.shape[1])
    candidates: list[Candidate] = []
    if dims is None and natural is not None:
        dims = natural
    elif dims is None:
        dims, candidates = choose_shape(X, rank, energy)
    check_rank_fits(rank, dims)
    return X, dims, rank, energy, candidates
