"""Per-step time of KronSGD against the dense SGD a user would otherwise run, over a grid of d.

For each d = 2^k (two factors d1 = 2^ceil(k/2), d2 = d / d1, rank 1; the synthetic task of
``kronsgd demo``) one call times, with the same n, width m, batch size and shift b:

* ``kron``: KronSGD (float32, Gram "auto"), the mean step time over runs of whole update
  windows (a windowed trainer folds its deferred updates into P once per window);
* ``dense``: DenseSGD (float32), kronsgd's own dense reference on materialised X and W;
* ``torch``: the same model in PyTorch (float32): ``x @ W.T``, shifted ReLU, autograd and
  ``torch.optim.SGD`` on W; skipped with a note when torch is not installed;
* ``sklearn``: scikit-learn's ``MLPRegressor(solver="sgd")``, one ``partial_fit`` per batch.
  A rough reference only: a different model (plain ReLU without shift, biases, both layers
  trained), as a user reaching for an off-the-shelf MLP would run it.

Dense engines get the batch rows of a dense X inside the timed step (as DenseSGD does) and
are skipped, with a note, where X and W do not fit in half the available memory. The
measurement is library code: it returns numbers and prints nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import platform
import statistics
import time

import numpy as np

from ..base.errors import MemoryBudgetError
from ..base.memory import available_bytes
from ..engine.dense import DenseSGD
from ..engine.trainer import KronSGD
from ..model.net import TwoLayerNet
from .demo import synthetic_task

ENGINES = ("kron", "dense", "torch", "sklearn")
_WARMUP = 2  # untimed dense steps: first touch of W, BLAS buffers, autograd's threads


@dataclasses.dataclass
class BenchConfig:
    """What one benchmark run measures; the defaults are the full run, ``quick()`` the short one."""

    n: int = 1024  # training points (KronSGD's P is m x n)
    width: int = 1024  # hidden neurons m
    batch: int = 32  # |S|
    steps: int = 128  # timed KronSGD steps per d, rounded up to whole update windows
    dense_steps: int = 0  # timed steps per dense engine; 0: from 10 at small d down to 3
    min_log2d: int = 8
    max_log2d: int = 16
    lr: float = 1.0  # step size; the step cost does not depend on it
    seed: int = 0
    engines: tuple[str, ...] = ENGINES
    threads: int | None = None  # BLAS and torch threads for every engine; None: the libraries' defaults

    @classmethod
    def quick(cls, **overrides) -> BenchConfig:
        """A grid 2^8..2^14 at n = m = 512 that runs in about 15 s on two cores."""
        base = {"n": 512, "width": 512, "steps": 64, "max_log2d": 14}
        return cls(**{**base, **overrides})

    def dense_steps_at(self, d: int) -> int:
        return self.dense_steps or max(3, min(10, 2**16 // d))


def machine_info() -> dict:
    """What the numbers depend on: cores, platform, library versions, load before the run."""
    info = {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "loadavg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    torch = _optional("torch")
    info["torch"] = None if torch is None else torch.__version__
    info["torch_threads"] = None if torch is None else torch.get_num_threads()
    sklearn = _optional("sklearn")
    info["sklearn"] = None if sklearn is None else sklearn.__version__
    return info


def run_bench(config: BenchConfig, on_row=None) -> dict:
    """Time every engine at every d of the grid.

    Parameters
    ----------
    config : BenchConfig
    on_row : callable, optional
        ``on_row(row)`` after each d, e.g. to report progress.

    Returns
    -------
    dict with ``config``, ``machine``, ``rows`` (one dict per d: ``d``, ``dims``,
    ``<engine>_ms`` per-step milliseconds, ``<engine>_over_kron`` ratios,
    ``<engine>_note`` where an engine was skipped, and KronSGD's counters) and ``notes``.
    """
    unknown = set(config.engines) - set(ENGINES)
    if unknown or "kron" not in config.engines:
        raise ValueError(f"engines must include 'kron' and be among {ENGINES}. Got {config.engines}.")
    machine = machine_info()
    rows = []
    with _thread_limit(config.threads):
        machine["threads"] = config.threads
        for log2d in range(config.min_log2d, config.max_log2d + 1):
            rows.append(bench_point(log2d, config))
            if on_row is not None:
                on_row(rows[-1])
    return {"config": dataclasses.asdict(config), "machine": machine, "rows": rows, "notes": _notes(rows, config)}


def bench_point(log2d: int, config: BenchConfig) -> dict:
    """All engines at d = 2^log2d: one row of the benchmark."""
    d1 = 2 ** math.ceil(log2d / 2)
    dims = (d1, 2**log2d // d1)
    data, y = synthetic_task(config.n, dims, seed=config.seed)
    row = {"log2d": log2d, "d": math.prod(dims), "dims": list(dims)}
    row.update(_time_kron(data, y, dims, config))
    dense_x = None
    need = 4 * (config.n + config.width) * row["d"] * 3  # float32 X and W, float64 while building
    for engine in [e for e in config.engines if e != "kron"]:
        if need > available_bytes() // 2:
            row[f"{engine}_note"] = f"skipped: dense X and W need about {need / 2**30:.1f} GiB"
            continue
        if dense_x is None and engine != "dense":
            dense_x = data.normalized().to_dense().astype(np.float32)  # (n, d) the points KronSGD trains on
        timer = {"dense": _time_dense, "torch": _time_torch, "sklearn": _time_sklearn}[engine]
        row.update(timer(data, dense_x, y, dims, row["shift"], config))
    for engine in ENGINES[1:]:
        if f"{engine}_ms" in row:
            row[f"{engine}_over_kron"] = row[f"{engine}_ms"] / row["kron_ms"]
    return row


def _time_kron(data, y, dims, config: BenchConfig) -> dict:
    net = TwoLayerNet(dims, width=config.width, seed=config.seed)
    started = time.perf_counter()
    trainer = KronSGD(net, data, y, config.lr, config.batch, seed=config.seed)
    init_s = time.perf_counter() - started
    window = trainer.window_size
    chunk = window * max(1, math.ceil(config.steps / (4 * window)))  # 4 timed runs of whole windows
    trainer._advance(window)  # warm up: first touch of P and the log
    before = trainer.counters()
    means = []
    for _ in range(max(1, math.ceil(config.steps / chunk))):
        started = time.perf_counter()
        trainer._advance(chunk)  # steps only: run() would add a full-loss pass after them
        means.append((time.perf_counter() - started) / chunk)
    after = trainer.counters()
    steps = after["steps"] - before["steps"]
    return {
        "kron_ms": 1e3 * statistics.median(means),
        "kron_init_s": init_s,
        "kron_steps": steps,
        "window": window,
        "gram": trainer.gram_mode,
        "shift": net.shift,
        "nnz_per_step": (after["nnz"] - before["nnz"]) / steps,
        "rows_touched_per_step": (after["rows_touched"] - before["rows_touched"]) / steps,
    }


def _step_median_ms(step, count: int) -> float:
    times = []
    for k in range(_WARMUP + count):
        started = time.perf_counter()
        step()
        if k >= _WARMUP:
            times.append(time.perf_counter() - started)
    return 1e3 * statistics.median(times)


def _batches(config: BenchConfig, count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(config.seed)
    return [rng.choice(config.n, config.batch, replace=False) for _ in range(_WARMUP + count)]


def _time_dense(data, dense_x, y, dims, shift, config: BenchConfig) -> dict:
    net = TwoLayerNet(dims, width=config.width, seed=config.seed)
    started = time.perf_counter()
    try:
        trainer = DenseSGD(net, data, y, config.lr, config.batch, seed=config.seed, dtype=np.float32)
    except MemoryBudgetError as exc:
        return {"dense_note": f"skipped: {exc}"}
    init_s = time.perf_counter() - started
    count = config.dense_steps_at(net.d)
    batches = iter(_batches(config, count))
    ms = _step_median_ms(lambda: trainer._step(next(batches)), count)
    return {"dense_ms": ms, "dense_init_s": init_s, "dense_steps": count}


def _time_torch(data, dense_x, y, dims, shift, config: BenchConfig) -> dict:
    torch = _optional("torch")
    if torch is None:
        return {"torch_note": "skipped: torch is not installed (pip install torch)"}
    m = config.width
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(config.seed)
    W = torch.randn(m, math.prod(dims), generator=generator).requires_grad_()  # (m, d) same law as W0
    signs = TwoLayerNet(dims, width=m, seed=config.seed).a[:, 0]
    a = torch.from_numpy(signs.astype(np.float32))  # (m,) fixed second layer
    X, targets = torch.from_numpy(dense_x), torch.from_numpy(y.astype(np.float32))  # (n, d), (n,)
    optimizer = torch.optim.SGD([W], lr=config.lr)
    init_s = time.perf_counter() - started
    count = config.dense_steps_at(math.prod(dims))
    batches = iter(_batches(config, count))
    scale = 1.0 / math.sqrt(m)

    def step():
        batch = torch.from_numpy(next(batches))
        x = X[batch]  # (B, d)
        f = torch.relu(x @ W.T - shift) @ a * scale  # (B,)
        loss = 0.5 * ((f - targets[batch]) ** 2).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    ms = _step_median_ms(step, count)
    return {"torch_ms": ms, "torch_init_s": init_s, "torch_threads": torch.get_num_threads()}


def _time_sklearn(data, dense_x, y, dims, shift, config: BenchConfig) -> dict:
    neural = _optional("sklearn.neural_network")
    if neural is None:
        return {"sklearn_note": "skipped: scikit-learn is not installed (pip install scikit-learn)"}
    model = neural.MLPRegressor(
        hidden_layer_sizes=(config.width,),
        solver="sgd",
        batch_size=config.batch,
        learning_rate_init=1e-3,
        momentum=0.0,
        alpha=0.0,
        random_state=config.seed,
    )
    count = config.dense_steps_at(math.prod(dims))
    batches = _batches(config, count)
    targets = y.astype(np.float32)
    started = time.perf_counter()
    model.partial_fit(dense_x[batches[0]], targets[batches[0]])  # first call draws both layers
    init_s = time.perf_counter() - started
    rest = iter(batches[1:] + batches[:1])
    ms = _step_median_ms(lambda: _partial_fit(model, dense_x, targets, next(rest)), count)
    return {"sklearn_ms": ms, "sklearn_init_s": init_s}


def _partial_fit(model, X, y, batch) -> None:
    model.partial_fit(X[batch], y[batch])


def _notes(rows: list[dict], config: BenchConfig) -> list[str]:
    notes = [
        f"all engines: n = {config.n}, m = {config.width}, batch {config.batch}, float32; "
        "KronSGD's step cost does not depend on d, the dense engines' grows as m·|S|·d",
    ]
    if "sklearn" in config.engines:
        notes.append(
            "sklearn = MLPRegressor(solver='sgd').partial_fit per batch: a different model "
            "(ReLU without shift, biases, both layers trained), a rough reference only"
        )
    skipped = sorted({r[k] for r in rows for k in r if k.endswith("_note") and "not installed" in r[k]})
    return notes + skipped


@contextlib.contextmanager
def _thread_limit(threads: int | None):
    """Limit BLAS (through threadpoolctl) and torch to ``threads`` threads, then restore them."""
    if threads is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    torch = _optional("torch")
    before = None if torch is None else torch.get_num_threads()
    try:
        with threadpool_limits(threads):
            if torch is not None:
                torch.set_num_threads(threads)
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(before)


def _optional(module: str):
    """Import an optional dependency, or None when it is missing."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        return None
