"""scikit-learn estimators: KronMLPRegressor and KronMLPClassifier over TwoLayerNet and KronSGD."""

from __future__ import annotations

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets

from ..base.errors import ValidationError
from .base import KronMLPBase
from .targets import MultiOutputRegression, OneHotClassification

_PARAMETERS = """
    width : int, default 1024
        Hidden neurons m.
    shift : float >= 0 or None, default None
        ReLU threshold b; None means sqrt(0.4 ln m), where a neuron fires on ~5% of unit
        inputs at m = 1024.
    lr : float > 0, default 4.0
        Step size in units of the network's kernel at initialisation: the trainer's
        η = lr / (batch_size · Φ̄(b)) on the summed batch loss, because one unit point's
        kernel K(x, x) = (1/m) Σ_r 1[<w_r, x> > b] is about Φ̄(b). lr = 1 would fit a batch
        of identical points in one step; batches of distinct points tolerate more. The
        same lr therefore works across width and batch_size.
    batch_size : int, default 32
        Points per SGD step; clipped to the number of training points.
    max_iter : int or "auto", default "auto"
        Epochs (passes over the training points, ceil(n / batch_size) steps each).
        "auto": 20 epochs, and at least 500 steps on small data sets.
    factor_shape : "auto", tuple of ints or str such as "8x8", default "auto"
        How dense X (n, d) is read as Kronecker factors (``KroneckerData.from_dense``);
        "auto" picks the factor pair of d that stores X in the fewest numbers, or the
        trivial (1, d) when d is 1 or prime (then every point is exact at rank 1). Unused
        when X is given as factors.
    rank : "auto" or int, default "auto"
        Terms kept at every split of dense X; "auto" keeps ``energy`` of the training
        set's squared norm. New points are structured with the fitted ``rank_``.
    energy : float in (0, 1], default 0.99
        Share of the squared norm of dense X that rank="auto" keeps.
    normalize : bool, default True
        Scale every point to unit norm, as the theory assumes.
    dtype : "float64" or "float32", default "float64"
        Precision of the trainer's P, alpha and Gram matrix. float64 by default: at the sizes
        scikit-learn is used for, P and G take little memory, and float64 keeps runs
        reproducible and equal to dense SGD to ~1e-10; float32 halves memory and the
        memory-bound step time for large n.
    workers : int, default 1
        Trainer threads (asynchronous SGD), at most n // batch_size. With more than one,
        results depend on thread timing.
    memory_budget : int or None, default None
        Bytes the trainer may allocate; None means half the free memory.
    random_state : int, RandomState instance or None, default None
        Seeds the initial weights and the batches; an int is used as ``seed_`` itself.
    verbose : int, default 0
        Above 0, log the training loss every epoch to the "kronsgd" logger (INFO level).
    init : "gaussian" or "kronecker", default "gaussian"
        The initial first layer (``TwoLayerNet``): Gaussian w_r(0) ~ N(0, I_d), or a sum of
        ``init_rank`` Gaussian Kronecker products scaled to the same covariance, whose
        set-up and prediction cost does not grow with d.
    init_rank : int >= 1 or None, default None
        K of init="kronecker" (None: 16); must be None with init="gaussian".
"""

_ATTRIBUTES = """
    model_ : TwoLayerNet
        The trained net, on structured inputs (``factor_shape_``), in training units.
    trainer_ : KronSGD or None
        The trainer of the last (partial_)fit; None after unpickling (partial_fit then
        starts a new trainer over the same net).
    history_ : list of dict
        The trainer's history, one record per epoch (step, loss, fired, seconds, ...).
    n_features_in_ : int
        d, the number of features.
    feature_names_in_ : ndarray of str
        Column names, when X had them.
    factor_shape_ : tuple of int
        Factor dimensions (d_1, ..., d_k) of the structured inputs.
    rank_ : int
        Terms kept at every split when new dense points are structured.
    seed_ : int
        The seed of the net (W0 and a) and of the batches.
    n_iter_ : int
        Epochs run so far, over fit and partial_fit calls.
    t_ : int
        SGD steps run so far.
"""

_NOTES = """
    ``fit`` and the predict methods accept dense X (n, d), a ``KroneckerData``, or a list of
    NumPy factor arrays each (n, d_l) or (n, R, d_l). A point that is exactly zero has no
    direction: it carries no gradient (∂f/∂w ∝ x = 0), is skipped in training, and gets
    the output 0 of the net at the origin. ``partial_fit`` runs one epoch: on the data of
    the last call it continues the same trainer; on new data it starts a new trainer over
    the same net (its pre-activations start from the current weights), which adds the new
    points to the net's support, so memory and prediction cost grow with every new set.
"""


