"""TwoLayerNet: the paper's two-layer shifted-ReLU network with implicit first-layer weights.

    f(x) = (1/sqrt(m)) · sum_r a_r · max(<w_r, x> - b, 0)

w_r = w_r(0) + sum_j alpha[r, j] · x_j: the initial weights come from the seed (never stored
whole) and every SGD update is a combination of training points, so the weights are kept as
coefficients alpha over "support" point sets.
"""

from __future__ import annotations

import math

import numpy as np

from ..base.errors import ValidationError
from ..base.memory import require, resolve_budget
from ..base.random import W0_STREAM, W0_STREAMS, output_signs
from ..base.validation import check_float, check_int
from ..data.contract import dense_w0, project_w0
from ..data.kronecker import KroneckerData
from .files import save_net

_PREDICT_CHUNK = 4096  # points per block of pre-activations in predict: bounds (m, chunk) memory


def default_shift(width: int) -> float:
    """The paper's threshold b = sqrt(0.4 · ln m): a neuron fires on about Φ̄(b) of unit inputs."""
    return math.sqrt(0.4 * math.log(width))


def fire_fraction(shift: float) -> float:
    """Φ̄(b) = Pr[Z > b], Z ~ N(0, 1): the chance a neuron fires on a unit-norm input at init."""
    return 0.5 * math.erfc(shift / math.sqrt(2.0))


def as_data(data, name: str = "data") -> KroneckerData:
    """Accept a KroneckerData or a list of factor arrays."""
    if isinstance(data, KroneckerData):
        return data
    if isinstance(data, (list, tuple)):
        return KroneckerData(data)
    raise ValidationError(f"{name} must be a KroneckerData or a list of factor arrays. Got {type(data).__name__}.")


