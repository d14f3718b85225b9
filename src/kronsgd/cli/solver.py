"""``kronsgd train --solver``: which solver runs (KronSGD or the kernel limit), and the kernel run.

"sgd" trains the net with KronSGD (cli/train.py). "kernel" fits its infinite-width limit,
kernel ridge with the NTK (``KronNTKRegressor``/``KronNTKClassifier``; without
scikit-learn, a fixed --alpha is solved by NumPy alone), and saves a kernel model file
that ``kronsgd predict`` and ``kronsgd.load`` read. "auto" asks the advisor
(``advisor.report.choose_solver``) which is faster for this n, d, rank and memory budget.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import re
import time

from ..advisor.report import choose_solver
from ..advisor.solvers import SolverAdvice
from ..base.errors import MissingDependencyError, ValidationError
from ..base.memory import format_bytes
from ..model.net import default_shift
from . import args as A

SOLVERS = ("auto", "sgd", "kernel")
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def byte_count(text: str) -> int:
    """An option value: bytes, with an optional binary suffix K, M, G or T (such as 512M)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, flags=re.IGNORECASE)
    if not match or float(match.group(1)) * _UNITS[match.group(2).upper()] < 1:
        raise argparse.ArgumentTypeError(f"must be a byte count >= 1 such as 800000000, 512M or 4G, got {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def auto_or_alpha(text: str):
    """'auto' or a finite float > 0."""
    return "auto" if text == "auto" else A.positive_float(text)


def add_solver_options(parser) -> None:
    """The options of ``train`` that choose and configure the solver."""
    g = parser.add_argument_group("solver")
    g.add_argument(
        "--solver",
        default="sgd",
        choices=SOLVERS,
        help="sgd: KronSGD; kernel: the net's infinite-width limit, kernel ridge with its NTK (n x n memory); "
        "auto: whichever is predicted faster for this n, d, rank and memory budget",
    )
    g.add_argument(
        "--alpha",
        default="auto",
        type=auto_or_alpha,
        help="the kernel's ridge α; auto: chosen by exact leave-one-out over a grid (needs scikit-learn)",
    )
    g.add_argument(
        "--memory-budget",
        default=None,
        type=byte_count,
        help="bytes the large arrays may take (the kernel's n x n matrices, KronSGD's state and Gram matrix); "
        "--solver auto chooses within it (default: half the free memory)",
    )


@dataclasses.dataclass(frozen=True)
class SolverChoice:
    """The solver that runs, why, and the advisor's estimates (None when the user chose)."""

    name: str
    reason: str
    advice: SolverAdvice | None = None

    def to_dict(self) -> dict:
        out = {"solver": self.name, "solver_reason": self.reason}
        if self.advice is not None:
            out["solver_budget"] = self.advice.budget
            out["solver_estimates"] = [dataclasses.asdict(e) for e in self.advice.estimates]
        return out

    def describe(self) -> str:
        """Text lines: the solver, why, and the estimates when the advisor chose."""
        lines = [f"  solver: {self.name} ({self.reason})"]
        if self.advice is not None:
            lines += ["  " + line for line in str(self.advice).splitlines()[1:-1]]
        return "\n".join(lines)


def choose(args, data, outputs: int = 1) -> SolverChoice:
    """The solver ``train`` runs on ``data`` (a KroneckerData) with ``outputs`` target columns."""
    if args.solver != "auto":
        return SolverChoice(args.solver, f"--solver {args.solver}")
    # Without scikit-learn the kernel solves only a fixed --alpha; with --alpha auto it is not an option.
    kernel_ok = args.alpha != "auto" or _have_sklearn()
    advice = choose_solver(
        data.n, data.dims, data.rank, width=args.width, batch_size=args.batch, steps=args.steps,
        alpha_auto=args.alpha == "auto", budget=args.memory_budget,
        choices=("kernel", "sgd") if kernel_ok else ("sgd",), outputs=outputs, dtype=args.dtype,
        workers=args.workers,
    )  # fmt: skip
    reason = f"--solver auto, memory budget {format_bytes(advice.budget)}: {advice.reason}"
    if not kernel_ok:
        reason += "; the kernel with --alpha auto needs scikit-learn (pip install 'kronsgd[sklearn]')"
    return SolverChoice(advice.recommended, reason, advice)


def _have_sklearn() -> bool:
    try:
        importlib.import_module("sklearn")
    except ImportError:
        return False
    return True


def fit_kernel(args, data, y, labels):
    """The fitted KernelModel, its fit time, and how α was chosen. y (n,) or (n, C); labels with --classify."""
    shift = default_shift(args.width) if args.shift == "auto" else args.shift
    started = time.perf_counter()
    if _have_sklearn():
        from ..estimators.ntk import KronNTKClassifier, KronNTKRegressor

        estimator = KronNTKClassifier if args.classify else KronNTKRegressor
        est = estimator(alpha=args.alpha, shift=shift, memory_budget=args.memory_budget)
        est.fit(data, labels if args.classify else y)
        model = est.kernel_model_
        tried = est.alphas_
        chosen = "given, solved by Cholesky" if tried is None else f"chosen by leave-one-out among {tried.size} values"
    elif args.alpha == "auto":
        raise MissingDependencyError(
            "kronsgd train --solver kernel with --alpha auto chooses α by leave-one-out with scikit-learn's "
            "estimators, which cannot be imported. Install it with: pip install 'kronsgd[sklearn]' "
            "(or pass a fixed --alpha such as 1e-3, which NumPy solves alone)."
        )
    else:
        from ..theory.kernel_model import fit_kernel_model

        model = fit_kernel_model(
            data, labels if args.classify else y, alpha=args.alpha, shift=shift, classify=args.classify,
            memory_budget=args.memory_budget,
        )  # fmt: skip
        chosen = "given, solved by NumPy (scikit-learn is not installed)"
    return model, time.perf_counter() - started, chosen


def run_kernel(args, points, y, labels, choice: SolverChoice, describe_points) -> int:
    """Fit the kernel limit, save it to --out, report; returns the exit code."""
    if args.plot:
        raise ValidationError(
            f"--plot draws KronSGD's loss curve, and the kernel solver ({choice.reason}) has none; drop --plot."
        )
    model, seconds, chosen = fit_kernel(args, points.data, y, labels)
    summary = {
        "data": points.describe(),
        "targets": args.y or "y",
        **choice.to_dict(),
        "kind": model.kind,
        "points_kept": model.n,
        "outputs": model.outputs,
        "shift": model.shift,
        "normalize": model.normalize,
        "alpha": model.alpha,
        "alpha_choice": chosen,
        "fit_seconds": seconds,
        "model": args.out,
    }
    if model.classes is not None:
        summary["classes"] = model.classes
    model.save(args.out)
    if args.json:
        print(A.dump_json({"summary": summary}))
    elif args.quiet:
        print(f"{args.out}: {choice.name} solver ({choice.reason}); alpha {model.alpha:.4g}, fit in {seconds:.3g} s")
    else:
        print(describe_points(args.data, points))
        print(choice.describe())
        print(
            f"kernel ridge with the net's NTK on {model.n:,} points ({model.kind}, {model.outputs} output(s)): "
            f"shift b = {model.shift:.4g}, alpha {model.alpha:.4g} ({chosen}); fit in {seconds:.3g} s"
        )
        print(f"saved the kernel model to {args.out}")
    return 0
