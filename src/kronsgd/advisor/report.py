"""``kronsgd.inspect``: is my data Kronecker, and what would KronSGD gain on it? (DESIGN.md §4, §7)"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

from ..base.errors import MemoryBudgetError, ValidationError
from ..base.memory import GRAM_SHARE, format_bytes, resolve_budget
from ..base.validation import check_int
from ..data.structure import rank_for_energy, resolve, split
from ..engine.plan import Sizes, plan_run
from ..model.net import default_shift, fire_fraction
from .costs import draw_rate, job_costs, job_lines
from .solvers import SolverAdvice, advise_solver, core_seconds, parallel_cores

_ITEMSIZE = 4  # KronSGD's default dtype (float32) sets the bytes of P, alpha and G
_RATES: dict[str, float] = {}  # this machine's measured rates, filled once per process


def machine_rates() -> dict[str, float]:
    """Rates of this machine for the cost model, measured once per process in about 0.1 s.

    Each is measured in CPU time of one core (``solvers.core_seconds``), so that a busy
    machine does not change them; the GEMM rate is then scaled by the cores BLAS uses.

    Returns
    -------
    dict with ``gemm`` (float32 multiply-adds/s of a 384³ matrix product on all cores: the
    dense step's kernel at its best), ``bandwidth`` (bytes/s read + written by an in-place add over a
    64 MiB array, larger than the caches: the streaming of touched P rows) and ``update``
    (float32 multiply-adds/s of c @ G[S, :] on a cache-resident (32, 4096) block: the
    arithmetic of the structured update, whose Gram rows stay in cache).
    """
    if not _RATES:
        rng = np.random.default_rng(0)
        a = rng.standard_normal((384, 384), dtype=np.float32)  # (384, 384)
        _RATES["gemm"] = parallel_cores() * 384**3 / core_seconds(lambda: a @ a, 5)
        stream = np.ones(2**24, dtype=np.float32)  # (16 Mi,) 64 MiB
        _RATES["bandwidth"] = 2 * stream.nbytes / core_seconds(lambda: np.add(stream, 1.0, out=stream), 3)
        rows = rng.standard_normal((32, 4096), dtype=np.float32)  # (|S|, n') Gram rows, in cache
        coefs = rng.standard_normal(32, dtype=np.float32)  # (|S|,)

        def update():
            for _ in range(50):
                coefs @ rows

        _RATES["update"] = 50 * rows.size / core_seconds(update, 3)
    return dict(_RATES)


@dataclasses.dataclass(frozen=True)
class StructureReport:
    """What ``inspect`` found: the Kronecker structure of dense samples and its predicted payoff.

    Residuals are ||x_i - x̂_i|| / ||x_i|| per sample; energies are shares of Σ_i ||x_i||²;
    bytes count float64 factors (n · R · Σ d_l · 8) against the dense (n · d · 8); step
    times come from the cost model of ``inspect`` and this machine's measured rates.
    """

    shape: tuple[int, ...]  # chosen factor dimensions (d_1, ..., d_k)
    rank: int  # terms per sample, the product of level_ranks
    level_ranks: tuple[int, ...]  # terms kept at each of the k - 1 splits
    n: int
    d: int
    energy_target: float
    energy_captured: float
    residual_min: float
    residual_median: float
    residual_p95: float
    residual_max: float
    rank_90: int  # rank of the first split that keeps 90% of the energy
    rank_95: int
    rank_99: int
    factor_bytes: int
    dense_bytes: int
    width: int  # m
    batch_size: int  # |S|, at most n
    shift: float  # b = sqrt(0.4 ln m)
    fire_fraction: float  # p = Φ̄(b)
    expected_nnz: float  # |S| · m · p
    expected_rows_touched: float  # m · (1 - (1 - p)^|S|)
    itemsize: int  # bytes per entry of P (float32)
    gram: str  # "precomputed" when the (n, n) Gram matrix fits, else "on_the_fly"
    gemm_rate: float  # multiply-adds/s
    bandwidth: float  # bytes/s
    update_rate: float  # multiply-adds/s
    dense_step_seconds: float
    structured_step_seconds: float
    predicted_speedup: float
    candidates: tuple = ()  # (shape, rank, stored numbers per sample, energy) scored by shape="auto"
    solvers: SolverAdvice | None = None  # predicted time and memory of the kernel limit, KronSGD and dense SGD
    steps: int = 1000  # SGD steps of the whole job predicted in ``job``
    job: dict = dataclasses.field(default_factory=dict)  # advisor/costs.py: set-up, step, prediction per engine

    def to_dict(self) -> dict:
        """A JSON-ready dict: tuples become lists, candidates become dicts."""
        out = dataclasses.asdict(self)
        out["shape"], out["level_ranks"] = list(self.shape), list(self.level_ranks)
        out["candidates"] = [
            {"shape": list(c[0]), "rank": c[1], "stored": c[2], "energy": c[3]} for c in self.candidates
        ]
        return out

    def __str__(self) -> str:
        shape = " x ".join(str(v) for v in self.shape)
        ranks = " x ".join(str(r) for r in self.level_ranks)
        picked = f"   (best of {len(self.candidates)} factor pairs)" if self.candidates else ""
        splits = f"   ({ranks} over the splits)" if len(self.level_ranks) > 1 else ""
        lines = [
            f"Kronecker structure of {self.n:,} samples of dimension d = {self.d:,}",
            f"  shape                  {shape}{picked}",
            f"  rank                   {self.rank}{splits}",
            f"  energy kept            {self.energy_captured:.6f}   (target {self.energy_target:g})",
            f"  rank for 90/95/99%     {self.rank_90} / {self.rank_95} / {self.rank_99}",
            f"  relative residual      min {self.residual_min:.3g}  median {self.residual_median:.3g}  "
            f"p95 {self.residual_p95:.3g}  max {self.residual_max:.3g}",
            f"  memory                 factors {format_bytes(self.factor_bytes)} vs dense "
            f"{format_bytes(self.dense_bytes)} ({self.factor_bytes / self.dense_bytes:.3g}x)"
            + ("   no saving" if self.factor_bytes >= self.dense_bytes else ""),
            f"Predicted SGD step (m = {self.width}, |S| = {self.batch_size}, float32, Gram {self.gram})",
            f"  fire fraction          {100 * self.fire_fraction:.2f}%  (b = {self.shift:.4g}); "
            f"nnz {self.expected_nnz:,.0f}, rows touched {self.expected_rows_touched:,.0f}",
            f"  dense SGD              {1e3 * self.dense_step_seconds:.4g} ms   "
            f"(2·m·|S|·d at {self.gemm_rate:.3g} multiply-adds/s)",
            f"  KronSGD                {1e3 * self.structured_step_seconds:.4g} ms   "
            f"(rows·n·{2 * self.itemsize} B at {self.bandwidth / 1e9:.3g} GB/s + nnz·n at {self.update_rate:.3g}/s)",
            f"  predicted speedup      {self.predicted_speedup:.3g}x",
        ]
        if self.solvers is not None:
            lines.append(str(self.solvers))
        if self.job:
            lines.extend(job_lines(self.job, self.steps))
        if self.candidates:
            lines.append("Candidates (scored on a sample):  shape  rank  stored/d  energy")
            for c in self.candidates:
                lines.append(f"  {'x'.join(map(str, c[0])):>16} {c[1]:>5} {c[2] / self.d:>9.3f} {c[3]:>8.5f}")
        return "\n".join(lines)


def inspect(X, shape="auto", rank="auto", energy=0.99, width=1024, batch_size=32, steps=1000) -> StructureReport:
    """Find the Kronecker structure of dense samples and predict KronSGD's per-step speedup.

    Parameters
    ----------
    X : array-like, (n, d) or (n, d1, d2)
        Dense samples, sample i read as the row-major matrix X[i].reshape(shape).
    shape, rank, energy
        As in ``KroneckerData.from_dense``: "auto" picks the factor pair storing the data in
        the fewest numbers R · (d1 + d2) at the target energy, scored on at most 256 samples;
        rank="auto" is the smallest rank keeping ``energy`` of Σ_i ||x_i||² over the data set.
        Only singular values are computed, never factors.
    width : int, default 1024
        Hidden neurons m of the net to train.
    batch_size : int, default 32
        |S| (capped at n).
    steps : int, default 1000
        SGD steps of the whole job whose set-up, steps and prediction (on n points) are
        predicted for dense SGD and KronSGD with either init (``report.job``, see
        ``kronsgd.advisor.costs``).

    Returns
    -------
    StructureReport

    Notes
    -----
    Cost model (DESIGN.md §4), per SGD step, with p = Φ̄(b), b = sqrt(0.4 ln m):

        dense      = 2 · m · |S| · d / gemm_rate
        structured = rows · n · itemsize · 2 / bandwidth + nnz · n / update_rate
                     (+ |S| · n · R² · Σ d_l / gemm_rate when G is computed on the fly)
        rows = m · (1 - (1 - p)^|S|),   nnz = |S| · m · p,   itemsize = 4 (float32)

    Each touched P row is read and written once; the two terms are added (no overlap), so
    the structured time is an upper estimate. The rates come from ``machine_rates`` (a
    square GEMM: the dense side at its best). One-off costs (Gram matrix, initial
    pre-activations P0, O(m · n · d)) are not included.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = np.einsum("ia,ib->iab", rng.normal(size=(50, 8)), rng.normal(size=(50, 8))).reshape(50, 64)
    >>> report = inspect(X)
    >>> report.shape, report.rank, report.residual_max < 1e-12
    ((8, 8), 1, True)
    """
    X, dims, rank, energy, candidates = resolve(X, shape, rank, energy)
    width = check_int(width, "width", low=1)
    batch_size = check_int(batch_size, "batch_size", low=1)
    steps = check_int(steps, "steps", low=0)
    n, d = X.shape
    result = split(X, dims, rank, energy, factors=False)
    total = float(result.first_power.sum())
    at = {e: rank_for_energy(result.first_power, total, 1.0 - e) for e in (0.9, 0.95, 0.99)}
    q = np.quantile(result.residual, [0.0, 0.5, 0.95, 1.0])
    R = math.prod(result.level_ranks)

    S = min(batch_size, n)
    cost = _step_cost(n, d, tuple(dims), R, width, S, resolve_budget(None))
    shift, p, nnz, rows, rates = cost["shift"], cost["p"], cost["nnz"], cost["rows"], cost["rates"]
    dense_seconds, structured, gram = cost["dense"], cost["structured"], cost["gram"]
    job = job_costs(n, dims, R, width, S, steps, structured, {"gemm": rates["gemm"], "draw": draw_rate()},
                    resolve_budget(None), gram=gram)  # fmt: skip
    return StructureReport(
        shape=tuple(dims),
        rank=R,
        level_ranks=result.level_ranks,
        n=n,
        d=d,
        energy_target=energy,
        energy_captured=result.energy,
        residual_min=float(q[0]),
        residual_median=float(q[1]),
        residual_p95=float(q[2]),
        residual_max=float(q[3]),
        rank_90=at[0.9],
        rank_95=at[0.95],
        rank_99=at[0.99],
        factor_bytes=8 * n * R * sum(dims),
        dense_bytes=8 * n * d,
        width=width,
        batch_size=S,
        shift=shift,
        fire_fraction=p,
        expected_nnz=nnz,
        expected_rows_touched=rows,
        itemsize=_ITEMSIZE,
        gram=gram,
        gemm_rate=rates["gemm"],
        bandwidth=rates["bandwidth"],
        update_rate=rates["update"],
        dense_step_seconds=dense_seconds,
        structured_step_seconds=structured,
        predicted_speedup=dense_seconds / structured,
        candidates=tuple((c.shape, c.rank, c.stored, c.energy) for c in candidates),
        solvers=advise_solver(
            n, tuple(dims), R, width=width, batch_size=S, sgd_step_seconds=structured,
            dense_step_seconds=dense_seconds, gemm_rate=rates["gemm"], sgd_setup_seconds=job["kron_gaussian"]["setup"],
        ),
        steps=steps,
        job=job,
    )


def _step_cost(
    n: int, d: int, dims: tuple[int, ...], R: int, width: int, S: int, budget: int, gram: str | None = None
) -> dict:
    """The cost model of ``inspect`` (its Notes): one step's time, dense and structured.

    ``gram`` is the trainer's Gram mode when known; None applies the rule of gram="auto".
    """
    shift = default_shift(width)
    p = fire_fraction(shift)
    nnz = S * width * p
    rows = width * (1.0 - (1.0 - p) ** S)
    rates = machine_rates()
    dense = 2.0 * width * S * d / rates["gemm"]
    structured = rows * n * _ITEMSIZE * 2 / rates["bandwidth"] + nnz * n / rates["update"]
    if gram is None:
        gram = "precomputed" if n * n * _ITEMSIZE <= GRAM_SHARE * budget else "on_the_fly"
    if gram == "on_the_fly":
        structured += S * n * R * R * sum(dims) / rates["gemm"]
    return {"shift": shift, "p": p, "nnz": nnz, "rows": rows, "rates": rates, "dense": dense,
            "structured": structured, "gram": gram}  # fmt: skip


def choose_solver(
    n, dims, rank, *, width=1024, batch_size=32, steps=None, alpha_auto=True, budget=None, choices=("kernel", "sgd"),
    outputs=1, dtype="float32", workers=1,
):
    """Which of the solvers ``kronsgd train`` runs ("kernel" or "sgd") fits this data best.

    The estimates of ``advise_solver`` for ``n`` points of factor dims ``dims`` and rank
    ``rank``, with this machine's rates and ``inspect``'s step-time model; the choice is the
    fastest of ``choices`` (the kernel and KronSGD) among those whose memory fits ``budget``
    (bytes; None means half the free memory). KronSGD's memory and Gram mode are those its
    own plan (``engine.plan.plan_run``) takes for ``dtype`` and ``workers`` within the budget.

    Returns
    -------
    SolverAdvice
    """
    dims = tuple(int(v) for v in dims)
    budget = resolve_budget(budget)
    S = min(check_int(batch_size, "batch_size", low=1), n)
    width = check_int(width, "width", low=1)
    dtype = np.dtype(dtype)
    sizes = Sizes(width, n, S, dtype, default_shift(width), check_int(workers, "workers", low=1))
    try:
        gram = plan_run(sizes, "auto", "auto", "scan", budget).gram
        fits = True
    except MemoryBudgetError:  # not even P and alpha fit: the advice says so
        gram, fits = "on_the_fly", False
    sgd_bytes = 2 * dtype.itemsize * width * n + (dtype.itemsize * n * n if gram == "precomputed" else 0)
    cost = _step_cost(n, math.prod(dims), dims, rank, width, S, budget, gram)
    rates = {"gemm": cost["rates"]["gemm"], "draw": draw_rate()}
    job = job_costs(n, dims, rank, width, S, 0, cost["structured"], rates, budget, gram=gram)  # its set-up only
    return advise_solver(
        n, dims, rank, width=width, batch_size=S, steps=steps, alpha_auto=alpha_auto, budget=budget,
        sgd_step_seconds=cost["structured"], dense_step_seconds=cost["dense"], gemm_rate=cost["rates"]["gemm"],
        choices=tuple(choices), outputs=outputs, sgd_plan=(gram, sgd_bytes, fits),
        sgd_setup_seconds=job["kron_gaussian"]["setup"],
    )  # fmt: skip


def load_samples(path: str, key: str | None = None) -> np.ndarray:
    """The array X of a .npy file, or of a .npz file (key ``key``, else "X", else its only array)."""
    if not os.path.isfile(path):
        raise ValidationError(f"FILE must be an existing .npy or .npz file. Got {path!r}, which does not exist.")
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in (".npy", ".npz"):
        raise ValidationError(f"FILE must be a .npy or .npz file. Got {path!r}.")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ValidationError(f"FILE {path!r} could not be read as {suffix}: {exc}") from None
    if suffix == ".npy":
        return loaded
    with loaded:
        keys = list(loaded.keys())
        if key is None:
            key = "X" if "X" in keys or len(keys) != 1 else keys[0]
        if key not in keys:
            raise ValidationError(
                f"the key of the samples in {path!r} must be one of {keys} (pass --key NAME). Got {key!r}."
            )
        return loaded[key]


def rank_from_text(text: str):
    """The --rank option: 'auto' or a positive int written in decimal."""
    if text == "auto":
        return text
    if not text.strip().isdigit() or int(text) < 1:
        raise ValidationError(f"--rank must be 'auto' or an int >= 1. Got {text!r}.")
    return int(text)
