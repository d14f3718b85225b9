"""How far a KronSGD run moves from where it started, from the trainer's own state.

The NTK theory of this model says that with a width m large against n/λ_min the weights
barely move (max_r ||w_r(t) - w_r(0)|| = O(√n / (√m λ_min))), few neurons change the set of
points they fire on, the kernel H(t) stays near H(0), and full-batch GD contracts the
residual at the rate that λ_min(H) predicts. Everything here is computed from P (m, n),
alpha (m, n) and the Gram matrix G (n, n): no d-dimensional vector is formed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..base.errors import ValidationError
from ..base.validation import check_choice
from .ntk import contraction_factor, min_eigenvalue, ntk_gram


def _check_trainer(trainer):
    for attribute in ("P", "alpha", "data", "net", "lr", "batch_size"):
        if not hasattr(trainer, attribute):
            raise ValidationError(
                f"trainer must be a KronSGD (it needs P and alpha). Got {type(trainer).__name__}, "
                f"which has no attribute {attribute!r}."
            )
    return trainer


def _gram(trainer) -> np.ndarray:
    """The trainer's Gram matrix (n, n) in float64; computed from the factors when not kept."""
    G = trainer.G if getattr(trainer, "G", None) is not None else trainer.data.gram()
    return np.asarray(G, dtype=np.float64)


def _fired(trainer) -> np.ndarray:
    """The fire mask P > b (m, n), compared in float64 as the trainer's kernels do."""
    return np.asarray(trainer.P) > np.float64(trainer.net.shift)


def _kernel_of(fired: np.ndarray, gram: np.ndarray) -> np.ndarray:
    """H[i, j] = G[i, j] · (1/m) Σ_r fired[r, i] fired[r, j] for a mask (m, n): (n, n)."""
    mask = fired.astype(np.float64)  # (m, n)
    return gram * (mask.T @ mask) / fired.shape[0]


def empirical_ntk(trainer) -> np.ndarray:
    """The finite-width NTK H(t)[i, j] = G_ij · (1/m) Σ_r 1[P_ri > b] 1[P_rj > b] of a trainer now.

    This is Σ_r <∂f_i/∂w_r, ∂f_j/∂w_r> for f = (1/√m) Σ_r a_r σ_b(<w_r, x>) (a_r² = 1); with
    several outputs it is the kernel of each output (the cross-output blocks average out).
    At initialisation it converges to ``ntk_gram(trainer.data, trainer.net.shift)`` as m grows.

    Parameters
    ----------
    trainer : KronSGD

    Returns
    -------
    ndarray of shape (n, n), float64. Cost O(m · n²).
    """
    trainer = _check_trainer(trainer)
    return _kernel_of(_fired(trainer), _gram(trainer))


class DriftTracker:
    """A ``trainer.run`` callback that adds drift measurements to every history record.

    At construction it keeps the trainer's current fire mask, its empirical NTK H(0) and
    alpha: "start" below means that moment. Each call adds to the record:

    * ``ntk_drift``: ||H(t) - H(0)|| / ||H(0)||, Frobenius norm (``norm="fro"``) or spectral
      (``norm="spectral"``);
    * ``max_weight_move``: max_r ||w_r(t) - w_r(start)||, from
      ||Σ_j Δα_rj x_j||² = Δα_r G Δα_rᵀ (Δα = alpha - alpha at start);
    * ``pattern_change``: the fraction of neurons whose fire pattern over the training points
      (the row of 1[P > b]) differs from the start in at least one point;
    * ``flip_fraction``: the fraction of (neuron, point) pairs whose firing flipped;
    * ``ntk_min_eigenvalue`` (only with ``eigenvalues=True``): λ_min(H(t)), O(n³).

    Each call costs O(m · n²) and holds a few (m, n) arrays; ``records`` keeps the
    measurements with their step.

    Parameters
    ----------
    trainer : KronSGD
    norm : {"fro", "spectral"}, default "fro"
    eigenvalues : bool, default False

    Examples
    --------
    >>> import numpy as np
    >>> from kronsgd import KroneckerData, KronSGD, TwoLayerNet
    >>> rng = np.random.default_rng(0)
    >>> data = KroneckerData([rng.normal(size=(8, 3)), rng.normal(size=(8, 4))])
    >>> trainer = KronSGD(TwoLayerNet(data.dims, 256, shift=0.0), data, rng.normal(size=8), 0.5, 8, dtype=np.float64)
    >>> tracker = DriftTracker(trainer)
    >>> history = trainer.run(20, log_every=10, callback=tracker)
    >>> sorted(k for k in history[-1] if k in tracker.KEYS)
    ['flip_fraction', 'max_weight_move', 'ntk_drift', 'pattern_change']
    >>> history[0]["ntk_drift"], history[0]["max_weight_move"]
    (0.0, 0.0)
    """

    KEYS = ("ntk_drift", "max_weight_move", "pattern_change", "flip_fraction", "ntk_min_eigenvalue")

    def __init__(self, trainer, norm="fro", eigenvalues=False):
        self.trainer = _check_trainer(trainer)
        self.norm = check_choice(norm, "norm", ("fro", "spectral"))
        if not isinstance(eigenvalues, (bool, np.bool_)):
            raise ValidationError(f"eigenvalues must be True or False. Got {eigenvalues!r}.")
        self.eigenvalues = bool(eigenvalues)
        self.gram = _gram(trainer)  # (n, n)
        self.fired0 = _fired(trainer).copy()  # (m, n) bool, the fire mask at start
        self.alpha0 = np.array(trainer.alpha, dtype=np.float64)  # (m, n) alpha at start
        self.ntk0 = _kernel_of(self.fired0, self.gram)  # (n, n) H(0)
        self._ntk0_norm = self._size(self.ntk0)
        self.records: list[dict] = []

    def _size(self, matrix: np.ndarray) -> float:
        return float(np.linalg.norm(matrix, "fro" if self.norm == "fro" else 2))

    def measure(self, trainer=None) -> dict:
        """The drift quantities now (see the class docstring), as a dict."""
        trainer = self.trainer if trainer is None else _check_trainer(trainer)
        fired = _fired(trainer)  # (m, n)
        if fired.shape != self.fired0.shape:
            raise ValidationError(
                f"trainer has P of shape {fired.shape} but this tracker was built on one of shape "
                f"{self.fired0.shape}; build a DriftTracker per trainer."
            )
        ntk = _kernel_of(fired, self.gram)  # (n, n)
        move = np.asarray(trainer.alpha, dtype=np.float64) - self.alpha0  # (m, n)
        sq = np.einsum("rj,rj->r", move @ self.gram, move)  # (m,) ||w_r(t) - w_r(start)||²
        flipped = fired != self.fired0  # (m, n)
        out = {
            "ntk_drift": self._size(ntk - self.ntk0) / self._ntk0_norm if self._ntk0_norm > 0 else 0.0,
            "max_weight_move": math.sqrt(max(float(sq.max(initial=0.0)), 0.0)),
            "pattern_change": float(flipped.any(axis=1).mean()),
            "flip_fraction": float(flipped.mean()),
        }
        if self.eigenvalues:
            out["ntk_min_eigenvalue"] = float(np.linalg.eigvalsh(ntk)[0])
        return out

    def __call__(self, trainer, entry: dict) -> None:
        values = self.measure(trainer)
        entry.update(values)
        self.records.append({"step": entry.get("step"), **values})


