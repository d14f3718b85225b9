"""kronsgd.inspect: the structure report, its cost model, and the ``kronsgd inspect`` command."""

import dataclasses
import json
import math

import numpy as np
import pytest

import kronsgd
from kronsgd import StructureReport, ValidationError
from kronsgd.advisor.report import machine_rates
from kronsgd.cli.main import main
from kronsgd.model.net import default_shift, fire_fraction


def rank2_samples(n=40, seed=0):
    """(n, 64) samples, each u1 ⊗ v1 + u2 ⊗ v2 with u, v of length 8."""
    rng = np.random.default_rng(seed)
    u, v = rng.standard_normal((n, 2, 8)), rng.standard_normal((n, 2, 8))
    return np.einsum("iqa,iqb->iab", u, v).reshape(n, 64)


def known_spectrum_samples(n=30, seed=1):
    """(n, 16) samples whose 4 x 4 matrices have singular values (4, 2, 1, 0.5) exactly."""
    rng = np.random.default_rng(seed)
    X = np.empty((n, 16))
    for i in range(n):
        q1, _ = np.linalg.qr(rng.standard_normal((4, 4)))
        q2, _ = np.linalg.qr(rng.standard_normal((4, 4)))
        X[i] = (q1 @ np.diag([4.0, 2.0, 1.0, 0.5]) @ q2.T).reshape(-1)
    return X


def test_report_of_exact_data():
    report = kronsgd.inspect(rank2_samples(), energy=1.0)
    assert isinstance(report, StructureReport)
    assert report.shape == (8, 8) and report.rank == 2 and report.level_ranks == (2,)
    assert (report.n, report.d) == (40, 64)
    assert report.residual_max <= 1e-10 and report.energy_captured == pytest.approx(1.0, abs=1e-12)
    assert report.rank_99 <= 2
    assert report.factor_bytes == 8 * 40 * 2 * 16 and report.dense_bytes == 8 * 40 * 64
    assert [c[0] for c in report.candidates] == [(2, 32), (4, 16), (8, 8)]


def test_energy_quantities_on_a_known_spectrum():
    # energy shares 16, 4, 1, 0.25 of 21.25: cumulative 0.753, 0.941, 0.988, 1
    report = kronsgd.inspect(known_spectrum_samples(), shape=(4, 4), energy=0.95)
    assert (report.rank_90, report.rank_95, report.rank_99) == (2, 3, 4)
    assert report.rank == 3
    assert report.energy_captured == pytest.approx(21.0 / 21.25, rel=1e-12)
    expected = math.sqrt(0.25 / 21.25)  # the same spectrum for every sample
    for value in (report.residual_min, report.residual_median, report.residual_p95, report.residual_max):
        assert value == pytest.approx(expected, rel=1e-10)
    fixed = kronsgd.inspect(known_spectrum_samples(), shape="4x4", rank=1)
    assert fixed.rank == 1 and fixed.energy_captured == pytest.approx(16.0 / 21.25, rel=1e-12)


def test_three_factor_report():
    rng = np.random.default_rng(2)
    a, b, c = (rng.standard_normal((10, d)) for d in (3, 4, 5))
    X = np.einsum("ia,ib,ic->iabc", a, b, c).reshape(10, 60)
    report = kronsgd.inspect(X, shape=(3, 4, 5))
    assert report.shape == (3, 4, 5) and report.level_ranks == (1, 1) and report.rank == 1
    assert report.residual_max <= 1e-10 and report.candidates == ()


def test_cost_model_follows_its_formula():
    n, m, batch = 40, 512, 16
    report = kronsgd.inspect(rank2_samples(n), width=m, batch_size=batch)
    p = fire_fraction(default_shift(m))
    assert report.shift == default_shift(m) and report.fire_fraction == p
    assert report.expected_nnz == pytest.approx(batch * m * p)
    assert report.expected_rows_touched == pytest.approx(m * (1 - (1 - p) ** batch))
    assert report.dense_step_seconds == pytest.approx(2 * m * batch * 64 / report.gemm_rate)
    structured = (
        report.expected_rows_touched * n * report.itemsize * 2 / report.bandwidth
        + report.expected_nnz * n / report.update_rate
    )
    assert report.gram == "precomputed"
    assert report.structured_step_seconds == pytest.approx(structured)
    assert report.predicted_speedup == pytest.approx(report.dense_step_seconds / structured)
    assert kronsgd.inspect(rank2_samples(n), batch_size=1000).batch_size == n  # |S| is at most n


