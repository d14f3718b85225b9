"""Helpers shared by the benchmarks: progress messages, machine facts, memory bandwidth."""

from __future__ import annotations

import math
import os
import platform
import sys
import time

import numba
import numpy as np

MIB = 2**20  # bytes


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def save_figure(fig, path) -> None:
    """Lay out ``fig``, write it as a PNG to ``path`` (its folder made) and close it."""
    from pathlib import Path

    import matplotlib.pyplot as plt

    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_rows(path, rows: list, **meta) -> None:
    """Write a benchmark's rows, ``meta`` and this machine's facts as JSON to ``path``, and say so."""
    import json
    from pathlib import Path

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows} | meta | {"machine": machine_info()}, indent=1))
    log(f"wrote {out}")


# ---- memory bandwidth ------------------------------------------------------------------
@numba.njit(nogil=True)
def _triad_kernel(a, b, c, s):
    for i in range(a.shape[0]):
        a[i] = b[i] + s * c[i]


def triad(nbytes: int, reps: int) -> dict:
    """Best-of-reps triad bandwidth in GB/s (1e9 B/s), numba single thread and NumPy.

    Bytes are counted as 3 arrays (read b, read c, write a). Without streaming stores the
    write of a also reads it first (write-allocate), so DRAM really moves ~4 arrays: the
    figures are the conventional STREAM ones, a slight underestimate of raw traffic.
    NumPy has no fused triad: np.multiply(c, s, out=a) then np.add(a, b, out=a) streams 5
    arrays; we report it both as a triad (3 arrays) and as the traffic it really moved (5).
    """
    size = nbytes // 4
    a, b, c = np.ones(size, np.float32), np.full(size, 2.0, np.float32), np.full(size, 0.5, np.float32)
    s = np.float32(3)
    _triad_kernel(a[:8], b[:8], c[:8], s)  # compile outside the timing
    best = {"numba": math.inf, "numpy": math.inf}
    for _ in range(reps):
        t0 = time.perf_counter()
        _triad_kernel(a, b, c, s)
        t1 = time.perf_counter()
        np.multiply(c, s, out=a)
        np.add(a, b, out=a)
        t2 = time.perf_counter()
        best["numba"], best["numpy"] = min(best["numba"], t1 - t0), min(best["numpy"], t2 - t1)
    assert np.allclose(a[:4], 3.5)
    return {
        "array_mib": nbytes / MIB,
        "reps": reps,
        "numba_1thread_gbs": 3 * nbytes / best["numba"] / 1e9,
        "numpy_triad_gbs": 3 * nbytes / best["numpy"] / 1e9,
        "numpy_traffic_gbs": 5 * nbytes / best["numpy"] / 1e9,
    }


def machine_info() -> dict:
    """What the numbers depend on: cores, library versions, and how busy the machine was."""
    import torch

    return {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "numpy": np.__version__, "numba": numba.__version__, "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "loadavg_1min_at_end": os.getloadavg()[0]}  # counts this run too
