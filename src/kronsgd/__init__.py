"""kronsgd: train two-layer networks on Kronecker-structured data with SGD whose step cost
does not depend on the input dimension (Song & Ye, arXiv:2305.08001)."""

import importlib.util

from . import theory
from ._version import __version__
from .advisor.report import StructureReport, inspect
from .base.errors import (
    DivergenceError,
    FileFormatError,
    KronsgdError,
    MemoryBudgetError,
    MissingDependencyError,
    PerformanceWarning,
    ValidationError,
)
from .base.optional import require_module
from .data.kronecker import KroneckerData
from .engine.dense import DenseSGD
from .engine.resume import resume
from .engine.trainer import KronSGD
from .model.net import TwoLayerNet
from .theory.kernel_model import KernelModel
from .theory.load import load

__all__ = [
    "DenseSGD",
    "DivergenceError",
    "FileFormatError",
    "KronSGD",
    "KroneckerData",
    "KernelModel",
    "KronsgdError",
    "MemoryBudgetError",
    "MissingDependencyError",
    "PerformanceWarning",
    "StructureReport",
    "TwoLayerNet",
    "ValidationError",
    "__version__",
    "resume",
    "inspect",
    "load",
    "theory",
]

_ESTIMATORS = {  # name: module of kronsgd.estimators
    "KronMLPClassifier": "mlp",
    "KronMLPRegressor": "mlp",
    "KronNTKClassifier": "ntk",
    "KronNTKRegressor": "ntk",
}
if importlib.util.find_spec("sklearn") is not None:  # listed only where `import *` can load them
    __all__ += list(_ESTIMATORS)


def __getattr__(name: str):
    """The scikit-learn estimators, imported on first use: scikit-learn is an optional extra."""
    if name in _ESTIMATORS:
        require_module("sklearn", "sklearn", f"kronsgd.{name}")
        module = importlib.import_module(f".estimators.{_ESTIMATORS[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
