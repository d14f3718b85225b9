"""kronsgd: train two-layer networks on Kronecker-structured data with SGD whose step cost
does not depend on the input dimension (Song & Ye, arXiv:2305.08001)."""

from . import theory
from ._checkpoint import resume
from ._data import KroneckerData
from ._dense import DenseSGD
from ._errors import DivergenceError, KronsgdError, MemoryBudgetError, ValidationError
from ._inspect import StructureReport, inspect
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
    "theory",
]
