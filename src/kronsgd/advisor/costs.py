"""The whole job, predicted: set-up, per step and prediction for dense SGD and KronSGD (DESIGN.md §3, §9).

Counts of multiply-adds and drawn normals, turned into seconds with this machine's rates:

    dense SGD           set-up  draw W0 (m · d)
                        step    2 · m · |S| · d                      prediction  m · n' · d
    KronSGD, Gaussian   set-up  draw W0 (m · d) + P0 by the cheaper route + G
                        P0      dense m · n · d (+ building the points n · R · d) or factors R · m · n · d
                        G       n² · min(R² · Σ d_l, d)  (precomputed; else per step |S| · n · R² · Σ d_l)
                        prediction  the same for n' points, plus the alpha part n · n' · R² · Σ d_l
    KronSGD, Kronecker  set-up  draw m · K · Σ d_l + m · n · K · R · Σ d_l + G     (no term in d)

The step of KronSGD is the one ``inspect`` already predicts (``structured`` seconds).
"""

from __future__ import annotations

import math
import time

from ..base.random import w0_rows
from ..data.products import entry_cost

_DRAW: dict[str, float] = {}


def draw_rate() -> float:
    """Normals per second drawn for W0 on this machine (stream 2, float32), measured once per process."""
    if not _DRAW:
        w0_rows(0, 0, 16, 4096)  # warm up the threads
        start = time.perf_counter()
        w0_rows(0, 0, 64, 2**16)
        _DRAW["rate"] = 64 * 2**16 / max(time.perf_counter() - start, 1e-9)
    return _DRAW["rate"]


def job_costs(
    n, dims, rank, width, batch, steps, structured_step, rates, memory, init_rank=16, n_predict=None, gram="precomputed"
):
    """Predicted seconds of the whole job for each engine, and which is fastest.

    Parameters
    ----------
    n, dims, rank : int, tuple, int
        Training points, factor dimensions and Kronecker rank R.
    width, batch, steps : int
        m, |S| and the number of SGD steps.
    structured_step : float
        KronSGD's predicted seconds per step (with the Gram rows when computed on the fly).
    rates : dict
        ``gemm`` (multiply-adds/s, float32) and ``draw`` (normals/s).
    memory : int
        Bytes the job may use: dense SGD needs W (m · d) and X (n · d) in float32.
    init_rank : int, default 16
        K of init="kronecker".
    n_predict : int, optional
        Points to predict (default n).
    gram : {"precomputed", "on_the_fly"}, default "precomputed"
        KronSGD's Gram mode: the n x n Gram matrix is built at set-up, or its rows inside
        every step (then in ``structured_step``, and not in the set-up).

    Returns
    -------
    dict with one entry per engine ("dense", "kron_gaussian", "kron_kronecker"), each
    {"setup", "step", "steps", "predict", "total"} in seconds (dense also "fits"), plus
    "fastest", "gram_from_factors_costs_more" and "advice" (a sentence).
    """
    d, sum_d, R, m, K = math.prod(dims), sum(dims), rank, width, init_rank
    n_predict = n if n_predict is None else n_predict
    gemm, draw = rates["gemm"], rates["draw"]

    def p0(points: int) -> float:  # Gaussian W0 against ``points`` points, by the cheaper route
        dense = m * points * d + 2.0 * points * R * d
        return m * d / draw + min(dense, R * m * points * d) / gemm

    gram_entry = entry_cost(dims, R)
    gram = n * n * gram_entry / gemm if gram == "precomputed" else 0.0
    out = {}
    dense_step = 2.0 * m * batch * d / gemm
    fits = 4 * (m + n) * d <= memory
    out["dense"] = {"setup": m * d / draw, "step": dense_step, "predict": m * n_predict * d / gemm, "fits": fits}
    alpha_part = n * n_predict * R * R * sum_d / gemm
    out["kron_gaussian"] = {"setup": p0(n) + gram, "step": structured_step, "predict": p0(n_predict) + alpha_part}
    kron_draw = m * K * sum_d / draw
    out["kron_kronecker"] = {
        "setup": kron_draw + m * n * K * R * sum_d / gemm + gram,
        "step": structured_step,
        "predict": kron_draw + m * n_predict * K * R * sum_d / gemm + alpha_part,
    }
    for entry in out.values():
        entry["steps"] = steps * entry["step"]
        entry["total"] = entry["setup"] + entry["steps"] + entry["predict"]
    candidates = {k: v["total"] for k, v in out.items() if k != "dense" or fits}
    fastest = min(candidates, key=candidates.get)
    out["fastest"] = fastest
    out["gram_from_factors_costs_more"] = R * R * sum_d > d
    out["advice"] = _advice(out, fits, R, sum_d, d, K)
    return out


_NAMES = {
    "dense": "dense SGD",
    "kron_gaussian": "KronSGD (Gaussian init)",
    "kron_kronecker": "KronSGD (Kronecker init)",
}


def _advice(out: dict, fits: bool, R: int, sum_d: int, d: int, K: int) -> str:
    fastest = out["fastest"]
    text = f"{_NAMES[fastest]} is predicted fastest for the whole job ({out[fastest]['total']:.3g} s)"
    others = [f"{_NAMES[k]} {out[k]['total']:.3g} s" for k in _NAMES if k != fastest and (k != "dense" or fits)]
    text += f"; {', '.join(others)}." if others else "."
    if not fits:
        text += " Dense SGD does not fit in memory (W and X take 4 · (m + n) · d bytes)."
    if R * R * sum_d > d:
        text += (
            f" At rank {R} a Gram entry from the factors (R² · Σ d_l = {R * R * sum_d:,}) costs more than a dense"
            f" one (d = {d:,}): the set-up builds dense blocks instead, and per-step Gram rows are dearer than dense."
        )
    text += f" init='kronecker' (K = {K}) removes d from set-up and prediction."
    return text


def job_lines(job: dict, steps: int) -> list[str]:
    """The table ``inspect`` prints for ``job_costs``'s result."""
    lines = [f"Predicted whole job ({steps:,} steps)       set-up      per step    prediction   total"]
    for key, name in _NAMES.items():
        e = job[key]
        note = "" if e.get("fits", True) else "   (does not fit in memory)"
        lines.append(
            f"  {name:<26} {_s(e['setup']):>10} {_s(e['step']):>12} {_s(e['predict']):>12} {_s(e['total']):>9}{note}"
        )
    lines.append("  " + job["advice"])
    return lines


def _s(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g} us"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"