@dataclass(frozen=True)
class TheoryReport:
    """What the NTK theory predicts for a run, next to what the run measured.

    Attributes
    ----------
    lambda_min, lambda_max : float
        Extreme eigenvalues of the infinite-width NTK H of the training points (lambda_max is
        nan with method="subsample", where lambda_min is the optimistic subset estimate).
    lr, effective_lr : float
        The trainer's η, and η · B / n: the expected step of a batch of B of the n points
        (equal to η for full batch, where the prediction is a bound of the linearised model;
        for minibatches it describes the average step only).
    lr_limit : float
        1/λ_max (nan with method="subsample"): at or below it the predicted factor is 1 - effective_lr · λ_min.
    predicted_factor : float
        Per-step factor of ||f - y|| (see ``contraction_factor``).
    predicted_loss_factor : float
        Its square: the loss satisfies L(t) <= predicted_loss_factor^t · L(0).
    measured_loss_factor : float
        (L_last / L_first)^(1 / steps) over the history records: the average per-step factor.
    steps : int
        Steps between the first and the last record.
    """

    lambda_min: float
    lambda_max: float
    lr: float
    effective_lr: float
    lr_limit: float
    predicted_factor: float
    predicted_loss_factor: float
    measured_loss_factor: float
    steps: int


def theory_report(trainer, history=None, method="exact", **eigen) -> TheoryReport:
    """Predicted and measured loss contraction of a KronSGD run.

    Parameters
    ----------
    trainer : KronSGD
        Its net must normalise inputs (the kernel formula assumes unit-norm points).
    history : list of dict, optional
        Records with "step" and "loss"; default ``trainer.history``.
    method : {"exact", "subsample"}, default "exact"
        How λ_min is found (``min_eigenvalue``); ``eigen`` passes size, trials, seed.

    Returns
    -------
    TheoryReport
    """
    trainer = _check_trainer(trainer)
    if not trainer.net.normalize:
        raise ValidationError("theory_report needs a net with normalize=True: the NTK formula assumes unit inputs.")
    history = trainer.history if history is None else history
    if len(history) < 2 or history[-1]["step"] <= history[0]["step"]:
        raise ValidationError("history must hold at least two records at different steps; run the trainer first.")
    shift = trainer.net.shift
    effective_lr = trainer.lr * trainer.batch_size / trainer.n
    if method == "exact":
        H = ntk_gram(trainer.data, shift)  # (n, n)
        eig = np.linalg.eigvalsh(H)  # (n,)
        lam_min, lam_max = float(eig[0]), float(eig[-1])
        factor = contraction_factor(H, effective_lr)
    else:
        lam_min = float(min_eigenvalue(trainer.data, shift, method=method, **eigen))
        lam_max = math.nan
        factor = contraction_factor(lam_min, effective_lr)
    steps = history[-1]["step"] - history[0]["step"]
    measured = (history[-1]["loss"] / history[0]["loss"]) ** (1.0 / steps) if history[0]["loss"] > 0 else 0.0
    return TheoryReport(
        lambda_min=lam_min,
        lambda_max=lam_max,
        lr=trainer.lr,
        effective_lr=effective_lr,
        lr_limit=(1.0 / lam_max if lam_max > 0 else math.inf) if method == "exact" else math.nan,
        predicted_factor=factor,
        predicted_loss_factor=factor * factor,
        measured_loss_factor=measured,
        steps=steps,
    )
