"""scikit-learn estimators: KronNTKRegressor and KronNTKClassifier, the net's infinite-width limit.

At infinite width, gradient descent on the two-layer shifted-ReLU net (from f = 0) is kernel
ridge regression with its neural tangent kernel H[i, j] = <x_i, x_j> · Pr[Z_i > b, Z_j > b]
(``kronsgd.theory``). These estimators compute H from the Kronecker factors (never a
d-length vector), solve (H + αI) c = Y, and predict new points from their kernel rows to
the training points: f(x) = Σ_j H(x, x_j) c_j.
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from ..base.errors import ValidationError
from ..base.memory import require, resolve_budget
from ..model.net import default_shift, fire_fraction
from ..theory.kernel_model import KernelModel, kernel_outputs
from ..theory.ntk import ntk_gram
from .inputs import StructuredInputs, _checked
from .kernel_ridge import cholesky_solve, eigen_bytes, ridge_path
from .targets import MultiOutputRegression, OneHotClassification

DEFAULT_WIDTH = 1024  # shift=None takes the net's default threshold at this width, as KronMLP* does
ALPHA_GRID = np.logspace(-6, 1, 29)  # alpha="auto": candidates in units of H's mean diagonal, 4 per decade


class KronNTKBase(StructuredInputs, BaseEstimator):
    """Parameters and fitting shared by KronNTKRegressor and KronNTKClassifier (see their docs)."""

    def __init__(
        self,
        alpha="auto",
        shift=None,
        selection="loo",
        factor_shape="auto",
        rank="auto",
        energy=0.99,
        normalize=True,
        memory_budget=None,
    ):
        self.alpha = alpha
        self.shift = shift
        self.selection = selection
        self.factor_shape = factor_shape
        self.rank = rank
        self.energy = energy
        self.normalize = normalize
        self.memory_budget = memory_budget

    # ---- parameters --------------------------------------------------------------------
    def _check_alpha(self):
        """"auto", a positive float, or a 1-d array of positive floats (the candidates)."""
        alpha = self.alpha
        if isinstance(alpha, str) and alpha == "auto":
            return alpha
        expected = "'auto', a finite float in the range (0.0, inf), or a 1-d array of such floats"
        if isinstance(alpha, numbers.Real) and not isinstance(alpha, bool):
            if not (np.isfinite(alpha) and alpha > 0):
                raise self._invalid("alpha", expected)
            return float(alpha)
        try:
            grid = np.asarray(alpha, dtype=np.float64)
        except (TypeError, ValueError):
            raise self._invalid("alpha", expected) from None
        if grid.ndim != 1 or grid.size == 0 or not np.all(np.isfinite(grid)) or not np.all(grid > 0):
            raise self._invalid("alpha", expected)
        return grid

    def _check_params(self) -> dict:
        """Validate every parameter at fit time (scikit-learn convention: __init__ only stores)."""
        params = {
            "alpha": self._check_alpha(),
            "shift": default_shift(DEFAULT_WIDTH) if self.shift is None else self._check_real("shift", 0.0),
            "rank": self._check_int("rank", 1, auto_ok=True),
            "energy": self._check_real("energy", 0.0, 1.0, low_open=True),
            "memory_budget": self._check_int("memory_budget", 1, none_ok=True),
        }
        if not (isinstance(self.selection, str) and self.selection in ("loo", "gcv")):
            raise self._invalid("selection", "'loo' or 'gcv'")
        if not isinstance(self.normalize, (bool, np.bool_)):
            raise self._invalid("normalize", "a bool")
        if not isinstance(self.factor_shape, (str, tuple, list)):
            raise self._invalid("factor_shape", "'auto', a tuple of ints such as (8, 8), or a str such as '8x8'")
        return params

    # ---- fitting -----------------------------------------------------------------------
    def _fit(self, X, y, **target_args):
        params = self._check_params()
        for name in ("dual_coef_", "X_fit_"):  # a failed fit leaves nothing to predict with
            self.__dict__.pop(name, None)
        data, y = self._structure(X, reset=True, y=y, validate_y=self._y_validation())
        targets = self._encode_targets(y, **target_args)  # (n, C)
        keep = data.norms() > 0  # (n,) a zero point has no direction, and H(x, 0) = 0
        if not keep.any():
            raise ValidationError(
                f"X has no point with a nonzero norm; {type(self).__name__} cannot learn from zero vectors."
            )
        data, targets = (data, targets) if keep.all() else (data[keep], targets[keep])
        self._check_norms(data, "X")
        n, alpha = data.n, params["alpha"]
        budget = resolve_budget(params["memory_budget"])
        # The evd driver needs one more n x n array of workspace: take it when the budget allows.
        candidates = ALPHA_GRID.size if isinstance(alpha, str) else np.size(alpha)
        evd = 8 * n * n + eigen_bytes(n, True, candidates, targets.shape[1]) <= budget
        if isinstance(alpha, float):
            need = 8 * n * n + 8 * n * 2 * targets.shape[1]  # H factored in place, and the solution
        else:
            need = 8 * n * n + eigen_bytes(n, evd, candidates, targets.shape[1])
        arrays = f"one {n} x {n} float64 matrix" if isinstance(alpha, float) else f"two {n} x {n} float64 matrices"
        require(
            need,
            budget,
            f"{type(self).__name__}.fit on n = {n} points ({arrays})",
            f"Pass a larger memory_budget (bytes), or train KronMLP{self._kind}/KronSGD instead: their memory "
            "grows as width x n, not n².",
        )
        self.shift_ = params["shift"]
        H = ntk_gram(data, self.shift_, normalize=bool(self.normalize))  # (n, n)
        if isinstance(alpha, float):
            self.alpha_, self.alphas_, self.cv_errors_ = alpha, None, None
            rebuild = lambda: ntk_gram(data, self.shift_, normalize=bool(self.normalize))  # noqa: E731 - if needed
            self.dual_coef_ = cholesky_solve(H, targets, alpha, rebuild=rebuild)  # (n, C), H factored in place
        else:
            # Unit points have H_ii = Φ̄(b); otherwise the grid follows the mean diagonal.
            scale = fire_fraction(self.shift_) if self.normalize else float(np.mean(np.diag(H)))
            grid = scale * ALPHA_GRID if isinstance(alpha, str) else alpha
            path = ridge_path(H, targets, grid, self.selection, evd=evd)
            self.alpha_, self.alphas_, self.cv_errors_ = float(grid[path.best]), grid, path.errors
            self.dual_coef_ = path.dual_coef  # (n, C)
        self.X_fit_ = data
        return self

    def _outputs(self, X) -> np.ndarray:
        """Kernel predictions (n, C) in training units; a zero point gives 0 (H(0, x) = 0)."""
        check_is_fitted(self, "dual_coef_")
        data, _ = self._structure(X, reset=False)
        return kernel_outputs(data, self.X_fit_, self.dual_coef_, self.shift_, bool(self.normalize))  # (n, C)

    @property
    def kernel_model_(self) -> KernelModel:
        """The fitted model as a ``KernelModel``: predicts, saves (``.save(path)``) and loads without
        scikit-learn, on factors of the fitted ``factor_shape_``."""
        check_is_fitted(self, "dual_coef_")
        return KernelModel(self.X_fit_, self.dual_coef_, shift=self.shift_, normalize=bool(self.normalize),
                           alpha=self.alpha_, **self._model_outputs())  # fmt: skip

    def _check_norms(self, data, name: str) -> None:
        """Without normalize, inner products of points beyond float64's range have no kernel."""
        if not self.normalize and not np.all(np.isfinite(data.norms() ** 2)):
            raise ValidationError(
                f"{name} has points whose squared norm overflows float64; rescale them or use normalize=True."
            )


