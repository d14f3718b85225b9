"""The whole-job cost model of ``inspect``: its formulas, its advice, and the CLI option."""

import json

import numpy as np
import pytest

from kronsgd.advisor.costs import draw_rate, job_costs
from kronsgd.advisor.report import inspect
from kronsgd.cli.main import main

RATES = {"gemm": 1e11, "draw": 1e8}


def test_job_costs_follow_their_formulas():
    n, dims, R, m, S, steps = 1000, (64, 64), 2, 256, 32, 500
    job = job_costs(n, dims, R, m, S, steps, structured_step=1e-4, rates=RATES, memory=2**40, init_rank=4)
    d, sum_d = 4096, 128
    gram = n * n * min(R * R * sum_d, d) / 1e11
    assert job["dense"]["step"] == pytest.approx(2 * m * S * d / 1e11)
    assert job["dense"]["setup"] == pytest.approx(m * d / 1e8)
    p0 = m * d / 1e8 + min(m * n * d + 2 * n * R * d, R * m * n * d) / 1e11
    assert job["kron_gaussian"]["setup"] == pytest.approx(p0 + gram)
    kron = m * 4 * sum_d / 1e8 + m * n * 4 * R * sum_d / 1e11 + gram
    assert job["kron_kronecker"]["setup"] == pytest.approx(kron)
    for key in ("dense", "kron_gaussian", "kron_kronecker"):
        e = job[key]
        assert e["total"] == pytest.approx(e["setup"] + steps * e["step"] + e["predict"])
    assert job["fastest"] == min(("dense", "kron_gaussian", "kron_kronecker"), key=lambda k: job[k]["total"])
    assert not job["gram_from_factors_costs_more"]


def test_gram_on_the_fly_leaves_the_set_up():
    args = (1000, (64, 64), 2, 256, 32, 500, 1e-4, RATES, 2**40)
    kept, rows = job_costs(*args), job_costs(*args, gram="on_the_fly")
    gram = 1000 * 1000 * min(4 * 128, 4096) / 1e11
    for key in ("kron_gaussian", "kron_kronecker"):
        assert kept[key]["setup"] - rows[key]["setup"] == pytest.approx(gram)
    assert kept["dense"] == rows["dense"]


def test_solver_advice_counts_drawing_w0_in_kronsgd_set_up():
    from kronsgd.advisor.report import choose_solver

    advice = choose_solver(3000, (128, 128), 4, budget=2**33)
    sgd = next(e for e in advice.estimates if e.name == "sgd")
    assert sgd.seconds > 1024 * 128 * 128 / draw_rate()  # W0's m · d normals at this machine's rate


def test_advice_says_when_factors_cost_more_and_when_dense_does_not_fit():
    small_d = job_costs(100, (8, 8), 4, 64, 8, 10, 1e-5, RATES, memory=2**40)
    assert small_d["gram_from_factors_costs_more"] and "costs more than a dense one" in small_d["advice"]
    huge = job_costs(2048, (32768, 32768), 1, 1024, 32, 100, 1e-3, RATES, memory=2**34)
    assert not huge["dense"]["fits"] and huge["fastest"] == "kron_kronecker"
    assert "does not fit in memory" in huge["advice"]


def test_inspect_reports_the_job_and_the_cli_takes_steps(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = np.einsum("ia,ib->iab", rng.normal(size=(60, 8)), rng.normal(size=(60, 8))).reshape(60, 64)
    report = inspect(X, steps=50)
    assert report.steps == 50 and set(report.job) >= {"dense", "kron_gaussian", "kron_kronecker", "advice"}
    assert "Predicted whole job (50 steps)" in str(report)
    assert draw_rate() > 0
    path = tmp_path / "x.npy"
    np.save(path, X)
    assert main(["inspect", str(path), "--steps", "20", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["steps"] == 20 and out["job"]["kron_gaussian"]["steps"] == pytest.approx(
        20 * out["job"]["kron_gaussian"]["step"]
    )
