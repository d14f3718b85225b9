"""``kronsgd train --solver auto|sgd|kernel`` and ``kronsgd predict`` on either kind of model file."""

import json
import sys

import numpy as np
import pytest

import kronsgd
from kronsgd import KernelModel, KroneckerData, TwoLayerNet
from kronsgd.cli.main import main
from kronsgd.model.net import default_shift

pytest.importorskip("sklearn")
from kronsgd import KronNTKClassifier, KronNTKRegressor  # noqa: E402

N, DIMS = 60, (4, 6)
FAST = ["--width", "64", "--batch", "8", "--steps", "30", "--dtype", "float64"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Training and test files of factors; targets are smooth functions of the points x."""
    folder = tmp_path_factory.mktemp("solver")
    rng = np.random.default_rng(0)
    factors = [rng.standard_normal((N + 20, 2, d)) for d in DIMS]
    data = KroneckerData(factors)
    y = np.tanh(3 * data.gram(rows=[0])[0] / data.norms() / data.norms()[0])  # (N + 20,)
    labels = np.digitize(y, [-0.2, 0.2]) * 2  # classes 0, 2, 4
    train, test = [f[:N] for f in factors], [f[N:] for f in factors]
    paths = {name: str(folder / f"{name}.npz") for name in ("fac", "labels", "test", "test_labels")}
    np.savez(paths["fac"], factor_0=train[0], factor_1=train[1], y=y[:N])
    np.savez(paths["labels"], factor_0=train[0], factor_1=train[1], y=labels[:N])
    np.savez(paths["test"], factor_0=test[0], factor_1=test[1], y=y[N:])
    np.savez(paths["test_labels"], factor_0=test[0], factor_1=test[1], y=labels[N:])
    return paths | {"dir": folder, "train_f": train, "test_f": test, "y": y[:N], "label_values": labels[:N]}


def _train(files, name, *extra, data="fac", fast=True):
    model = str(files["dir"] / f"{name}.npz")
    code = main(["train", files[data], "--out", model, "--json", *(FAST if fast else []), *extra])
    return code, model


def _summary(capsys) -> dict:
    return json.loads(capsys.readouterr().out)["summary"]


# ---- each solver, saved and served -----------------------------------------------------
def test_kernel_solver_saves_a_model_that_predicts_as_the_estimator(files, capsys):
    code, model = _train(files, "kernel", "--solver", "kernel")
    assert code == 0
    s = _summary(capsys)
    assert (s["solver"], s["solver_reason"], s["kind"]) == ("kernel", "--solver kernel", "regressor")
    assert "leave-one-out" in s["alpha_choice"]
    est = KronNTKRegressor(shift=default_shift(64)).fit(files["train_f"], files["y"])
    assert s["alpha"] == est.alpha_ and isinstance(kronsgd.load(model), KernelModel)
    out = str(files["dir"] / "kernel_pred.npy")
    assert main(["predict", model, files["test"], "--out", out]) == 0
    assert "RMSE on DATA's y" in capsys.readouterr().out
    np.testing.assert_array_equal(np.load(out), est.predict(files["test_f"]))


def test_kernel_classifier_serves_its_own_labels(files, capsys):
    code, model = _train(files, "kernel_clf", "--solver", "kernel", "--classify", "--alpha", "0.001", data="labels")
    assert code == 0
    assert _summary(capsys)["classes"] == [0, 2, 4]
    assert main(["predict", model, files["test_labels"], "--classify", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    est = KronNTKClassifier(alpha=1e-3, shift=default_shift(64)).fit(files["train_f"], files["label_values"])
    expected = est.predict(files["test_f"])
    assert report["kind"] == "KernelModel" and report["predictions"] == expected.tolist()
    assert report["accuracy"] == pytest.approx(np.mean(expected == np.load(files["test_labels"])["y"]))


def test_sgd_solver_saves_a_net_and_says_so(files, capsys):
    code, model = _train(files, "sgd", "--solver", "sgd")
    assert code == 0
    s = _summary(capsys)
    assert (s["solver"], s["solver_reason"]) == ("sgd", "--solver sgd")
    assert type(kronsgd.load(model)) is TwoLayerNet


# ---- auto ------------------------------------------------------------------------------
def test_auto_picks_the_kernel_at_small_n(files, capsys):
    code, model = _train(files, "auto_small", "--solver", "auto", fast=False)  # m = 1024, 1,000 steps
    assert code == 0
    s = _summary(capsys)
    assert s["solver"] == "kernel" and s["solver_reason"].startswith("--solver auto")
    assert {e["name"] for e in s["solver_estimates"]} == {"kernel", "sgd", "dense"}
    assert isinstance(kronsgd.load(model), KernelModel)


@pytest.mark.parametrize("short", [0, 1])
def test_auto_picks_sgd_when_the_kernels_matrices_exceed_the_budget(files, capsys, short):
    """At the kernel's predicted bytes it runs (the estimator accepts them); one byte less, KronSGD does."""
    kernel_bytes = 16 * N * N + 8 * N * (2 * 29 + 2 * 29 + 32)  # H, its eigenvectors, 29 candidates' coefficients
    budget = str(kernel_bytes - short)
    # A small net that fits the budget; with 20,000 steps it is predicted far slower than the kernel
    small_net = ["--width", "64", "--batch", "8", "--steps", "100" if short else "20000"]
    code, model = _train(
        files, f"auto_budget{short}", "--solver", "auto", "--memory-budget", budget, *small_net, fast=False
    )
    assert code == 0
    s = _summary(capsys)
    kernel = next(e for e in s["solver_estimates"] if e["name"] == "kernel")
    assert kernel["nbytes"] == kernel_bytes and kernel["fits"] is not short
    if short:
        assert s["solver"] == "sgd" and "exceed the budget" in s["solver_reason"]
        sgd = next(e for e in s["solver_estimates"] if e["name"] == "sgd")  # KronSGD's own plan: as it ran
        assert sgd["nbytes"] == 2 * 4 * 64 * N + (4 * N * N if s["gram"] == "precomputed" else 0)
        assert type(kronsgd.load(model)) is TwoLayerNet
    else:
        assert s["solver"] == "kernel" and isinstance(kronsgd.load(model), KernelModel)


def test_auto_text_summary_names_the_solver_and_the_estimates(files, capsys):
    model = str(files["dir"] / "auto_text.npz")
    assert main(["train", files["fac"], "--out", model, "--solver", "auto"]) == 0
    out = capsys.readouterr().out
    assert "solver: kernel (--solver auto" in out and "recommended" not in out
    assert "sgd " in out and "saved the kernel model" in out


# ---- without scikit-learn --------------------------------------------------------------
def test_without_sklearn_a_fixed_alpha_is_solved_by_numpy(files, capsys, monkeypatch):
    est = KronNTKRegressor(alpha=1e-2, shift=default_shift(64)).fit(files["train_f"], files["y"])
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn now raises ImportError
    code, model = _train(files, "numpy", "--solver", "kernel", "--alpha", "0.01")
    assert code == 0
    assert "NumPy" in _summary(capsys)["alpha_choice"]
    got = kronsgd.load(model).predict(KroneckerData(files["test_f"]))
    np.testing.assert_allclose(got, est.predict(files["test_f"]), rtol=1e-9, atol=1e-12)


def test_without_sklearn_alpha_auto_names_the_install_line(files, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    code, _ = _train(files, "nosk", "--solver", "kernel")
    assert code == 2
    assert "pip install 'kronsgd[sklearn]'" in capsys.readouterr().err
    code, model = _train(files, "nosk_auto", "--solver", "auto")
    assert code == 0
    s = _summary(capsys)
    assert s["solver"] == "sgd" and "needs scikit-learn" in s["solver_reason"]


# ---- bad input -------------------------------------------------------------------------
@pytest.mark.parametrize("option, value", [("--solver", "newton"), ("--memory-budget", "lots"), ("--alpha", "-1")])
def test_a_bad_option_value_exits_2_naming_the_option(files, capsys, option, value):
    code, _ = _train(files, "bad", option, value)
    assert code == 2
    assert f"argument {option}" in capsys.readouterr().err


def test_plot_with_the_kernel_solver_is_refused(files, capsys):
    code, _ = _train(files, "plot", "--solver", "kernel", "--plot", str(files["dir"] / "p.png"))
    assert code == 2
    assert "--plot" in capsys.readouterr().err


def test_a_damaged_kernel_model_is_refused_naming_the_file(files, capsys):
    code, model = _train(files, "damaged", "--solver", "kernel", "--alpha", "0.01")
    assert code == 0
    raw = bytearray(open(model, "rb").read())
    raw[len(raw) // 2] ^= 0xFF
    open(model, "wb").write(bytes(raw))
    capsys.readouterr()
    assert main(["predict", model, files["test"]]) == 2
    err = capsys.readouterr().err
    assert model in err and "kernel model" in err


def test_the_memory_budget_also_bounds_kronsgd(files, capsys):
    code, _ = _train(files, "sgd_budget", "--solver", "sgd", "--memory-budget", "1K")
    assert code == 2
    assert "above the memory budget of 1.0 KiB" in capsys.readouterr().err


def test_predict_writes_and_prints_a_kernel_classifiers_string_labels(files, capsys):
    words = np.array(["low", "mid", "high"])[files["label_values"] // 2]  # (N,)
    model = str(files["dir"] / "words.npz")
    KronNTKClassifier(alpha=1e-3).fit(files["train_f"], words).kernel_model_.save(model)
    expected = kronsgd.load(model).predict_labels(KroneckerData(files["test_f"]))  # (20,) of str
    out = str(files["dir"] / "words.csv")
    assert main(["predict", model, files["test"], "--classify", "--out", out]) == 0
    assert np.loadtxt(out, dtype=str).tolist() == expected.tolist()
    capsys.readouterr()
    assert main(["predict", model, files["test"], "--classify"]) == 0
    assert capsys.readouterr().out.split() == expected.tolist()
