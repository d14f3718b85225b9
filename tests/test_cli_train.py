"""``kronsgd train`` and ``kronsgd predict``: round trips, outputs, and every way input can be wrong."""

import json

import numpy as np
import pytest

import kronsgd
from kronsgd import KroneckerData
from kronsgd.cli.main import main

N, DIMS = 60, (4, 6)
FAST = ["--width", "64", "--batch", "8", "--steps", "30", "--dtype", "float64"]


def _factors(seed=0, rank=2):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((N, rank, d)) for d in DIMS]


@pytest.fixture
def files(tmp_path):
    """Training files: factors with y, a dense X (exact rank-2 sums of the same factors) with y."""
    factors = _factors()
    data = KroneckerData(factors)
    y = np.sin(3 * data.gram(rows=[0])[0] / data.norms() / data.norms()[0])  # (N,) smooth targets
    paths = {"fac": tmp_path / "fac.npz", "dense": tmp_path / "dense.npz", "labels": tmp_path / "labels.npz"}
    np.savez(paths["fac"], factor_0=factors[0], factor_1=factors[1], y=y)
    np.savez(paths["dense"], X=data.to_dense(), y=y)
    np.savez(paths["labels"], factor_0=factors[0], factor_1=factors[1], y=(y > 0).astype(int) + (y > 0.5))
    return {k: str(v) for k, v in paths.items()} | {"dir": tmp_path, "factors": factors, "y": y}


def _train(files, data="fac", *extra):
    model = str(files["dir"] / "model.npz")
    assert main(["train", files[data], "--out", model, "--quiet", *FAST, *extra]) == 0
    return model


# ---- round trips -----------------------------------------------------------------------
def test_train_then_predict_matches_the_loaded_nets_predict(files, capsys):
    model = _train(files)
    out = str(files["dir"] / "pred.npy")
    assert main(["predict", model, files["fac"], "--out", out]) == 0
    assert "wrote 60 predictions" in capsys.readouterr().out
    expected = kronsgd.load(model).predict(KroneckerData(files["factors"]))  # (N,)
    np.testing.assert_allclose(np.load(out), expected, rtol=1e-12, atol=1e-12)


def test_predict_on_a_dense_x_equals_predict_on_its_exact_factors(files):
    model = _train(files, "dense")
    out = str(files["dir"] / "pred.csv")
    assert main(["predict", model, files["dense"], "--out", out]) == 0
    got = np.loadtxt(out, delimiter=",")  # (N,)
    expected = kronsgd.load(model).predict(KroneckerData(files["factors"]))  # the X rows, exactly
    np.testing.assert_allclose(got, expected, rtol=1e-8, atol=1e-8)


