"""Explicit randomness: every random quantity comes from the one seed through a named stream.

The initial weights W0 (m x d) are never stored whole. They come from Philox, a counter-based
generator: neuron block b is drawn from counter (0, 0, b, stream), so any block can be
regenerated on its own, in any order, with the same bits.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

W0_BLOCK = 16  # neurons per Philox stream; fixed, so W0 never depends on memory settings

_STREAM_W0 = 0
_STREAM_SIGNS = 1
_STREAM_BATCHES = 2


def _philox(seed: int, block: int, stream: int) -> np.random.Generator:
    key = np.random.SeedSequence(seed).generate_state(2, np.uint64)
    return np.random.Generator(np.random.Philox(key=key, counter=[0, 0, block, stream]))


def w0_blocks(seed: int, width: int, d: int) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (first neuron, block) for the rows of W0, each block (<= W0_BLOCK, d) float64."""
    for block, start in enumerate(range(0, width, W0_BLOCK)):
        rows = min(W0_BLOCK, width - start)
        yield start, _philox(seed, block, _STREAM_W0).standard_normal((rows, d))


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
