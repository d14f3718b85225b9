"""PNG pictures of a training run and of a benchmark (matplotlib, Agg: no display needed).

Each function takes plain history records or benchmark rows, writes one PNG and returns
its path. matplotlib is imported only when a picture is asked for.
"""

from __future__ import annotations

import math

from ..model.net import fire_fraction

_DPI = 110
_ENGINES = (  # (row key, label, style) of the benchmark picture, KronSGD first
    ("kron_ms", "KronSGD (kronsgd, structured)", {"color": "C0", "marker": "o", "linewidth": 2.2}),
    ("dense_ms", "DenseSGD (kronsgd, dense NumPy)", {"color": "C1", "marker": "s"}),
    ("torch_ms", "PyTorch SGD (dense, autograd)", {"color": "C3", "marker": "^"}),
    ("sklearn_ms", "scikit-learn MLPRegressor (different model)", {"color": "C2", "marker": "v", "linestyle": "--"}),
)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _positive(values):
    """Losses for a log axis: exact zeros become the smallest positive value seen (or 1e-300)."""
    floor = min((v for v in values if v > 0), default=1e-300)
    return [max(v, floor) for v in values]


def _loss_axes(ax_steps, ax_time, history: list[dict]) -> None:
    steps = [h["step"] for h in history]
    loss = _positive([h["loss"] for h in history])
    seconds = [h["seconds"] for h in history]
    for ax, x, label in ((ax_steps, steps, "SGD step"), (ax_time, seconds, "training wall time (s)")):
        ax.plot(x, loss, marker="o", markersize=3, color="C0")
        ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel(r"full training loss $\frac{1}{2}\sum_i \|f(x_i) - y_i\|^2$")
        ax.grid(True, which="both", alpha=0.3)
    ax_steps.set_title("Training loss against steps")
    ax_time.set_title("Training loss against wall time")


def _fired_axes(ax, history: list[dict], width: int, shift: float) -> None:
    steps = [h["step"] for h in history]
    ax.plot(steps, [100 * h["fired"] / width for h in history], marker="o", markersize=3, color="C2", label="measured")
    ax.axhline(
        100 * fire_fraction(shift),
        color="grey",
        linestyle="--",
        label=rf"$\bar\Phi(b)$, expected at init (b = {shift:.3g})",
    )
    ax.set_xlabel("SGD step")
    ax.set_ylabel("fired neurons per point (% of m)")
    ax.set_title(f"Fired fraction (m = {width})")
    ax.set_ylim(bottom=0)
    ax.legend()
    ax.grid(True, alpha=0.3)


def _save(plt, fig, path: str, title: str = "") -> str:
    """Title the figure (when given), write it to ``path`` and free it; returns ``path``."""
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return path


def plot_training(history: list[dict], width: int, shift: float, path: str, title: str = "") -> str:
    """Loss against steps and wall time (log y) and the fired fraction, side by side, in one PNG.

    Parameters
    ----------
    history : list of dict
        ``trainer.history`` records (step, loss, seconds, fired).
    width, shift : the net's m and b, for the fired fraction and its expected value.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
    _loss_axes(axes[0], axes[1], history)
    _fired_axes(axes[2], history, width, shift)
    return _save(plt, fig, path, title)


def plot_loss(history: list[dict], path: str, title: str = "") -> str:
    """Loss against steps and against wall time (log y), two panels in one PNG."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    _loss_axes(axes[0], axes[1], history)
    return _save(plt, fig, path, title)


def plot_fired(history: list[dict], width: int, shift: float, path: str, title: str = "") -> str:
    """The fraction of neurons that fire per point over training, one PNG."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    _fired_axes(ax, history, width, shift)
    return _save(plt, fig, path, title)


def plot_bench(rows: list[dict], path: str, title: str = "") -> str:
    """Per-step time against d, log-log, one line per engine (missing points are skipped).

    Parameters
    ----------
    rows : list of dict
        ``kronsgd.cli.benchmark`` rows: ``d`` and the per-step milliseconds ``kron_ms``,
        ``dense_ms``, ``torch_ms``, ``sklearn_ms`` (absent or NaN where not measured).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5), layout="constrained")
    for key, label, style in _ENGINES:
        points = [(r["d"], r[key]) for r in rows if _measured(r.get(key))]
        if points:
            ax.plot(*zip(*points, strict=True), label=label, **style)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("input dimension d = d₁·d₂")
    ax.set_ylabel("time per SGD step (ms)")
    ax.set_title(title or "Per-step time against d")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return _save(plt, fig, path)  # the title is the axes' own


def _measured(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0
