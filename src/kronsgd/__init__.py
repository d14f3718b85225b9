"""kronsgd: train two-layer networks on Kronecker-structured data with SGD whose step cost
does not depend on the input dimension (Song & Ye, arXiv:2305.08001)."""

import importlib.util

from . import theory
from ._checkpoint import resume
from ._data import KroneckerData
from ._dense import DenseSGD
from ._errors import DivergenceError, KronsgdError, MemoryBudgetError, ValidationError
from ._inspect import StructureReport, inspect
from ._io import load
from ._model import TwoLayerNet
from ._trainer import KronSGD
from ._version import __version__

__all__ = [
    "DenseSGD",
    "DivergenceError",
    "KronSGD",
    "KroneckerData",
    "KronsgdError",
    "MemoryBudgetError",
    "StructureReport",
    "TwoLayerNet",
    "ValidationError",
    "__version__",
    "resume",
    "inspect",
    "load",
    "theory",
]

_ESTIMATORS = ("KronMLPClassifier", "KronMLPRegressor")
if importlib.util.find_spec("sklearn") is not None:  # listed only where `import *` can load them
    __all__ += _ESTIMATORS


def __getattr__(name: str):
    """The scikit-learn estimators, imported on first use: scikit-learn is an optional extra."""
    if name in _ESTIMATORS:
        try:
            from . import _estimators
        except ImportError as exc:
            raise ImportError(
                f"kronsgd.{name} needs scikit-learn, which is not installed: pip install 'kronsgd[sklearn]'"
            ) from exc
        return getattr(_estimators, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
