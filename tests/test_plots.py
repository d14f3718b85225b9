"""Pictures: each plot function, ``train --plot`` and ``demo --plots`` write valid PNG files."""

import math

import numpy as np
import pytest

from kronsgd.cli.main import main
from kronsgd.cli.plots import plot_bench, plot_fired, plot_loss, plot_training

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HISTORY = [{"step": 10 * k, "loss": 100.0 / (k + 1), "seconds": 0.01 * k, "fired": 40.0 - k} for k in range(6)] + [
    {"step": 60, "loss": 0.0, "seconds": 0.06, "fired": 30.0}
]  # an exact zero on the log axis


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 1000, f"{path} is not a PNG"


@pytest.mark.parametrize(
    "draw",
    [
        lambda p: plot_training(HISTORY, 1024, 1.665, p, title="t"),
        lambda p: plot_loss(HISTORY, p),
        lambda p: plot_fired(HISTORY, 1024, 1.665, p),
    ],
    ids=["training", "loss", "fired"],
)
def test_training_pictures_are_png(tmp_path, draw):
    path = tmp_path / "fig.png"
    assert draw(str(path)) == str(path)
    assert_png(path)


def test_bench_picture_skips_missing_points(tmp_path):
    rows = [
        {"d": 256, "kron_ms": 0.5, "dense_ms": 0.4, "torch_ms": 0.3, "sklearn_ms": 2.0},
        {"d": 1024, "kron_ms": 0.6, "dense_ms": 3.0, "torch_ms": math.nan},  # torch failed, sklearn skipped
        {"d": 4096, "kron_ms": 0.6},
    ]
    path = tmp_path / "bench.png"
    plot_bench(rows, str(path))
    assert_png(path)


def test_train_plot_option_writes_a_png(tmp_path, capsys):
    rng = np.random.default_rng(1)
    data = tmp_path / "d.npz"
    np.savez(data, factor_0=rng.normal(size=(40, 3)), factor_1=rng.normal(size=(40, 5)), y=rng.normal(size=40))
    plot = tmp_path / "train.png"
    argv = ["train", str(data), "--out", str(tmp_path / "m.npz"), "--plot", str(plot), "--width", "32"]
    argv += ["--steps", "20", "--batch", "8"]
    assert main(argv) == 0
    assert f"wrote {plot}" in capsys.readouterr().out
    assert_png(plot)


def test_demo_writes_its_pictures_and_says_where(tmp_path, capsys):
    folder = tmp_path / "pics"
    assert main(["demo", "--n", "128", "--width", "64", "--steps", "20", "--plots", str(folder)]) == 0
    out = capsys.readouterr().out
    for name in ("demo_loss.png", "demo_fired.png"):
        assert_png(folder / name)
        assert str(folder / name) in out