def test_predict_prints_rows_and_reports_rmse_without_out(files, capsys):
    model = _train(files)
    capsys.readouterr()
    assert main(["predict", model, files["fac"]]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == N and all(np.isfinite(float(v)) for v in lines)
    assert main(["predict", model, files["fac"], "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["predictions"]) == N and report["rmse"] >= 0 and report["data"]["dims"] == list(DIMS)


def test_classification_trains_one_hot_and_predicts_labels(files, capsys):
    model = str(files["dir"] / "clf.npz")
    argv = ["train", files["labels"], "--out", model, "--classify", "--json", "--quiet", *FAST]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert summary["outputs"] == 3 and 0 <= summary["train_accuracy"] <= 1
    out = str(files["dir"] / "labels.csv")
    assert main(["predict", model, files["labels"], "--classify", "--out", out]) == 0
    assert "accuracy on DATA's y" in capsys.readouterr().out
    labels = np.loadtxt(out, delimiter=",", dtype=int)
    expected = np.argmax(kronsgd.load(model).predict(KroneckerData(files["factors"])), axis=1)
    np.testing.assert_array_equal(labels, expected)


def test_targets_from_csv_with_header_and_several_columns(files, capsys):
    csv = files["dir"] / "y.csv"
    y2 = np.column_stack([files["y"], -files["y"]])  # (N, 2)
    csv.write_text("a,b\n" + "\n".join(f"{a},{b}" for a, b in y2))
    model = str(files["dir"] / "two.npz")
    assert main(["train", files["dense"], "--y", str(csv), "--out", model, "--json", *FAST]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["outputs"] == 2
    assert kronsgd.load(model).outputs == 2


# ---- output modes ----------------------------------------------------------------------
def test_json_summary_and_history_parse(files, capsys):
    model = str(files["dir"] / "m.npz")
    assert main(["train", files["fac"], "--out", model, "--json", *FAST, "--log-every", "10"]) == 0
    report = json.loads(capsys.readouterr().out)
    s = report["summary"]
    for key in ("loss_start", "loss_end", "step_ms", "samples_per_second", "nnz_per_step", "fired_fraction"):
        assert isinstance(s[key], float) and s[key] >= 0, key
    assert s["steps"] == 30 and s["model"] == model and s["data"]["source"] == "factors"
    assert [h["step"] for h in report["history"]] == [0, 10, 20, 30]


def test_fired_tree_and_scan_train_the_same_model(files, capsys):
    models = {}
    for fired in ("scan", "tree"):
        model = str(files["dir"] / f"{fired}.npz")
        assert main(["train", files["fac"], "--out", model, "--json", *FAST, "--fired", fired]) == 0
        assert json.loads(capsys.readouterr().out)["summary"]["fired"] == fired
        models[fired] = kronsgd.load(model).predict(KroneckerData(files["factors"]))
    np.testing.assert_array_equal(models["tree"], models["scan"])  # the same fired sets: the same bits


def test_quiet_prints_only_the_result_line(files, capsys):
    _train(files)
    out, err = capsys.readouterr()
    assert err == "" and len(out.strip().splitlines()) == 1 and "ms/step" in out


def test_default_output_is_a_summary_without_progress_bar(files, capsys):
    model = str(files["dir"] / "m.npz")
    assert main(["train", files["fac"], "--out", model, *FAST]) == 0
    out, err = capsys.readouterr()
    assert "final training loss" in out and f"saved the model to {model}" in out
    assert err == ""  # stdout is not a terminal here: no bar


# ---- failures --------------------------------------------------------------------------
def _write(files, name, **arrays):
    path = files["dir"] / name
    np.savez(path, **arrays)
    return str(path)


BAD_TRAIN = {
    "missing DATA": (lambda f: [str(f["dir"] / "nope.npz")], "does not exist"),
    "DATA not npz": (lambda f: [str(f["dir"])], "does not exist"),
    "wrong array names": (lambda f: [_write(f, "w.npz", data=np.ones((5, 4)), y=np.ones(5))], "named X"),
    "gappy factor names": (
        lambda f: [_write(f, "g.npz", factor_0=f["factors"][0], factor_2=f["factors"][1], y=f["y"])],
        "factor_0, factor_1",
    ),
    "no targets": (lambda f: [_write(f, "t.npz", X=np.ones((5, 4)))], "no targets"),
    "X and y mismatch": (lambda f: [_write(f, "m.npz", X=np.ones((5, 4)), y=np.ones(7))], "one row per point"),
    "y not finite": (lambda f: [_write(f, "n.npz", X=np.ones((3, 4)), y=[1.0, np.nan, 2.0])], "finite"),
    "bad csv": (lambda f: [f["fac"], "--y", _text(f, "bad.csv", "1\n2\nabc,x,\n")], "not a numeric CSV"),
    "csv wrong length": (lambda f: [f["fac"], "--y", _text(f, "short.csv", "1\n2\n3\n")], "60 points"),
    "out suffix": (lambda f: [f["fac"], "--out", str(f["dir"] / "m.txt")], "--out must end in .npz"),
    "out folder missing": (lambda f: [f["fac"], "--out", str(f["dir"] / "no" / "m.npz")], "does not exist"),
    "plot suffix": (lambda f: [f["fac"], "--plot", str(f["dir"] / "p.jpg")], "--plot must end in .png"),
    "labels not integers": (lambda f: [f["fac"], "--classify"], "integer class labels"),
    "outputs mismatch": (lambda f: [f["fac"], "--outputs", "3"], "--outputs 3"),
    "batch too large": (lambda f: [f["fac"], "--batch", "500"], "batch_size"),
    "rank too large": (lambda f: [f["dense"], "--rank", "9", "--shape", "4x6"], "rank"),
}


def _text(files, name, content):
    path = files["dir"] / name
    path.write_text(content)
    return str(path)


@pytest.mark.parametrize("case", list(BAD_TRAIN))
def test_bad_input_exits_2_with_one_clear_line(files, capsys, case):
    make, expected = BAD_TRAIN[case]
    argv = ["train", *make(files)]
    if "--out" not in argv:
        argv += ["--out", str(files["dir"] / "model.npz")]
    assert main(argv + ["--steps", "5", "--width", "16"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("kronsgd train: error: ") and err.count("\n") == 1, err
    assert expected in err and "Traceback" not in err
    assert not (files["dir"] / "model.npz").exists()


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["train", "x.npz", "--out", "m.npz", "--no-such-option"], "unrecognized arguments"),
        (["train", "x.npz"], "required: --out"),
        (["train", "x.npz", "--out", "m.npz", "--steps", "0"], "argument --steps: must be an int >= 1"),
        (["train", "x.npz", "--out", "m.npz", "--lr", "nan"], "argument --lr: must be a finite number"),
        (["train", "x.npz", "--out", "m.npz", "--fired", "heap"], "argument --fired: invalid choice: 'heap'"),
        (["predict", "m.npz"], "required: DATA"),
        (["predict", "m.npz", "x.npz", "--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_usage_exits_2(capsys, argv, expected):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err


def test_diverging_run_exits_1_and_saves_nothing(files, capsys):
    model = files["dir"] / "model.npz"
    argv = ["train", files["fac"], "--out", str(model), "--lr", "1e6", "--steps", "300", "--width", "32", "--quiet"]
    argv += ["--dtype", "float32"]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert "diverged" in err and "Lower lr" in err and f"Nothing was written to {model}" in err
    assert not model.exists()


PREDICT_CASES = {
    "missing model": (lambda f, m: [str(f["dir"] / "none.npz"), f["fac"]], "MODEL"),
    "not a model": (lambda f, m: [f["fac"], f["fac"]], "fac.npz"),
    "missing DATA": (lambda f, m: [m, str(f["dir"] / "none.npz")], "does not exist"),
    "wrong dims": (lambda f, m: [m, _write(f, "d.npz", factor_0=np.ones((3, 6)), factor_1=np.ones((3, 4)))], "dims"),
    "wrong d": (lambda f, m: [m, _write(f, "x.npz", X=np.ones((3, 5)))], "expects d = 24"),
    "out suffix": (lambda f, m: [m, f["fac"], "--out", str(f["dir"] / "p.txt")], "--out must end in .npy or .csv"),
    "classify one output": (lambda f, m: [m, f["fac"], "--classify"], "2 or more outputs"),
}


@pytest.mark.parametrize("case", list(PREDICT_CASES))
def test_predict_bad_input_exits_2(files, capsys, case):
    model = _train(files)
    capsys.readouterr()
    make, expected = PREDICT_CASES[case]
    assert main(["predict", *make(files, model)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kronsgd predict: error: ") and err.count("\n") == 1, err
    assert expected in err


# ---- progress bar ----------------------------------------------------------------------
def test_progress_bar_draws_loss_speed_and_fired_on_a_terminal():
    import io

    from rich.console import Console

    from kronsgd.cli.progress import TrainingProgress, progress_wanted

    assert not progress_wanted(quiet=True) and not progress_wanted(quiet=False)  # pytest captures stdout
    sink = io.StringIO()
    console = Console(file=sink, force_terminal=True, width=150)
    entries = [
        {"step": 0, "loss": 12.5, "fired": 8.0, "step_seconds": float("nan")},
        {"step": 50, "loss": 3.25, "fired": 6.4, "step_seconds": 0.001},
    ]
    with TrainingProgress(50, batch_size=32, width=64, enabled=True, console=console) as bar:
        for entry in entries:
            bar(None, entry)
    text = sink.getvalue()
    assert "50/50" in text and "loss 3.25" in text and "32,000 samples/s" in text and "fired 10.00%" in text
    silent = TrainingProgress(50, 32, 64, enabled=False)
    with silent:
        silent(None, entries[0])  # a disabled bar does nothing and needs no terminal