def test_machine_rates_are_positive_and_measured_once():
    first = machine_rates()
    assert set(first) == {"gemm", "bandwidth", "update"} and all(v > 0 for v in first.values())
    assert machine_rates() == first


def test_report_prints_a_table_and_serialises_to_json():
    report = kronsgd.inspect(rank2_samples())
    text = str(report)
    for piece in ("shape", "8 x 8", "rank", "relative residual", "predicted speedup", "Candidates"):
        assert piece in text
    data = json.loads(json.dumps(report.to_dict()))
    assert data["shape"] == [8, 8] and data["rank"] == report.rank
    assert data["candidates"][2] == {"shape": [8, 8], "rank": 2, "stored": 32, "energy": pytest.approx(1.0)}
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.rank = 3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"width": 0}, r"width must be an int in the range \[1, inf\)\. Got 0"),
        ({"batch_size": 2.5}, r"batch_size must be an int"),
        ({"shape": (7, 9)}, r"shape \(7, 9\) multiplies to 63, but X has d = 64"),
        ({"energy": 2}, r"energy must be a number in \(0, 1\]"),
        ({"shape": (8, 8), "rank": 10}, r"rank must be 'auto' or an int in \[1, 8\]"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValidationError, match=match):
        kronsgd.inspect(rank2_samples(), **kwargs)


# ---- command line ----------------------------------------------------------------------
def test_cli_reads_npy_and_prints_json(tmp_path, capsys):
    path = tmp_path / "x.npy"
    np.save(path, rank2_samples())
    assert main(["inspect", str(path), "--json", "--energy", "1.0"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["shape"] == [8, 8] and out["rank"] == 2 and out["n"] == 40
    assert out["residual_max"] <= 1e-10


def test_cli_reads_npz_by_key_or_its_only_array(tmp_path, capsys):
    X = rank2_samples()
    np.savez(tmp_path / "named.npz", X=X, y=np.arange(40))
    np.savez(tmp_path / "single.npz", images=X.reshape(40, 8, 8))
    np.savez(tmp_path / "two.npz", a=X, b=X)
    assert main(["inspect", str(tmp_path / "named.npz"), "--json", "--shape", "4x16", "--rank", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["shape"] == [4, 16] and out["rank"] == 3
    assert main(["inspect", str(tmp_path / "single.npz"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["shape"] == [8, 8]  # a 3-d array keeps its own shape
    assert main(["inspect", str(tmp_path / "two.npz"), "--key", "b", "--width", "64", "--batch", "8"]) == 0
    text = capsys.readouterr().out
    assert "8 x 8" in text and "m = 64, |S| = 8" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["MISSING"], "does not exist"),
        (["two.npz"], r"must be one of ['a', 'b'] (pass --key NAME). Got 'X'"),
        (["two.npz", "--key", "c"], "Got 'c'"),
        (["x.npy", "--shape", "8by8"], "shape must be 'auto'"),
        (["x.npy", "--shape", "5x13"], "multiplies to 65, but X has d = 64"),
        (["x.npy", "--rank", "many"], "--rank must be 'auto' or an int >= 1. Got 'many'"),
        (["x.npy", "--rank", "9", "--shape", "8x8"], "rank must be 'auto' or an int in [1, 8]"),
        (["x.npy", "--energy", "1.5"], "energy must be a number in (0, 1]"),
        (["x.txt"], "must be a .npy or .npz file"),
        (["bad.npy"], "could not be read"),
        (["vector.npy"], "X must be an (n, d) array"),
    ],
)
def test_cli_bad_input_exits_2_with_a_message(tmp_path, capsys, argv, message):
    np.save(tmp_path / "x.npy", rank2_samples())
    np.save(tmp_path / "vector.npy", np.ones(5))
    np.savez(tmp_path / "two.npz", a=np.ones((3, 4)), b=np.ones((3, 4)))
    (tmp_path / "x.txt").write_text("1 2 3")
    (tmp_path / "bad.npy").write_bytes(b"not an npy file")
    argv = [str(tmp_path / argv[0]), *argv[1:]]
    assert main(["inspect", *argv]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""