_PARAMETERS = """
    alpha : "auto", float > 0 or 1-d array of floats > 0, default "auto"
        Ridge α of (H + αI) c = y. "auto" tries 29 values from 1e-6 to 10 times H's mean
        diagonal (Φ̄(b) for unit points; 4 per decade) and keeps the best by ``selection``, all from one
        eigendecomposition of H (about 9 n³ flops); an array gives the candidates itself; a
        float is solved by Cholesky (n³ / 3 flops).
    shift : float >= 0 or None, default None
        The net's ReLU threshold b; None means the default of KronMLP* at their default
        width 1024, sqrt(0.4 ln 1024) = 1.665 (a unit point's diagonal Φ̄(b) = 0.048).
    selection : "loo" or "gcv", default "loo"
        How a list of α is judged: exact leave-one-out squared error, or generalised
        cross-validation (as scikit-learn's RidgeCV).
    factor_shape : "auto", tuple of ints or str such as "8x8", default "auto"
        How dense X (n, d) is read as Kronecker factors (``KroneckerData.from_dense``);
        unused when X is given as factors.
    rank : "auto" or int, default "auto"
        Terms kept at every split of dense X; "auto" keeps ``energy`` of the training set's
        squared norm. New points are structured with the fitted ``rank_``.
    energy : float in (0, 1], default 0.99
        Share of the squared norm of dense X that rank="auto" keeps.
    normalize : bool, default True
        Scale every point to unit norm, as the net does by default. Without, a point of norm
        s fires a neuron when a standard normal exceeds b / s, and the kernel is
        <x_i, x_j> · Pr[Z1 > b / s_i, Z2 > b / s_j] (the net with normalize=False).
    memory_budget : int or None, default None
        Bytes fit may allocate for its n x n matrices (one for a float alpha, two for a
        list or "auto", three when the faster eigensolver fits); None means half the free
        memory. Above it, fit
        raises MemoryBudgetError: for larger n use KronMLP* or KronSGD (memory width x n).
"""