class TwoLayerNet:
    """The two-layer network of Song & Ye, trained by KronSGD or DenseSGD.

    Parameters
    ----------
    dims : sequence of k >= 2 ints
        Factor dimensions (d_1, ..., d_k) of the inputs; d = prod(dims).
    width : int
        Hidden neurons m.
    outputs : int, default 1
        Output columns C; the second layer a is (m, C), fixed in {-1, +1}.
    shift : float or None, default None
        ReLU threshold b >= 0; None means sqrt(0.4 · ln width).
    seed : int, default 0
        Seeds W0 (regenerated block by block) and a.
    normalize : bool, default True
        Scale every input to unit norm before the first layer (the theory assumes it).
    init : {"gaussian", "kronecker"}, default "gaussian"
        The initial first layer. "gaussian": w_r(0) ~ N(0, I_d), the paper's. "kronecker":
        w_r(0) = K^{-1/2} Σ_{q=1..K} g_rq^(1) ⊗ ... ⊗ g_rq^(k) with standard Gaussian factors:
        E[w wᵀ] = I as for the Gaussian, and set-up and prediction cost K · R · Σ d_l per
        neuron and point instead of d (DESIGN.md §9). Training is the same exact SGD.
    init_rank : int or None, default None
        K, the number of Kronecker terms of each initial neuron; only with init="kronecker",
        where None means 16.

    Examples
    --------
    >>> net = TwoLayerNet((4, 5), width=64, seed=1)
    >>> net.a.shape, round(net.shift, 3)
    ((64, 1), 1.29)
    """

    def __init__(self, dims, width, outputs=1, shift=None, seed=0, normalize=True, init="gaussian", init_rank=None):
        if isinstance(dims, (str, bytes)) or not hasattr(dims, "__len__") or len(dims) < 2:
            raise ValidationError(f"dims must be a sequence of k >= 2 factor dimensions. Got {dims!r}.")
        self._dims = tuple(check_int(v, f"dims[{l}]", low=1) for l, v in enumerate(dims))
        self._width = check_int(width, "width", low=1)
        self._outputs = check_int(outputs, "outputs", low=1)
        self._seed = check_seed(seed)
        self._shift = default_shift(self._width) if shift is None else check_float(shift, "shift", low=0.0)
        if not isinstance(normalize, (bool, np.bool_)):
            raise ValidationError(f"normalize must be True or False. Got {normalize!r}.")
        self._normalize = bool(normalize)
        self._init, self._init_rank = check_init(init, init_rank)
        self._w0_stream = W0_STREAM  # how W0 is drawn (base/random.py); a loaded file may say otherwise
        self._a = output_signs(self._seed, self._width, self._outputs)  # (m, C)
        self._a.flags.writeable = False
        self._support: list[tuple[KroneckerData, np.ndarray]] = []  # [(unit points, alpha (m, n_b))]

    # ---- read-only description ---------------------------------------------------------
    dims = property(lambda self: self._dims, doc="Factor dimensions (d_1, ..., d_k).")
    width = property(lambda self: self._width, doc="Hidden neurons m.")
    outputs = property(lambda self: self._outputs, doc="Output columns C.")
    seed = property(lambda self: self._seed, doc="The seed of W0 and a.")
    shift = property(lambda self: self._shift, doc="ReLU threshold b.")
    normalize = property(lambda self: self._normalize, doc="Whether inputs are scaled to unit norm.")
    a = property(lambda self: self._a, doc="Second layer, (m, C) in {-1, +1}, fixed.")
    init = property(lambda self: self._init, doc='The initial first layer, "gaussian" or "kronecker".')
    init_rank = property(lambda self: self._init_rank, doc='K of init="kronecker", else None.')
    w0_stream = property(lambda self: self._w0_stream, doc="How W0 is drawn (1: files of old, 2: now).")

    @property
    def d(self) -> int:
        return math.prod(self._dims)

    def __repr__(self) -> str:
        return (
            f"TwoLayerNet(dims={self._dims}, width={self._width}, outputs={self._outputs}, "
            f"shift={self._shift:.4g}, seed={self._seed}"
            + (f", init='kronecker', init_rank={self._init_rank})" if self._init == "kronecker" else ")")
        )

    # ---- inference ---------------------------------------------------------------------
    def prepare(self, data, name: str = "data") -> KroneckerData:
        """Validate points against this net and apply its input normalisation."""
        data = as_data(data, name)
        if data.dims != self._dims:
            raise ValidationError(f"{name} has dims {data.dims} but the net expects dims {self._dims}.")
        if self._normalize:
            return data.normalized()
        if not np.isfinite(data.norms()).all():
            raise ValidationError(
                f"{name} has points whose norm overflows float64; rescale them or use a net with normalize=True."
            )
        return data

    def preactivations(self, data, *, prepared: bool = False, dtype=np.float64, max_bytes=None) -> np.ndarray:
        """<w_r, x_j> for every neuron and point, shape (m, n), from W0's seed and alpha.

        Computed in ``dtype`` by the cheaper of the routes of ``kronsgd.data.products``, with
        temporaries inside a share of ``max_bytes`` (default: half the free memory).
        """
        data = data if prepared else self.prepare(data)
        out = project_w0(
            self._seed, self._width, data, dtype, init=self._init, terms=self._init_rank, stream=self._w0_stream,
            max_bytes=max_bytes,
        )  # fmt: skip  # (m, n)
        for support, alpha in self._support:
            if self._w0_stream == 1:  # the files of old: the same operations, the same bits
                out += alpha.astype(dtype, copy=False) @ support.gram(other=data, route="factors").astype(dtype)
            else:
                out += alpha.astype(dtype, copy=False) @ support.gram(other=data, dtype=dtype, max_bytes=max_bytes)
        return out

    def predict(self, data) -> np.ndarray:
        """Network outputs, shape (n,) for one output, else (n, C). Exact: no dense weights.

        The pre-activations are computed in float32 when every trainer run on this net was
        float32 (its alpha is float32: the model is no more precise than that), else float64.
        """
        data = self.prepare(data)
        single = self._support and all(alpha.dtype == np.float32 for _, alpha in self._support)
        dtype = np.float32 if single and self._w0_stream > 1 else np.float64
        out = np.empty((data.n, self._outputs))  # (n, C)
        for start in range(0, data.n, _PREDICT_CHUNK):
            chunk = data[slice(start, start + _PREDICT_CHUNK)]
            pre = self.preactivations(chunk, prepared=True, dtype=dtype)  # (m, chunk)
            out[start : start + chunk.n] = self.outputs_from_preactivations(pre.astype(np.float64, copy=False))
        return out[:, 0] if self._outputs == 1 else out

    def outputs_from_preactivations(self, pre: np.ndarray) -> np.ndarray:
        """f = a^T σ_b(pre) / sqrt(m): (m, n) pre-activations to (n, C) outputs."""
        return np.maximum(pre - self._shift, 0.0).T @ self._a / math.sqrt(self._width)

    def dense_weights(self, max_bytes: int | None = None) -> np.ndarray:
        """W0 + sum alpha · X as an (m, d) float64 array, for export and checks.

        Refuses with MemoryBudgetError when m · d · 8 bytes exceeds ``max_bytes``
        (default: half the free memory).
        """
        budget = resolve_budget(max_bytes, "max_bytes")
        require(
            8 * self._width * self.d,
            budget,
            f"dense_weights() of {self._width} neurons x d = {self.d}",
            "Use predict() and the structured trainer, which never need dense weights.",
        )
        weights = dense_w0(
            self._seed, self._width, self.d, dims=self._dims, init=self._init, terms=self._init_rank,
            stream=self._w0_stream,
        )  # fmt: skip  # (m, d)
        for support, alpha in self._support:
            weights += alpha.astype(np.float64) @ support.to_dense(max_bytes=budget)
        return weights

    # ---- persistence and export --------------------------------------------------------
    def save(self, path) -> None:
        """Write the net to ``path`` as one versioned .npz file, atomically; read it with ``kronsgd.load``.

        Stores the support points and alpha of every trainer run on the net plus JSON
        metadata and a SHA-256 checksum; W0 and a are regenerated from the seed, not stored.
        See ``kronsgd.model.files`` for the format.
        """
        save_net(self, path)

    def to_torch(self, max_bytes: int | None = None, dtype="float64"):
        """A ``torch.nn.Module`` with the dense weights: (n, d) tensor to (n,) or (n, C).

        ``dtype`` "float64" (default) or "float32" (or the NumPy or torch dtype) is the
        precision of the module and of the inputs it takes. Refuses with MemoryBudgetError
        when the (m, d) float64 weights exceed ``max_bytes`` (default: half the free memory),
        with ValidationError for another dtype, and with MissingDependencyError (an
        ImportError) when PyTorch is missing.
        """
        from .export import to_torch  # deferred: torch is optional

        return to_torch(self, max_bytes, dtype)

    # ---- configuration ---------------------------------------------------------------
    def config(self) -> dict:
        """The JSON-ready description of this net without its trained weights (``from_config`` inverts it)."""
        return {
            "dims": list(self._dims),
            "width": self._width,
            "outputs": self._outputs,
            "shift": self._shift,  # JSON writes the shortest repr: the float64 round-trips exactly
            "seed": self._seed,
            "normalize": self._normalize,
            "init": self._init,
            "init_rank": self._init_rank,
            "w0_stream": self._w0_stream,
        }

    @classmethod
    def from_config(cls, cfg: dict) -> TwoLayerNet:
        """A fresh net from ``config()``'s dict (other keys are ignored).

        A dict without ``w0_stream`` was written before the field existed: its Gaussian W0 is
        drawn as then (stream 1), so the net predicts the same bits as it did.
        """
        net = cls(
            cfg["dims"], cfg["width"], outputs=cfg["outputs"], shift=cfg["shift"], seed=cfg["seed"],
            normalize=cfg["normalize"], init=cfg.get("init", "gaussian"), init_rank=cfg.get("init_rank"),
        )  # fmt: skip
        stream = cfg.get("w0_stream", 1)
        if isinstance(stream, bool) or stream not in W0_STREAMS:
            raise ValidationError(f"w0_stream must be one of {W0_STREAMS}. Got {stream!r}.")
        if stream == 1 and net.init != "gaussian":
            raise ValidationError("w0_stream 1 draws only the Gaussian initial layer.")
        net._w0_stream = stream
        return net

    # ---- used by trainers --------------------------------------------------------------
    def attach_support(self, data: KroneckerData, alpha: np.ndarray) -> None:
        """Make ``alpha`` (m, n), owned and updated in place by a trainer, part of the weights."""
        if not isinstance(alpha, np.ndarray) or alpha.shape != (self._width, data.n):
            raise ValidationError("alpha must be an (m, n) array for the attached points.")
        self._support.append((data, alpha))


def check_net(net) -> TwoLayerNet:
    if not isinstance(net, TwoLayerNet):
        raise ValidationError(f"net must be a TwoLayerNet. Got {type(net).__name__}.")
    return net


def check_seed(seed) -> int:
    return check_int(seed, "seed", low=0, high=2**63 - 1)


def check_init(init, init_rank) -> tuple[str, int | None]:
    """Validate ``init`` and ``init_rank`` together; returns (init, K or None)."""
    if not isinstance(init, str) or init not in ("gaussian", "kronecker"):
        raise ValidationError(f"init must be 'gaussian' or 'kronecker'. Got {init!r}.")
    if init == "gaussian":
        if init_rank is not None:
            raise ValidationError(
                f"init_rank must be None with init='gaussian' (it counts the Kronecker terms of "
                f"init='kronecker'). Got {init_rank!r}."
            )
        return init, None
    return init, DEFAULT_INIT_RANK if init_rank is None else check_int(init_rank, "init_rank", low=1)


DEFAULT_INIT_RANK = 16  # K = 16: <w, x> is within 0.01 in Kolmogorov distance of N(0, 1) (DESIGN.md §9)