class KronMLPRegressor(MultiOutputRegression, RegressorMixin, KronMLPBase):
    """Two-layer shifted-ReLU network trained by Kronecker SGD, as a scikit-learn regressor.

    Targets are standardised per column for training (the net's outputs start near 0 with
    scale 1 and a is fixed), and predictions are mapped back:
    ``predict(X) = model_ outputs · y_scale_ + y_mean_``. Multi-output y (n, k) is supported.

    Parameters
    ----------%(parameters)s

    Attributes
    ----------%(attributes)s
    y_mean_ : ndarray (k,)
        Mean of each target column.
    y_scale_ : ndarray (k,)
        Standard deviation of each target column (1 where it is 0).

    Notes
    -----%(notes)s

    Examples
    --------
    >>> import numpy as np
    >>> from kronsgd import KronMLPRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 12))
    >>> y = np.sin(X[:, 0]) + X[:, 1]
    >>> reg = KronMLPRegressor(width=256, random_state=0).fit(X, y)
    >>> reg.factor_shape_, reg.predict(X[:3]).shape
    ((2, 6), (3,))
    >>> X_new = rng.normal(size=(200, 12))
    >>> bool(reg.score(X_new, np.sin(X_new[:, 0]) + X_new[:, 1]) > 0.8)
    True
    """

    def fit(self, X, y):
        """Train a new net on (X, y) for ``max_iter`` epochs; returns self.

        Parameters
        ----------
        X : array-like (n, d), KroneckerData or list of factor arrays
        y : array-like (n,) or (n, k)
        """
        return self._train(X, y, partial=False)

    def partial_fit(self, X, y):
        """One more epoch of SGD on (X, y); the first call starts the net. Returns self."""
        return self._train(X, y, partial=True)

    def predict(self, X):
        """Predicted targets, (n,) or (n, k) like the y given to fit."""
        out = self._outputs(X) * self.y_scale_ + self.y_mean_  # (n, k)
        return out[:, 0] if self._y_ndim == 1 else out

    def _encode_targets(self, y, *, first: bool) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        y2 = y.reshape(len(y), -1)  # (n, k)
        if first:
            self._y_ndim = y.ndim
            self.y_mean_ = y2.mean(axis=0)  # (k,)
            scale = y2.std(axis=0)  # (k,)
            self.y_scale_ = np.where(scale > 0, scale, 1.0)
        elif y2.shape[1] != self.y_mean_.size:
            raise ValidationError(
                f"y has {y2.shape[1]} target column(s), but {type(self).__name__} was fitted on {self.y_mean_.size}."
            )
        return (y2 - self.y_mean_) / self.y_scale_


class KronMLPClassifier(OneHotClassification, ClassifierMixin, KronMLPBase):
    """Two-layer shifted-ReLU network trained by Kronecker SGD, as a scikit-learn classifier.

    Trained by squared loss on one-hot targets: output c estimates P(class c | x), one
    output per class (two for a binary problem). ``predict`` takes the largest output;
    ``decision_function`` returns the outputs (n, C), or output 1 minus output 0 (n,) for
    two classes; ``predict_proba`` is softmax(C · outputs), the softmax whose derivative at
    the uniform distribution is the identity on the simplex, so outputs that already are
    near-uniform probabilities keep their values to first order. Rows are positive, sum to 1, and keep
    the order of the outputs (argmax predict_proba == predict).

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
    >>> from kronsgd import KronMLPClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = KronMLPClassifier(width=256, random_state=0).fit(X[:500], y[:500])
    >>> clf.factor_shape_, clf.predict_proba(X[500:502]).shape
    ((8, 8), (2, 10))
    >>> bool(clf.score(X[500:800], y[500:800]) > 0.8)
    True
    """

    def fit(self, X, y):
        """Train a new net on (X, y) for ``max_iter`` epochs; returns self.

        Parameters
        ----------
        X : array-like (n, d), KroneckerData or list of factor arrays
        y : array-like (n,) of class labels, at least two distinct
        """
        return self._train(X, y, partial=False)

    def partial_fit(self, X, y, classes=None):
        """One more epoch of SGD on (X, y); returns self.

        ``classes`` (every label that will ever be seen) is required on the first call.
        """
        if classes is not None:
            classes = np.unique(np.asarray(classes))
            if hasattr(self, "classes_") and not np.array_equal(classes, self.classes_):
                raise ValidationError(
                    f"classes={classes.tolist()} differs from the classes_ of the first call, {self.classes_.tolist()}."
                )
        elif not hasattr(self, "classes_"):
            raise ValidationError("classes must be passed on the first call to partial_fit (every label of y).")
        return self._train(X, y, partial=True, classes=classes)

    def predict_proba(self, X):
        """Class probabilities (n, C): softmax(C · outputs), rows positive and summing to 1."""
        out = self._outputs(X)  # (n, C)
        z = out.shape[1] * (out - out.max(axis=1, keepdims=True))  # (n, C), <= 0: no overflow
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def _encode_targets(self, y, *, first: bool, classes=None) -> np.ndarray:
        check_classification_targets(y)
        if first:
            self._set_classes(np.unique(y) if classes is None else classes)
        unknown = np.setdiff1d(np.unique(y), self.classes_)
        if unknown.size:
            raise ValidationError(
                f"y holds label(s) {unknown.tolist()} not in classes_ {self.classes_.tolist()}; pass every "
                "label in classes= on the first call to partial_fit."
            )
        return self._one_hot(y)  # (n, C)


for _cls in (KronMLPRegressor, KronMLPClassifier):
    for _key, _text in (("parameters", _PARAMETERS), ("attributes", _ATTRIBUTES), ("notes", _NOTES)):
        _cls.__doc__ = _cls.__doc__.replace(f"%({_key})s", _text.rstrip())
