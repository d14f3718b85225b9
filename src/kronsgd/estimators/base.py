"""The shared machinery of the scikit-learn estimators: parameters, inputs, training, outputs.

An estimator is a thin layer over TwoLayerNet and KronSGD: it validates its parameters and
inputs, structures dense X into Kronecker factors (``KroneckerData.from_dense``), encodes
targets, and runs the structured trainer for whole epochs. Subclasses say how targets are
encoded (standardised values, one-hot classes) and how outputs are read back.
"""

from __future__ import annotations

import hashlib
import logging
import math
import numbers

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ..base.errors import ValidationError
from ..base.validation import check_dtype
from ..data.kronecker import KroneckerData
from ..engine.trainer import KronSGD
from ..model.net import TwoLayerNet, fire_fraction
from .inputs import StructuredInputs

logger = logging.getLogger("kronsgd")

_AUTO_EPOCHS = 20  # digits reaches ~0.98 test accuracy at 20 epochs of the default lr (measured)
_AUTO_MIN_STEPS = 500  # SGD needs a number of updates whatever n; on small data steps cost ~0.1 ms


class KronMLPBase(StructuredInputs, BaseEstimator):
    """Parameters and fitting shared by KronMLPRegressor and KronMLPClassifier (see their docs)."""

    def __init__(
        self,
        width=1024,
        shift=None,
        lr=4.0,
        batch_size=32,
        max_iter="auto",
        factor_shape="auto",
        rank="auto",
        energy=0.99,
        normalize=True,
        dtype="float64",
        workers=1,
        memory_budget=None,
        random_state=None,
        verbose=0,
        init="gaussian",
        init_rank=None,
    ):
        self.width = width
        self.shift = shift
        self.lr = lr
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.factor_shape = factor_shape
        self.rank = rank
        self.energy = energy
        self.normalize = normalize
        self.dtype = dtype
        self.workers = workers
        self.memory_budget = memory_budget
        self.random_state = random_state
        self.verbose = verbose
        self.init = init
        self.init_rank = init_rank

    def _check_params(self) -> dict:
        """Validate every parameter at fit time (scikit-learn convention: __init__ only stores)."""
        params = {
            "width": self._check_int("width", 1),
            "lr": self._check_real("lr", 0.0, low_open=True),
            "batch_size": self._check_int("batch_size", 1),
            "max_iter": self._check_int("max_iter", 1, auto_ok=True),
            "rank": self._check_int("rank", 1, auto_ok=True),
            "energy": self._check_real("energy", 0.0, 1.0, low_open=True),
            "workers": self._check_int("workers", 1),
            "memory_budget": self._check_int("memory_budget", 1, none_ok=True),
            "verbose": self._check_int("verbose", 0) if not isinstance(self.verbose, bool) else int(self.verbose),
        }
        params["shift"] = None if self.shift is None else self._check_real("shift", 0.0)
        if not isinstance(self.init, str) or self.init not in ("gaussian", "kronecker"):
            raise self._invalid("init", "'gaussian' or 'kronecker'")
        params["init"] = self.init
        if self.init == "gaussian" and self.init_rank is not None:
            raise self._invalid("init_rank", "None when init='gaussian' (it counts the terms of init='kronecker')")
        params["init_rank"] = self._check_int("init_rank", 1, none_ok=True)
        if not isinstance(self.normalize, (bool, np.bool_)):
            raise self._invalid("normalize", "a bool")
        try:
            params["dtype"] = check_dtype(self.dtype)
        except ValidationError:
            raise self._invalid("dtype", "'float32' or 'float64'") from None
        shape = self.factor_shape
        if not (isinstance(shape, (str, tuple, list))):
            raise self._invalid("factor_shape", "'auto', a tuple of ints such as (8, 8), or a str such as '8x8'")
        return params

    def _seed(self) -> int:
        """An int random_state is the seed itself; None or a RandomState draw one."""
        state = self.random_state
        if isinstance(state, numbers.Integral) and not isinstance(state, bool):
            check_random_state(state)  # refuses what scikit-learn refuses (negative, too large)
            return int(state)
        return int(check_random_state(state).randint(np.iinfo(np.int32).max))

    # ---- training ----------------------------------------------------------------------
    def _train(self, X, y, *, partial: bool, **target_args):
        """fit (partial=False: a new net, max_iter epochs) or partial_fit (one epoch, same net)."""
        params = self._check_params()
        first = not partial or not hasattr(self, "model_")
        data, y = self._structure(X, reset=first, y=y, validate_y=self._y_validation())
        targets = self._encode_targets(y, first=first, **target_args)  # (n, C)
        if first:
            self.seed_ = self._seed()
            self.model_ = TwoLayerNet(
                data.dims,
                params["width"],
                outputs=targets.shape[1],
                shift=params["shift"],
                seed=self.seed_,
                normalize=bool(self.normalize),
                init=params["init"],
                init_rank=params["init_rank"],
            )
            self.trainer_, self.history_, self.n_iter_, self.t_ = None, [], 0, 0
            self._trainers, self._fingerprint = 0, None
        try:
            fingerprint = _fingerprint(data, targets)
            if getattr(self, "trainer_", None) is None or fingerprint != self._fingerprint:
                self.trainer_ = self._new_trainer(data, targets, params)
                self._fingerprint = fingerprint
            if partial:
                epochs = 1
            elif params["max_iter"] == "auto":
                epochs = max(_AUTO_EPOCHS, math.ceil(_AUTO_MIN_STEPS / self._steps_per_epoch))
            else:
                epochs = params["max_iter"]
            self._run(epochs, params["verbose"])
        except BaseException:
            if first:  # a fit that failed leaves no model behind to predict with
                self.__dict__.pop("model_", None)
            raise
        return self

    def _new_trainer(self, data: KroneckerData, targets: np.ndarray, params: dict) -> KronSGD:
        """A KronSGD over model_ on the nonzero points (a zero point has zero gradient)."""
        keep = data.norms() > 0  # (n,)
        if not keep.any():
            raise ValidationError(
                f"X has no point with a nonzero norm; {type(self).__name__} cannot learn from zero vectors."
            )
        data, targets = (data, targets) if keep.all() else (data[keep], targets[keep])
        batch = min(params["batch_size"], data.n)
        workers = max(1, min(params["workers"], data.n // batch))  # each worker samples its own shard
        # lr is in units of the kernel at initialisation: one point's K(x, x) ≈ Φ̄(b), and the
        # trainer's loss sums over the batch, so η = lr / (|S| Φ̄(b)) is width- and batch-free.
        eta = params["lr"] / (batch * fire_fraction(self.model_.shift))
        self._trainers += 1
        trainer = KronSGD(
            self.model_,
            data,
            targets,
            lr=eta,
            batch_size=batch,
            seed=(self.seed_ + self._trainers - 1) % 2**63,
            dtype=params["dtype"],
            memory_budget=params["memory_budget"],
            workers=workers,
        )
        self._steps_per_epoch = math.ceil(data.n / batch)
        return trainer

    def _run(self, epochs: int, verbose: int) -> None:
        name = type(self).__name__

        def report(trainer, entry):
            logger.info("%s: step %d, training loss %.6g", name, entry["step"], entry["loss"])

        steps = epochs * self._steps_per_epoch
        self.history_ = self.trainer_.run(steps, log_every=self._steps_per_epoch, callback=report if verbose else None)
        self.n_iter_ += epochs
        self.t_ += steps

    # ---- outputs -----------------------------------------------------------------------
    def _outputs(self, X) -> np.ndarray:
        """The net's outputs (n, C) in training units; a zero point gives 0 (no neuron fires)."""
        check_is_fitted(self, "model_")
        data, _ = self._structure(X, reset=False)
        out = np.zeros((data.n, self.model_.outputs))  # (n, C)
        keep = data.norms() > 0  # (n,)
        if keep.any():
            out[keep] = self.model_.predict(data if keep.all() else data[keep]).reshape(-1, self.model_.outputs)
        return out

    def __getstate__(self):
        """Pickle without the trainer (it holds thread locks); partial_fit then starts a new one."""
        state = super().__getstate__()
        if state.get("trainer_") is not None:
            state = {**state, "trainer_": None, "_fingerprint": None}
        return state

    def __sklearn_tags__(self):  # scikit-learn >= 1.6
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.workers != 1  # several threads interleave updates by timing
        return tags

    def _more_tags(self):  # scikit-learn 1.4 and 1.5
        return {"non_deterministic": self.workers != 1}


def _fingerprint(data: KroneckerData, targets: np.ndarray) -> str:
    """Identifies a training set, so partial_fit on the same data continues the same trainer."""
    digest = hashlib.sha256()
    for array in (*data.factors, targets):
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()
