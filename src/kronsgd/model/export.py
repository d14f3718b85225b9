"""Export a TwoLayerNet to PyTorch as an ordinary dense module.

The module materialises the first layer, W = W0 + Σ alpha · X (m, d), which the structured
engine never forms; it is for deployment and for checking the library against PyTorch.
PyTorch is imported only here, when an export is asked for.
"""

from __future__ import annotations

import math

import numpy as np

from ..base.errors import ValidationError
from ..base.memory import require, resolve_budget
from ..base.optional import require_module

_MODULE_CLASS = None  # built on first use, once torch is imported
_DTYPES = ("float64", "float32")  # the precisions a module can be built in


def _import_torch():
    return require_module("torch", "torch", "TwoLayerNet.to_torch()")


def _module_class(torch):
    """The torch.nn.Module subclass, defined once torch is importable."""
    global _MODULE_CLASS
    if _MODULE_CLASS is not None:
        return _MODULE_CLASS

    class KronsgdTwoLayerNet(torch.nn.Module):
        """f(x) = a^T max(W x̂ - b, 0) / sqrt(m), x̂ = x / ||x|| when ``normalize``.

        Parameters (registered state)
        -----------------------------
        weight : Parameter (m, d)
            The first layer, trainable in PyTorch like any nn.Linear weight.
        a : buffer (m, C)
            The fixed second layer in {-1, +1}.
        shift : buffer ()
            The ReLU threshold b.

        forward(x): x (n, d) dense float tensor → (n,) for one output, else (n, C). A zero row
        is left at zero by the normalisation (its output is 0), where ``TwoLayerNet.predict``
        refuses zero-norm points.
        """

        def __init__(self, weight, a, shift, dims, normalize):
            super().__init__()
            self.dims = tuple(dims)
            self.normalize = bool(normalize)
            self.weight = torch.nn.Parameter(weight)  # (m, d)
            self.register_buffer("a", a)  # (m, C)
            self.register_buffer("shift", shift)  # ()
            self.in_features = weight.shape[1]
            self.width, self.outputs = a.shape

        def forward(self, x):
            if x.dim() != 2 or x.shape[1] != self.in_features:
                raise ValueError(
                    f"x must be an (n, {self.in_features}) tensor of dense inputs. Got shape {tuple(x.shape)}."
                )
            if self.normalize:
                norms = torch.linalg.vector_norm(x, dim=1, keepdim=True)  # (n, 1)
                x = x / norms.clamp_min(torch.finfo(x.dtype).tiny)  # (n, d) unit rows
            hidden = torch.relu(x @ self.weight.T - self.shift)  # (n, m)
            out = hidden @ self.a / math.sqrt(self.width)  # (n, C)
            return out[:, 0] if self.outputs == 1 else out

        def extra_repr(self) -> str:
            return (
                f"dims={self.dims}, in_features={self.in_features}, width={self.width}, "
                f"outputs={self.outputs}, normalize={self.normalize}"
            )

    # Named as a module attribute (see __getattr__ below) so that torch.save/pickle of a whole
    # module finds the class again, in this process or a fresh one.
    KronsgdTwoLayerNet.__module__ = __name__
    KronsgdTwoLayerNet.__qualname__ = KronsgdTwoLayerNet.__name__
    _MODULE_CLASS = KronsgdTwoLayerNet
    return _MODULE_CLASS


def __getattr__(name: str):
    if name == "KronsgdTwoLayerNet":
        return _module_class(_import_torch())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def check_dtype(dtype) -> str:
    """The precision name, float64 or float32, of a name, a NumPy dtype or type, or a torch dtype."""
    name = None
    if str(dtype).startswith("torch."):  # torch.float32 (alias torch.float) prints so
        name = str(dtype).removeprefix("torch.")
    elif dtype is not None:  # np.dtype(None) would silently mean float64
        try:
            name = np.dtype(dtype).name
        except (TypeError, ValueError):
            pass
    if name not in _DTYPES:
        raise ValidationError(f"dtype must be float64 or float32 (a name, NumPy or torch dtype). Got {dtype!r}.")
    return name


def to_torch(net, max_bytes=None, dtype="float64"):
    """A ``torch.nn.Module`` computing ``net``'s outputs on dense inputs, in float64 or float32.

    Parameters
    ----------
    net : TwoLayerNet
    max_bytes : int, optional
        Budget for the dense (m, d) weights, 8 · m · d bytes (12 · m · d for float32: they are
        built in float64 and rounded once, and both copies exist for a moment); default half
        the free memory.
    dtype : {"float64", "float32"}, numpy or torch dtype, default "float64"
        Precision of the module's weights and buffers, and of the inputs it takes.

    Returns
    -------
    torch.nn.Module
        ``module(x)`` with x an (n, d) tensor of ``dtype`` returns (n,) or (n, C), equal to
        ``net.predict`` on the same points up to rounding in ``dtype``.

    Raises
    ------
    MissingDependencyError
        PyTorch is not installed.
    ValidationError
        ``dtype`` is not float64 or float32.
    MemoryBudgetError
        The dense weights exceed ``max_bytes``.
    """
    name = check_dtype(dtype)
    torch = _import_torch()
    if name != "float64":
        budget = resolve_budget(max_bytes, "max_bytes")
        require(12 * net.width * net.d, budget, f"to_torch(dtype={name!r}) of {net.width} neurons x d = {net.d}",
                "Use predict() and the structured trainer, which never need dense weights.")  # fmt: skip
    weight = net.dense_weights(max_bytes)  # (m, d) float64; refuses above the budget
    if name != "float64":
        weight = weight.astype(name)  # (m, d); the float64 array is dropped on return
    module = _module_class(torch)(
        torch.from_numpy(weight),  # shares memory with the fresh array: no second copy
        torch.from_numpy(net.a.astype(name)),  # (m, C)
        torch.tensor(net.shift, dtype=getattr(torch, name)),
        net.dims,
        net.normalize,
    )
    return module
