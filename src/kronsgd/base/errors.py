"""The exception types of kronsgd: one base class, a few precise children."""


class KronsgdError(Exception):
    """Base class of every error kronsgd raises on purpose."""


class ValidationError(KronsgdError, ValueError):
    """An argument has the wrong type, shape, value or content."""


class FileFormatError(ValidationError):
    """A file is missing, damaged, of another format or of another version."""


class MemoryBudgetError(KronsgdError, MemoryError):
    """An allocation would exceed the memory budget; the message names the way around it."""


class DivergenceError(KronsgdError, ArithmeticError):
    """Training produced a non-finite loss; the model was left at its last finite state."""


class MissingDependencyError(KronsgdError, ImportError):
    """An optional dependency is not installed; the message gives the ``pip install`` line."""


class PerformanceWarning(UserWarning):
    """A run will be far slower than the same run with another setting; the message names it."""
