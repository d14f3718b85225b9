"""KernelModel: a fitted NTK kernel ridge model that predicts, saves and loads without scikit-learn.

What ``KronNTKRegressor``/``KronNTKClassifier`` learn, reduced to what prediction needs:

    f(x) = Σ_j H(x, x_j) c_j + offset        H: the net's infinite-width NTK (``ntk_cross``)

the training points x_j (Kronecker factors), the dual coefficients c (n, C), the threshold b,
whether points are scaled to unit norm, the ridge α it was solved with, and either the target
means (a regressor: ``offset``) or the class labels (a classifier: offset 0, a label per
output column). The file format is in kernel_files.py; ``kronsgd.load`` reads either kind of
model file (theory/load.py).
"""

from __future__ import annotations

import numpy as np

from ..base.errors import ValidationError
from ..base.memory import require, resolve_budget
from ..base.validation import check_float
from ..data.kronecker import KroneckerData
from ..model.net import as_data
from .gram import BLOCK_BYTES
from .ntk import ntk_cross, ntk_gram


def kernel_outputs(data: KroneckerData, support: KroneckerData, dual_coef: np.ndarray, shift: float,
                   normalize: bool) -> np.ndarray:  # fmt: skip
    """Σ_j H(x_i, s_j) c_j for every point x_i, in blocks of kernel rows. Returns (n, C).

    A zero point gives 0 (H(0, x) = 0: it has no direction to fire along).

    Parameters
    ----------
    data : KroneckerData, n points
    support : KroneckerData, n_s training points of the same dims
    dual_coef : ndarray (n_s, C)
    shift : float >= 0
    normalize : bool
    """
    out = np.zeros((data.n, dual_coef.shape[1]))  # (n, C)
    keep = np.flatnonzero(data.norms() > 0)  # (k,)
    rows = max(1, BLOCK_BYTES // (8 * support.n))  # one (rows, n_s) kernel block at a time
    for start in range(0, keep.size, rows):
        chunk = data[keep[start : start + rows]]
        if not normalize and not np.all(np.isfinite(chunk.norms() ** 2)):
            raise ValidationError(
                "X has points whose squared norm overflows float64; rescale them or use normalize=True."
            )
        kernel = ntk_cross(chunk, support, shift, normalize=normalize)  # (rows, n_s)
        out[keep[start : start + rows]] = kernel @ dual_coef  # (rows, C)
    return out


class KernelModel:
    """A fitted kernel ridge model with the net's NTK, from Kronecker factors.

    Usually obtained from a fitted estimator (``KronNTKRegressor().fit(X, y).kernel_model_``),
    from ``kronsgd train --solver kernel``, or from ``kronsgd.load``.

    Parameters
    ----------
    support : KroneckerData or list of factor arrays
        The n training points (zero points left out).
    dual_coef : array-like (n, C)
        c of (H + αI) c = Y.
    shift : float >= 0
        The threshold b of the kernel.
    normalize : bool
        Points scaled to unit norm before the kernel.
    alpha : float > 0
        The ridge α the coefficients were solved with (kept for the record).
    offset : array-like (C,), optional
        Added to every output: a regressor's target means (default 0).
    classes : array-like (C,), optional
        A classifier's labels, one per output column; None for a regressor.
    squeeze : bool, default False
        ``predict`` returns (n,) rather than (n, 1) for one output (a regressor fitted on 1-d y).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> support = KroneckerData([rng.normal(size=(4, 3)), rng.normal(size=(4, 2))])
    >>> model = KernelModel(support, np.ones((4, 1)), shift=0.5, normalize=True, alpha=1e-3, squeeze=True)
    >>> model.predict(support[:2]).shape, model.outputs, model.dims
    ((2,), 1, (3, 2))
    """

    def __init__(self, support, dual_coef, *, shift, normalize, alpha, offset=None, classes=None, squeeze=False):
        self.support = as_data(support, "support")
        coef = np.asarray(dual_coef, dtype=np.float64)
        if coef.ndim != 2 or coef.shape[0] != self.support.n or not np.all(np.isfinite(coef)):
            raise ValidationError(
                f"dual_coef must be a finite float array of shape ({self.support.n}, C), one row per support "
                f"point. Got shape {coef.shape}."
            )
        self.dual_coef = coef  # (n, C)
        self.shift = check_float(shift, "shift", low=0.0)
        if not isinstance(normalize, (bool, np.bool_)):
            raise ValidationError(f"normalize must be a bool. Got {normalize!r}.")
        self.normalize = bool(normalize)
        self.alpha = check_float(alpha, "alpha", low=0.0, low_inclusive=False)
        C = coef.shape[1]
        self.offset = np.zeros(C) if offset is None else np.asarray(offset, dtype=np.float64).reshape(-1)  # (C,)
        if self.offset.shape != (C,) or not np.all(np.isfinite(self.offset)):
            raise ValidationError(f"offset must be {C} finite floats, one per output. Got shape {self.offset.shape}.")
        self.classes = None if classes is None else np.asarray(classes)  # (C,)
        if self.classes is not None and (self.classes.shape != (C,) or self.classes.dtype == object):
            raise ValidationError(
                f"classes must be {C} labels (numbers or strings), one per output column. "
                f"Got {self.classes.shape} of dtype {self.classes.dtype}."
            )
        if squeeze and (C != 1 or self.classes is not None):
            raise ValidationError(f"squeeze=True needs a regressor with one output. Got {C} outputs.")
        self.squeeze = bool(squeeze)

    # ---- description -------------------------------------------------------------------
    @property
    def kind(self) -> str:
        """The kind of model: "classifier" or "regressor"."""
        return "regressor" if self.classes is None else "classifier"

    @property
    def dims(self) -> tuple[int, ...]:
        return self.support.dims

    @property
    def d(self) -> int:
        return self.support.d

    @property
    def n(self) -> int:
        """Training points the model keeps."""
        return self.support.n

    @property
    def outputs(self) -> int:
        """Output columns C."""
        return self.dual_coef.shape[1]

    def __repr__(self) -> str:
        return (
            f"KernelModel({self.kind}, n={self.n}, dims={self.dims}, outputs={self.outputs}, "
            f"shift={self.shift:.4g}, alpha={self.alpha:.3g})"
        )

    # ---- prediction --------------------------------------------------------------------
    def decision_function(self, data) -> np.ndarray:
        """Outputs (n, C): kernel rows to the training points times ``dual_coef``, plus ``offset``."""
        data = as_data(data)
        if data.dims != self.dims:
            raise ValidationError(f"data must have the factor dims {self.dims} of the model. Got {data.dims}.")
        return kernel_outputs(data, self.support, self.dual_coef, self.shift, self.normalize) + self.offset

    def predict(self, data) -> np.ndarray:
        """Outputs like ``TwoLayerNet.predict``: (n,) for a squeezed single output, else (n, C).

        A classifier's outputs estimate P(class | x) column by column; ``predict_labels`` turns
        them into labels.
        """
        out = self.decision_function(data)  # (n, C)
        return out[:, 0] if self.squeeze else out

    def predict_labels(self, data) -> np.ndarray:
        """A classifier's labels (n,): the class of the largest output."""
        if self.classes is None:
            raise ValidationError("predict_labels needs a classifier model; this one is a regressor.")
        return self.classes[np.argmax(self.decision_function(data), axis=1)]

    def save(self, path) -> None:
        """Write the model to ``path`` (.npz) atomically, in the checked format of kernel_files.py."""
        from .kernel_files import save_kernel_model

        save_kernel_model(self, path)


def fit_kernel_model(data, y, *, alpha: float, shift: float, normalize: bool = True, classify: bool = False,
                     memory_budget=None) -> KernelModel:  # fmt: skip
    """Kernel ridge with the net's NTK for a fixed α, by NumPy alone (no scikit-learn, no SciPy).

    The same model as ``KronNTKRegressor(alpha=alpha)`` (targets centred) or
    ``KronNTKClassifier(alpha=alpha)`` (one-hot targets over the sorted labels), fitted on
    the same points: zero points are left out, H is built from the factors, and
    (H + αI) c = Y is solved by LU (``numpy.linalg.solve``; the estimators use Cholesky, so
    the two agree to rounding). α chosen by cross-validation needs the estimators.

    Parameters
    ----------
    data : KroneckerData or list of factor arrays, n points
    y : array-like (n,) or (n, k) targets, or (n,) class labels with ``classify``
    alpha : float > 0
    shift : float >= 0
    normalize : bool, default True
    classify : bool, default False
    memory_budget : int or None
        Bytes for the two n x n float64 arrays (H, and the copy LAPACK factors); None means
        half the free memory.

    Returns
    -------
    KernelModel
    """
    data = as_data(data)
    alpha = check_float(alpha, "alpha", low=0.0, low_inclusive=False)
    shift = check_float(shift, "shift", low=0.0)
    y = np.asarray(y)
    if y.ndim not in (1, 2) or y.shape[0] != data.n or (classify and y.ndim != 1):
        expected = f"({data.n},)" if classify else f"({data.n},) or ({data.n}, k)"
        raise ValidationError(f"y must have shape {expected}, one row per point. Got shape {y.shape}.")
    if classify:
        classes, codes = np.unique(y, return_inverse=True)
        if classes.size < 2:
            raise ValidationError(f"y must hold at least 2 classes to train a classifier; it holds {classes.size}.")
        targets, offset = np.eye(classes.size)[codes.reshape(-1)], None  # (n, C) one-hot
    else:
        classes, y2 = None, y.astype(np.float64).reshape(data.n, -1)  # (n, k)
        offset = y2.mean(axis=0)  # (k,)
        targets = y2 - offset
    keep = data.norms() > 0  # (n,) a zero point has no direction, and H(x, 0) = 0
    if not keep.any():
        raise ValidationError("data has no point with a nonzero norm; a kernel model cannot learn from zero vectors.")
    data, targets = (data, targets) if keep.all() else (data[keep], targets[keep])
    n = data.n
    require(
        16 * n * n + 16 * n * targets.shape[1],
        resolve_budget(memory_budget),
        f"the kernel solve on n = {n} points (two {n} x {n} float64 matrices)",
        "Pass a larger memory budget, or train KronSGD instead: its memory grows as width x n, not n².",
    )
    H = ntk_gram(data, shift, normalize=normalize)  # (n, n)
    H.flat[:: n + 1] += alpha
    coef = np.linalg.solve(H, targets)  # (n, C)
    return KernelModel(data, coef, shift=shift, normalize=normalize, alpha=alpha, offset=offset, classes=classes,
                       squeeze=not classify and y.ndim == 1)  # fmt: skip