_ATTRIBUTES = """
    alpha_ : float
        The ridge α used.
    alphas_ : ndarray (A,) or None
        The candidates tried (None for a float alpha).
    cv_errors_ : ndarray (A,) or None
        Their mean squared leave-one-out residual, or GCV score.
    shift_ : float
        The threshold b of the kernel.
    dual_coef_ : ndarray (n, C)
        c of (H + αI) c = Y over the nonzero training points.
    X_fit_ : KroneckerData
        The structured training points (zero points left out), which predict needs.
    kernel_model_ : KernelModel
        What prediction needs, as a model that saves and loads (``kronsgd.load``) and predicts
        on factors without scikit-learn.
    n_features_in_ : int
        d, the number of features.
    feature_names_in_ : ndarray of str
        Column names, when X had them.
    factor_shape_ : tuple of int
        Factor dimensions (d_1, ..., d_k) of the structured inputs.
    rank_ : int
        Terms kept at every split when new dense points are structured.
"""

_NOTES = """
    ``fit`` and the predict methods accept dense X (n, d), a ``KroneckerData``, or a list of
    NumPy factor arrays each (n, d_l) or (n, R, d_l). Memory is n² (the kernel and its
    factorisation) and the work n² R² Σ d_l for the kernel plus n³ for the solve: the right
    tool up to n of a few tens of thousands. Predicting k points costs k · n kernel entries.
"""


class KronNTKRegressor(MultiOutputRegression, RegressorMixin, KronNTKBase):
    """Kernel ridge regression with the net's neural tangent kernel, from Kronecker factors.

    Targets are centred (as the net's outputs start near 0): ``predict(X) = H(X, X_fit_)
    dual_coef_ + y_mean_``. Multi-output y (n, k) is supported.

    Parameters
    ----------%(parameters)s

    Attributes
    ----------%(attributes)s
    y_mean_ : ndarray (k,)
        Mean of each target column.

    Notes
    -----%(notes)s

    Examples
    --------
    >>> import numpy as np
    >>> from kronsgd import KronNTKRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 12))
    >>> y = np.sin(X[:, 0]) + X[:, 1]
    >>> reg = KronNTKRegressor().fit(X, y)
    >>> reg.factor_shape_, reg.predict(X[:3]).shape
    ((2, 6), (3,))
    >>> X_new = rng.normal(size=(200, 12))
    >>> bool(reg.score(X_new, np.sin(X_new[:, 0]) + X_new[:, 1]) > 0.8)
    True
    """

    _kind = "Regressor"

    def fit(self, X, y):
        """Build the kernel of X, choose α (alpha="auto") and solve; returns self.

        Parameters
        ----------
        X : array-like (n, d), KroneckerData or list of factor arrays
        y : array-like (n,) or (n, k)
        """
        return self._fit(X, y)

    def predict(self, X):
        """Predicted targets, (n,) or (n, k) like the y given to fit."""
        out = self._outputs(X) + self.y_mean_  # (n, k)
        return out[:, 0] if self._y_ndim == 1 else out

    def _model_outputs(self) -> dict:
        return {"offset": self.y_mean_, "squeeze": self._y_ndim == 1}

    def _encode_targets(self, y) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        y2 = y.reshape(len(y), -1)  # (n, k)
        self._y_ndim = y.ndim
        self.y_mean_ = y2.mean(axis=0)  # (k,)
        return y2 - self.y_mean_


class KronNTKClassifier(OneHotClassification, ClassifierMixin, KronNTKBase):
    """Kernel ridge classification with the net's neural tangent kernel, from Kronecker factors.

    Regression on one-hot targets, as KronMLPClassifier trains the net: output c estimates
    P(class c | x). ``predict`` takes the largest output; ``decision_function`` returns the
    outputs (n, C), or output 1 minus output 0 (n,) for two classes.

    Parameters
    ----------%(parameters)s

    Attributes
    ----------%(attributes)s
    classes_ : ndarray (C,)
        The class labels, sorted.

    Notes
    -----%(notes)s

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from kronsgd import KronNTKClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = KronNTKClassifier().fit(X[:500], y[:500])
    >>> clf.factor_shape_, clf.decision_function(X[500:502]).shape
    ((8, 8), (2, 10))
    >>> bool(clf.score(X[500:800], y[500:800]) > 0.9)
    True
    """

    _kind = "Classifier"

    def fit(self, X, y):
        """Build the kernel of X, choose α (alpha="auto") and solve on one-hot targets; returns self.

        Parameters
        ----------
        X : array-like (n, d), KroneckerData or list of factor arrays
        y : array-like (n,) of class labels, at least two distinct
        """
        return self._fit(X, y)

    def _model_outputs(self) -> dict:
        return {"classes": self.classes_}

    def _encode_targets(self, y) -> np.ndarray:
        _checked(check_classification_targets, y)
        self._set_classes(np.unique(y))
        return self._one_hot(y)  # (n, C)


for _cls in (KronNTKRegressor, KronNTKClassifier):
    for _key, _text in (("parameters", _PARAMETERS), ("attributes", _ATTRIBUTES), ("notes", _NOTES)):
        _cls.__doc__ = _cls.__doc__.replace(f"%({_key})s", _text.rstrip())
