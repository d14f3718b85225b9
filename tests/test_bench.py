"""``kronsgd bench`` on a tiny grid: exit codes, JSON fields, table, optional engines."""

import json

import pytest

from kronsgd.cli import benchmark as _bench
from kronsgd.cli.benchmark import BenchConfig, run_bench
from kronsgd.cli.main import main

TINY = ["--quick", "--min-log2d", "4", "--max-log2d", "5", "--n", "48", "--width", "32", "--batch", "8"]
TINY += ["--steps", "4", "--dense-steps", "3"]


def test_quick_json_has_every_engine_and_ratio(capsys):
    assert main(["bench", *TINY, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) >= {"config", "machine", "rows", "notes"}
    assert report["config"]["n"] == 48 and report["config"]["width"] == 32
    assert [r["d"] for r in report["rows"]] == [16, 32] and [r["dims"] for r in report["rows"]] == [[4, 4], [8, 4]]
    for row in report["rows"]:
        assert row["kron_ms"] > 0 and row["nnz_per_step"] >= 0
        for engine in ("dense", "torch", "sklearn"):
            assert row[f"{engine}_ms"] > 0, engine
            assert row[f"{engine}_over_kron"] == pytest.approx(row[f"{engine}_ms"] / row["kron_ms"])
    assert any("different model" in note for note in report["notes"])
    assert report["machine"]["cpu_count"] >= 1


def test_table_shows_ratios_and_writes_the_plot(tmp_path, capsys):
    plot = tmp_path / "bench.png"
    assert main(["bench", *TINY, "--skip", "sklearn", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "kronsgd ms" in out and "torch/kron" in out and "sklearn" not in out.splitlines()[0]
    assert "2^4" in out and "2^5" in out and f"wrote {plot}" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_torch_is_a_note_not_an_error(monkeypatch):
    real = _bench._optional
    monkeypatch.setattr(_bench, "_optional", lambda name: None if name == "torch" else real(name))
    config = BenchConfig.quick(min_log2d=4, max_log2d=4, n=32, width=16, batch=4, steps=2, dense_steps=3)
    report = run_bench(config)
    row = report["rows"][0]
    assert "torch_ms" not in row and "not installed" in row["torch_note"]
    assert any("torch is not installed" in note for note in report["notes"])


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--skip", "numba"], "unknown engine"),
        (["--min-log2d", "9", "--max-log2d", "8"], "must not exceed"),
        (["--max-log2d", "40"], "[2, 26]"),
        (["--n", "8", "--batch", "16"], "--batch (16) must not exceed --n (8)"),
        (["--plot", "b.svg"], "--plot must end in .png"),
        (["--width", "-3"], "argument --width: must be an int >= 1"),
    ],
)
def test_bad_options_exit_2(capsys, argv, expected):
    assert main(["bench", "--quick", *argv]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
