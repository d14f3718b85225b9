"""Explicit randomness: every random quantity comes from the one seed through a named stream.

The initial weights W0 (m x d) are never stored whole. They come from Philox, a counter-based
generator: neuron block b is drawn from counter (0, 0, b, stream), so any block can be
regenerated on its own, in any order, with the same bits.

Two ways of drawing W0 exist, recorded with every saved net as its ``w0_stream``:

- 1: float64 normals, one Philox stream per block of 16 neurons (files written before the
  version field existed; kept so that they predict the same bits).
- 2 (current): float32 normals from the same streams, drawn by several threads at once. The
  Kronecker-structured initial layer draws its factors (16 neurons, K terms, Σ d_l) per
  block from another stream.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

W0_BLOCK = 16  # neurons per Philox stream; fixed, so W0 never depends on memory settings
W0_STREAM = 2  # how W0 is drawn now; files without the field were drawn with stream 1
W0_STREAMS = (1, 2)

_STREAM_W0 = 0
_STREAM_SIGNS = 1
_STREAM_BATCHES = 2
_STREAM_W0_FACTORS = 3
_THREADS = max(1, min(8, os.cpu_count() or 1))  # Philox fills release the GIL: blocks draw in parallel
_PARALLEL_NUMBERS = 1 << 18  # below this many normals one thread is faster than handing work out
_POOL: list[ThreadPoolExecutor] = []  # one pool for the process, made on first use
if hasattr(os, "register_at_fork"):  # a forked child has none of the parent's threads: it makes its own pool
    os.register_at_fork(after_in_child=_POOL.clear)


def _key(seed: int) -> np.ndarray:
    return np.random.SeedSequence(seed).generate_state(2, np.uint64)


def _philox(seed: int, block: int, stream: int, key: np.ndarray | None = None) -> np.random.Generator:
    key = _key(seed) if key is None else key
    return np.random.Generator(np.random.Philox(key=key, counter=[0, 0, block, stream]))


def w0_blocks(seed: int, width: int, d: int) -> Iterator[tuple[int, np.ndarray]]:
    """Stream 1: yield (first neuron, block) for the rows of W0, each block (<= W0_BLOCK, d) float64."""
    for block, start in enumerate(range(0, width, W0_BLOCK)):
        rows = min(W0_BLOCK, width - start)
        yield start, _philox(seed, block, _STREAM_W0).standard_normal((rows, d))


def _fill_blocks(seed: int, start: int, outs: list[np.ndarray], stream: int) -> None:
    """Fill the arrays ``outs`` (rows, ...) float32 with neurons start.. of a Philox stream, in parallel.

    Block b (16 neurons) is one generator, which fills its 16 rows of every array of ``outs`` in
    turn (a last, partial block draws all 16 and keeps its first rows); ``start`` must be a
    multiple of W0_BLOCK. The bits of a neuron depend neither on how many neurons are asked for
    at once nor on the thread count.
    """
    key = _key(seed)
    first = start // W0_BLOCK

    def fill(b: int) -> None:
        gen = _philox(seed, first + b, stream, key)
        for out in outs:
            rows = out[b * W0_BLOCK : (b + 1) * W0_BLOCK]
            if rows.shape[0] == W0_BLOCK:
                gen.standard_normal(out=rows, dtype=np.float32)
            else:
                rows[...] = gen.standard_normal((W0_BLOCK, *rows.shape[1:]), dtype=np.float32)[: rows.shape[0]]

    blocks = -(-outs[0].shape[0] // W0_BLOCK)
    if blocks == 1 or _THREADS == 1 or sum(out.size for out in outs) < _PARALLEL_NUMBERS:
        for b in range(blocks):
            fill(b)
        return
    if not _POOL:
        _POOL.append(ThreadPoolExecutor(_THREADS, thread_name_prefix="kronsgd-w0"))
    list(_POOL[0].map(fill, range(blocks)))


def w0_rows(seed: int, start: int, stop: int, d: int, dtype=np.float32) -> np.ndarray:
    """Stream 2: rows start:stop of the Gaussian W0, shape (stop - start, d), in ``dtype``.

    Drawn as float32 (a float64 result holds the same values); ``start`` is a multiple of W0_BLOCK.
    """
    out = np.empty((stop - start, d), dtype=np.float32)  # (b, d)
    _fill_blocks(seed, start, [out], _STREAM_W0)
    return out if np.dtype(dtype) == np.float32 else out.astype(dtype)


def w0_factor_rows(seed: int, start: int, stop: int, dims, terms: int) -> list[np.ndarray]:
    """Factors of the Kronecker-structured W0 for neurons start:stop: k arrays (b, K, d_l) float32.

    w_r(0) = K^{-1/2} Σ_q g_rq^(1) ⊗ ... ⊗ g_rq^(k) with standard Gaussian factors g; the
    K^{-1/2} is applied by the caller. ``start`` is a multiple of W0_BLOCK. Each block of 16
    neurons draws its (16, K, d_1) factor first, then (16, K, d_2), and so on.
    """
    outs = [np.empty((stop - start, terms, d), dtype=np.float32) for d in dims]  # k x (b, K, d_l)
    _fill_blocks(seed, start, outs, _STREAM_W0_FACTORS)
    return outs


def output_signs(seed: int, width: int, outputs: int) -> np.ndarray:
    """The fixed second layer a in {-1, +1}, shape (width, outputs), float64."""
    bits = _philox(seed, 0, _STREAM_SIGNS).integers(0, 2, size=(width, outputs))
    return (2.0 * bits - 1.0).astype(np.float64)


class BatchSampler:
    """Batches of distinct indices drawn uniformly from ``population`` (i.i.d. across steps)."""

    def __init__(self, population: np.ndarray, batch_size: int, seed: int, worker: int = 0):
        self.population = np.asarray(population, dtype=np.int64)  # (n_shard,)
        self.batch_size = batch_size
        self.rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, _STREAM_BATCHES, worker])))

    def next(self) -> np.ndarray:
        pick = self.rng.choice(self.population.size, size=self.batch_size, replace=False)
        return self.population[pick]  # (batch,)


_STREAM_DELAYS = 3


def step_rng(seed: int, step: int) -> np.random.Generator:
    """A generator for step ``step`` alone (counter-based): the same draws whatever ran before, resumed or not."""
    return _philox(seed, step, _STREAM_DELAYS)
