"""Optional dependencies (scikit-learn, PyTorch, Ray): imported on first use, or a clear error."""

from __future__ import annotations

import importlib

from .errors import MissingDependencyError


def require_module(name: str, extra: str, what: str):
    """Import and return the module ``name``, which the extra ``kronsgd[extra]`` installs.

    Parameters
    ----------
    name : str
        The module to import, such as "torch" or "sklearn".
    extra : str
        The optional-dependency group of kronsgd that installs it, such as "torch".
    what : str
        What needs it, as the user called it, such as "TwoLayerNet.to_torch()".

    Raises
    ------
    MissingDependencyError
        The module (or one it needs) cannot be imported; the message names ``what``, the
        missing module and the command that installs it.
    """
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing = exc.name or name
        raise MissingDependencyError(
            f"{what} needs the optional dependency {name!r}, which cannot be imported (missing module "
            f"{missing!r}). Install it with: pip install 'kronsgd[{extra}]'"
        ) from exc
