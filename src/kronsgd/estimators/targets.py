"""What the regressors and the classifiers of both model families share about their targets.

Each estimator provides ``_outputs(X)`` (n, C) in training units; these mixins turn outputs
into predictions and labels into one-hot targets the same way for KronMLP* and KronNTK*.
"""

from __future__ import annotations

import numpy as np

from ..base.errors import ValidationError


class MultiOutputRegression:
    """Numeric targets, one column or several (scikit-learn's multi-output tag)."""

    def _y_validation(self) -> dict:
        return {"y_numeric": True, "multi_output": True}

    def __sklearn_tags__(self):  # scikit-learn >= 1.6
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _more_tags(self):  # scikit-learn 1.4 and 1.5
        return {**getattr(super(), "_more_tags", dict)(), "multioutput": True}


class OneHotClassification:
    """Regression on one-hot targets: the largest output is the predicted class."""

    def decision_function(self, X):
        """Outputs (n, C); for two classes, output 1 minus output 0, shape (n,)."""
        out = self._outputs(X)  # (n, C)
        return out[:, 1] - out[:, 0] if out.shape[1] == 2 else out

    def predict(self, X):
        """Class labels (n,): the class of the largest output."""
        out = self._outputs(X)  # (n, C); first, so that an unfitted estimator says so
        return self.classes_[np.argmax(out, axis=1)]

    def _y_validation(self) -> dict:
        return {"multi_output": False}

    def _set_classes(self, labels: np.ndarray) -> None:
        """Keep ``labels`` (sorted) as classes_, refusing fewer than two."""
        if labels.size < 2:
            raise ValidationError(
                f"y must hold at least 2 classes to train {type(self).__name__}; it holds 1 class ({labels[0]!r})."
            )
        self.classes_ = labels

    def _one_hot(self, y) -> np.ndarray:
        """(n, C) one-hot rows of labels y, all in classes_."""
        return np.eye(self.classes_.size)[np.searchsorted(self.classes_, y)]
