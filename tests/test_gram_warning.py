"""gram="auto" warns when it computes Gram rows every step at a cost that dwarfs the step."""

import warnings

import numpy as np
import pytest

from kronsgd import KroneckerData, KronSGD, PerformanceWarning, TwoLayerNet


def _data(n, dims=(128, 128), rank=8, seed=0):
    rng = np.random.default_rng(seed)
    return KroneckerData([rng.standard_normal((n, rank, d)) for d in dims])


def _trainer(data, **options):
    net = TwoLayerNet(data.dims, width=32, seed=0)
    return KronSGD(net, data, np.zeros(data.n), lr=0.1, batch_size=64, **options)


def test_warns_with_the_budget_that_keeps_the_gram_matrix():
    data = _data(1000)  # a step's rows: 64 x 1,000 entries of min(16,384, 64 x 256) = 1.05e9 multiply-adds
    with pytest.warns(PerformanceWarning, match=r"Gram rows every step.*memory_budget of 15\.3 MiB") as caught:
        trainer = _trainer(data, memory_budget=8 * 2**20, dtype="float32")  # G is 3.8 MiB: over a quarter
    assert trainer.gram_mode == "on_the_fly"
    assert "float32" not in str(caught[0].message)  # already float32: no advice to halve it


def test_float64_is_told_that_float32_halves_the_matrix():
    with pytest.warns(PerformanceWarning, match="dtype=numpy.float32, half of it"):
        _trainer(_data(1000), memory_budget=12 * 2**20, dtype="float64")


@pytest.mark.parametrize(
    "options",
    [
        {"memory_budget": 8 * 2**20, "dtype": "float32", "gram": "on_the_fly"},  # asked for: no warning
        {"memory_budget": 2**30, "dtype": "float32"},  # G kept
    ],
)
def test_silent_when_asked_for_or_kept(options):
    with warnings.catch_warnings():
        warnings.simplefilter("error", PerformanceWarning)
        _trainer(_data(1000), **options)


def test_silent_when_the_rows_are_cheap():
    data = _data(1000, dims=(8, 8), rank=1)  # 64 x 1,000 entries of 16 multiply-adds
    with warnings.catch_warnings():
        warnings.simplefilter("error", PerformanceWarning)
        assert _trainer(data, memory_budget=3 * 2**20, dtype="float32").gram_mode == "on_the_fly"
