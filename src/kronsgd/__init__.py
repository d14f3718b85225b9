"""kronsgd: train two-layer networks on Kronecker-structured data with SGD whose step cost
does not depend on the input dimension (Song & Ye, arXiv:2305.08001)."""

from . import theory
from ._data import KroneckerData
from ._dense import DenseSGD
from ._errors import DivergenceError, KronsgdError, MemoryBudgetError, ValidationError
from ._inspect import StructureReport, inspect
from ._model import TwoLayerNet
from ._trainer import KronSGD

__version__ = "0.1.0"

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
    "inspect",
    "theory",
]
