"""Synthetic Kronecker data and the demo run behind ``kronsgd demo``."""

from __future__ import annotations

import numpy as np

from ..data.kronecker import KroneckerData
from ..engine.trainer import KronSGD
from ..model.net import TwoLayerNet, fire_fraction


def synthetic_task(n: int, dims: tuple[int, ...], rank: int = 1, seed: int = 0):
    """Random Kronecker points and smooth targets from a small random teacher network.

    Returns (data, y): data with factors (n, rank, d_l) ~ N(0, 1); y (n,) standardised
    outputs of a width-32 TwoLayerNet (shift 0) of seed ``seed + 1`` on the same points.
    """
    rng = np.random.default_rng(seed)
    data = KroneckerData([rng.standard_normal((n, rank, d)) for d in dims])
    teacher = TwoLayerNet(dims, width=32, shift=0.0, seed=seed + 1)
    y = teacher.predict(data)
    return data, (y - y.mean()) / y.std()


def run_demo(n=2048, dims=(128, 128), width=1024, batch_size=32, steps=600, lr=2.0, seed=0):
    """Train KronSGD on a synthetic task; returns (trainer, summary dict)."""
    data, y = synthetic_task(n, dims, seed=seed)
    net = TwoLayerNet(dims, width=width, seed=seed)
    trainer = KronSGD(net, data, y, lr=lr, batch_size=batch_size, seed=seed)
    history = trainer.run(steps, log_every=max(1, steps // 10))
    counters = trainer.counters()
    step_seconds = trainer.train_seconds / max(1, counters["steps"])
    dense_madds = 2 * width * batch_size * net.d
    summary = {
        "n": n,
        "dims": dims,
        "d": net.d,
        "width": width,
        "batch_size": batch_size,
        "steps": counters["steps"],
        "loss_start": history[0]["loss"],
        "loss_end": history[-1]["loss"],
        "step_ms": 1e3 * step_seconds,
        "nnz_per_step": counters["nnz"] / counters["steps"],
        "expected_nnz_per_step": batch_size * width * fire_fraction(net.shift),
        "rows_touched_per_step": counters["rows_touched"] / counters["steps"],
        "multiply_adds_per_step": counters["multiply_adds"] / counters["steps"],
        "dense_multiply_adds_per_step": dense_madds,
        "gram": trainer.gram_mode,
    }
    return trainer, summary
