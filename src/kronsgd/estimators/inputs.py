"""What every kronsgd estimator shares: scikit-learn's parameter messages and structured inputs.

Dense X (n, d) is validated by scikit-learn and read as Kronecker factors through
``factor_shape``, ``rank`` and ``energy`` (``KroneckerData.from_dense``); a KroneckerData or
a list of factor arrays is taken as it is.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ..base.errors import ValidationError
from ..data.kronecker import KroneckerData
from ..data.structure import check_rank_fits, parse_shape

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data
except ImportError:  # scikit-learn 1.4 and 1.5: the same checks, as a method

    def validate_data(estimator, /, X="no_validation", y="no_validation", **kwargs):
        return estimator._validate_data(X, y, **kwargs)


def is_kronecker_input(X) -> bool:
    """A KroneckerData, or a list/tuple of NumPy factor arrays (each (n, d_l) or (n, R, d_l))."""
    if isinstance(X, KroneckerData):
        return True
    return (
        isinstance(X, (list, tuple)) and len(X) > 0 and all(isinstance(f, np.ndarray) and f.ndim in (2, 3) for f in X)
    )


class StructuredInputs:
    """Mixin: parameter checks with scikit-learn's messages, and X read as Kronecker factors.

    The estimator has the parameters ``factor_shape``, ``rank`` and ``energy``.
    """

    # ---- parameters --------------------------------------------------------------------
    def _invalid(self, name: str, expected: str) -> ValidationError:
        value = getattr(self, name)
        return ValidationError(
            f"The '{name}' parameter of {type(self).__name__} must be {expected}. Got {value!r} instead."
        )

    def _check_int(self, name: str, low: int, none_ok: bool = False, auto_ok: bool = False) -> int | None:
        value = getattr(self, name)
        if (none_ok and value is None) or (auto_ok and isinstance(value, str) and value == "auto"):
            return value
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            expected = f"an int in the range [{low}, inf)"
            expected += " or None" if none_ok else ""
            expected += " or 'auto'" if auto_ok else ""
            raise self._invalid(name, expected)
        return int(value)

    def _check_real(self, name: str, low: float, high: float = math.inf, low_open: bool = False) -> float:
        value = getattr(self, name)
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and (value > low if low_open else value >= low) and value <= high
        if not ok:
            left = "(" if low_open else "["
            right = "inf)" if high == math.inf else f"{high}]"
            raise self._invalid(name, f"a finite float in the range {left}{low}, {right}")
        return float(value)

    # ---- inputs ------------------------------------------------------------------------
    def _structure(self, X, *, reset: bool, y=None, validate_y: dict | None = None):
        """Points as a KroneckerData (and y validated when ``validate_y`` is given).

        Dense X (n, d) is validated by scikit-learn and structured by ``from_dense``: at fit
        with ``factor_shape``, ``rank`` and ``energy``; afterwards with the fitted
        ``factor_shape_`` and a fixed ``rank_``, so a point's factors never depend on the
        other points passed with it.
        """
        if is_kronecker_input(X):
            if validate_y is not None and y is None:
                raise ValidationError(f"{type(self).__name__} requires y to be passed, but the target y is None.")
            data = X if isinstance(X, KroneckerData) else KroneckerData(X)
            if reset:
                self.factor_shape_, self.rank_, self.n_features_in_ = data.dims, data.rank, data.d
                if hasattr(self, "feature_names_in_"):
                    del self.feature_names_in_
            elif data.dims != self.factor_shape_:
                raise ValidationError(
                    f"X has factor dims {data.dims}, but {type(self).__name__} was fitted on factor dims "
                    f"{self.factor_shape_}."
                )
            if validate_y is not None:
                y = _checked(validate_data, self, "no_validation", y, **validate_y)
                if len(y) != data.n:
                    raise ValidationError(f"X has {data.n} points but y has {len(y)} values; they must match.")
            return data, y
        if validate_y is not None:
            X, y = _checked(validate_data, self, X, y, reset=reset, dtype=np.float64, **validate_y)
        else:
            X = _checked(validate_data, self, X, reset=reset, dtype=np.float64)
        if reset:
            try:
                dims = parse_shape(self.factor_shape, X.shape[1])
            except ValidationError as exc:
                raise ValidationError(f"The 'factor_shape' parameter of {type(self).__name__}: {exc}") from None
            data = KroneckerData.from_dense(X, shape=dims or "auto", rank=self.rank, energy=self.energy)
            self.factor_shape_ = data.dims
            self.rank_ = _fixed_rank(data.dims, max(data.level_ranks))
            return data, y
        return KroneckerData.from_dense(
            X, shape=self.factor_shape_, rank=_fixed_rank(self.factor_shape_, self.rank_)
        ), y


def _checked(check, *args, **kwargs):
    """Run a scikit-learn check; its ValueError comes back as a ValidationError with the same message."""
    try:
        return check(*args, **kwargs)
    except ValidationError:
        raise
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


def _fixed_rank(dims: tuple[int, ...], rank: int) -> int:
    """The rank kept at every split when structuring new points: at most each split allows."""
    for level in range(len(dims) - 1):
        rank = min(rank, dims[level], math.prod(dims[level + 1 :]))
    check_rank_fits(rank, dims)
    return rank
