"""KernelModel: what a fitted KronNTK* estimator predicts with, its file format, and ``kronsgd.load``."""

import numpy as np
import pytest

import kronsgd
from kronsgd import FileFormatError, KernelModel, KroneckerData, TwoLayerNet, ValidationError
from kronsgd.theory.kernel_model import fit_kernel_model

pytest.importorskip("sklearn")
from kronsgd import KronNTKClassifier, KronNTKRegressor  # noqa: E402

DIMS = (4, 5)


def _data(n, seed, rank=2):
    rng = np.random.default_rng(seed)
    return KroneckerData([rng.standard_normal((n, rank, d)) for d in DIMS])


def _target(data):
    """A smooth function of the points x themselves (not of their factors)."""
    probe = _data(1, 99)
    return np.tanh(3 * probe.gram(other=data)[0] / data.norms())  # (n,)


@pytest.fixture(scope="module")
def train_test():
    train, test = _data(70, 0), _data(15, 1)
    return train, _target(train), test


@pytest.mark.parametrize("case", ["1d", "2d", "labels", "strings"])
def test_saved_and_loaded_model_predicts_exactly_as_the_estimator(tmp_path, train_test, case):
    train, y, test = train_test
    if case in ("1d", "2d"):
        targets = y if case == "1d" else np.stack([y, y**2], axis=1)  # (n,) or (n, 2)
        est = KronNTKRegressor().fit(train, targets)
        expected = est.predict(test)
    else:
        codes = np.digitize(y, [-0.3, 0.3])  # (n,) three classes
        labels = codes if case == "labels" else np.array(["low", "mid", "high"])[codes]
        est = KronNTKClassifier(alpha=1e-3).fit(train, labels)
        expected = est.predict(test)
    path = tmp_path / "kernel.npz"
    est.kernel_model_.save(path)
    model = kronsgd.load(path)
    assert isinstance(model, KernelModel)
    assert (model.alpha, model.shift, model.dims) == (est.alpha_, est.shift_, DIMS)
    if case in ("1d", "2d"):
        assert model.kind == "regressor" and model.predict(test).shape == expected.shape
        np.testing.assert_array_equal(model.predict(test), expected)
    else:
        assert model.kind == "classifier"
        np.testing.assert_array_equal(model.classes, est.classes_)
        np.testing.assert_array_equal(model.predict_labels(test), expected)
        np.testing.assert_array_equal(model.decision_function(test), est._outputs(test))


def test_a_zero_point_predicts_the_offset(train_test):
    train, y, test = train_test
    est = KronNTKRegressor(alpha=1e-2).fit(train, y)
    zero = KroneckerData([np.zeros((1, 2, d)) for d in DIMS])
    assert est.kernel_model_.predict(zero)[0] == pytest.approx(y.mean(), abs=1e-15)


@pytest.mark.parametrize("classify", [False, True])
def test_numpy_solve_equals_the_estimator_for_a_fixed_alpha(train_test, classify):
    train, y, test = train_test
    targets = np.digitize(y, [0.0]) * 5 if classify else y  # labels {0, 5} or values
    est = (KronNTKClassifier if classify else KronNTKRegressor)(alpha=3e-3).fit(train, targets)
    model = fit_kernel_model(train, targets, alpha=3e-3, shift=est.shift_, classify=classify)
    np.testing.assert_allclose(model.dual_coef, est.dual_coef_, rtol=1e-9, atol=1e-12)
    got = model.decision_function(test)  # (n, C)
    np.testing.assert_allclose(got, est._outputs(test) + (0 if classify else est.y_mean_), rtol=1e-9, atol=1e-12)
    if classify:
        np.testing.assert_array_equal(model.predict_labels(test), est.predict(test))


def test_numpy_solve_refuses_what_it_cannot_do(train_test):
    train, y, _ = train_test
    with pytest.raises(ValidationError, match="alpha must be"):
        fit_kernel_model(train, y, alpha=0.0, shift=1.0)
    with pytest.raises(ValidationError, match=r"y must have shape \(70,\)"):
        fit_kernel_model(train, y[:5], alpha=1.0, shift=1.0)
    with pytest.raises(kronsgd.MemoryBudgetError, match="KronSGD"):
        fit_kernel_model(train, y, alpha=1.0, shift=1.0, memory_budget=10_000)


def test_load_still_returns_a_two_layer_net_for_a_net_file(tmp_path, train_test):
    train, _, test = train_test
    net = TwoLayerNet(DIMS, width=32, seed=3)
    path = tmp_path / "net.npz"
    net.save(path)
    loaded = kronsgd.load(path)
    assert type(loaded) is TwoLayerNet
    np.testing.assert_array_equal(loaded.predict(test), net.predict(test))


@pytest.fixture
def saved(tmp_path, train_test):
    train, y, _ = train_test
    path = tmp_path / "kernel.npz"
    KronNTKRegressor(alpha=1e-2).fit(train, y).kernel_model_.save(path)
    return path


def test_a_damaged_kernel_file_is_refused_naming_it(saved):
    raw = bytearray(saved.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # inside the stored arrays: the archive opens, the checksum fails
    saved.write_bytes(bytes(raw))
    with pytest.raises(FileFormatError, match=rf"'{saved}'.*(checksum|damaged|readable)"):
        kronsgd.load(saved)


def test_a_truncated_kernel_file_is_refused_naming_it(saved):
    saved.write_bytes(saved.read_bytes()[:300])
    with pytest.raises(FileFormatError, match=str(saved)):
        kronsgd.load(saved)


def test_another_format_version_is_refused_naming_it(saved):
    from kronsgd.base.atomic import read_npz, write_atomic

    meta, arrays = read_npz(saved, "model")
    meta = {k: v for k, v in meta.items() if k != "checksum"} | {"format_version": 9}
    write_atomic(saved, meta, arrays)
    with pytest.raises(FileFormatError, match=rf"'{saved}'.*format version 9.*Upgrade kronsgd"):
        kronsgd.load(saved)


def test_the_model_checks_its_arguments(train_test):
    train, _, test = train_test
    with pytest.raises(ValidationError, match=r"dual_coef must be .* shape \(70, C\)"):
        KernelModel(train, np.ones((3, 1)), shift=1.0, normalize=True, alpha=1.0)
    with pytest.raises(ValidationError, match="alpha must be"):
        KernelModel(train, np.ones((70, 1)), shift=1.0, normalize=True, alpha=-1.0)
    model = KernelModel(train, np.ones((70, 1)), shift=1.0, normalize=True, alpha=1.0)
    with pytest.raises(ValidationError, match=r"factor dims \(4, 5\)"):
        model.predict(KroneckerData([np.ones((2, 5)), np.ones((2, 4))]))
    with pytest.raises(ValidationError, match="regressor"):
        model.predict_labels(test)
