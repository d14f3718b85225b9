"""KronNTKRegressor and KronNTKClassifier: the scikit-learn contract, KernelRidge, α selection, bad input."""

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.datasets import load_digits  # noqa: E402
from sklearn.kernel_ridge import KernelRidge  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from kronsgd import (  # noqa: E402
    KroneckerData,
    KronNTKClassifier,
    KronNTKRegressor,
    MemoryBudgetError,
    ValidationError,
)
from kronsgd.estimators.kernel_ridge import cholesky_solve, ridge_path  # noqa: E402
from kronsgd.theory import fire_fraction, ntk_cross, ntk_gram  # noqa: E402


@parametrize_with_checks([KronNTKRegressor(), KronNTKClassifier()])
def test_scikit_learn_contract(estimator, check):
    check(estimator)  # default parameters, no expected failures


def _points(n, dims=(4, 5), rank=2, seed=0):
    rng = np.random.default_rng(seed)
    return KroneckerData([rng.standard_normal((n, rank, d)) for d in dims])


def _target(data):
    X = data.to_dense()  # (n, d)
    return np.sin(3 * X[:, 0]) + X[:, 1] * X[:, 2] + 2.0


@pytest.mark.parametrize("alpha", [1e-3, 0.05])
def test_regressor_equals_kernel_ridge_on_the_precomputed_ntk(alpha):
    data, test = _points(60, seed=0), _points(15, seed=1)
    y = _target(data)
    reg = KronNTKRegressor(alpha=alpha).fit(data, y)
    b = reg.shift_
    assert b == pytest.approx(np.sqrt(0.4 * np.log(1024)))
    ridge = KernelRidge(alpha=alpha, kernel="precomputed").fit(ntk_gram(data, b), y - y.mean())
    expected = ridge.predict(ntk_cross(test, data, b)) + y.mean()
    np.testing.assert_allclose(reg.predict(test), expected, rtol=0, atol=1e-8)
    scale = np.abs(ridge.dual_coef_).max()
    np.testing.assert_allclose(reg.dual_coef_[:, 0], ridge.dual_coef_, rtol=1e-8, atol=1e-8 * scale)
    assert reg.alpha_ == alpha and reg.alphas_ is None


def test_classifier_equals_kernel_ridge_on_one_hot_targets():
    data, test = _points(50, dims=(3, 6), seed=2), _points(12, dims=(3, 6), seed=3)
    labels = np.array(["a", "b", "c"])[np.argmax(data.to_dense()[:, :3], axis=1)]
    clf = KronNTKClassifier(alpha=0.01, shift=0.5).fit(list(data.factors), labels)
    one_hot = (labels[:, None] == clf.classes_).astype(float)  # (n, 3)
    ridge = KernelRidge(alpha=0.01, kernel="precomputed").fit(ntk_gram(data, 0.5), one_hot)
    expected = ridge.predict(ntk_cross(test, data, 0.5))  # (12, 3)
    np.testing.assert_allclose(clf.decision_function(test), expected, rtol=0, atol=1e-8)
    assert np.array_equal(clf.predict(test), clf.classes_[np.argmax(expected, axis=1)])


def _brute_force_loo(H, Y, alpha):
    """Mean squared residual of each point predicted by a ridge fit on all the others."""
    n, errors = H.shape[0], []
    for i in range(n):
        rest = np.delete(np.arange(n), i)
        c = np.linalg.solve(H[np.ix_(rest, rest)] + alpha * np.eye(n - 1), Y[rest])  # (n-1, C)
        errors.append((H[i, rest] @ c - Y[i]) ** 2)
    return float(np.mean(errors))


def _brute_force_gcv(H, Y, alpha):
    n = H.shape[0]
    S = H @ np.linalg.inv(H + alpha * np.eye(n))  # (n, n) hat matrix
    return float(np.mean(((np.eye(n) - S) @ Y) ** 2) / (np.trace(np.eye(n) - S) / n) ** 2)


@pytest.mark.parametrize("criterion,brute", [("loo", _brute_force_loo), ("gcv", _brute_force_gcv)])
def test_ridge_path_equals_brute_force_refits(criterion, brute):
    data = _points(30, seed=4)
    H = ntk_gram(data, 1.0)
    Y = np.stack([_target(data), np.cos(data.to_dense()[:, 3])], axis=1)  # (n, 2)
    Y = Y - Y.mean(axis=0)
    alphas = fire_fraction(1.0) * np.logspace(-4, 1, 11)
    path = ridge_path(H.copy(), Y, alphas, criterion)
    expected = np.array([brute(H, Y, a) for a in alphas])  # (A,)
    np.testing.assert_allclose(path.errors, expected, rtol=1e-7)
    assert path.best == int(np.argmin(expected)) and 0 < path.best < alphas.size - 1  # an interior minimum
    np.testing.assert_allclose(path.dual_coef, cholesky_solve(H, Y, alphas[path.best]), rtol=1e-8, atol=1e-10)
    kept = H.copy()
    in_place = cholesky_solve(kept, Y, alphas[path.best], rebuild=lambda: H)
    np.testing.assert_allclose(in_place, path.dual_coef, rtol=1e-8, atol=1e-10)
    assert not np.array_equal(kept, H)  # factored in place
    # An indefinite H + αI (rounding at tiny α, forced here by a negative eigenvalue) takes the
    # eigendecomposition of a rebuilt H, with the negative eigenvalue clipped to 0.
    lam, Q = np.linalg.eigh(H)
    bad = (Q * np.r_[-1.0, lam[1:]]) @ Q.T  # (n, n) λ_min = -1
    clipped = (Q * np.r_[0.0, lam[1:]]) @ Q.T
    expected = np.linalg.solve(clipped + 0.5 * np.eye(len(H)), Y)
    np.testing.assert_allclose(cholesky_solve(bad.copy(), Y, 0.5, rebuild=lambda: bad), expected, rtol=1e-6)
    reg = KronNTKRegressor(alpha=alphas, shift=1.0, selection=criterion).fit(data, Y + 1.0)
    assert reg.alpha_ == alphas[path.best] and np.allclose(reg.cv_errors_, path.errors, rtol=1e-10)


def test_auto_alpha_searches_the_grid_in_units_of_the_diagonal():
    data = _points(40, seed=5)
    reg = KronNTKRegressor().fit(data, _target(data))
    assert reg.alphas_.size == 29 and reg.alphas_[0] == pytest.approx(1e-6 * fire_fraction(reg.shift_))
    assert reg.alpha_ == reg.alphas_[np.argmin(reg.cv_errors_)]


def test_digits_accuracy_with_defaults():
    # Measured 0.993 (the split of tests/test_estimators.py); KronMLPClassifier reaches 0.984.
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    clf = KronNTKClassifier().fit(X_train, y_train)
    assert clf.score(X_test, y_test) >= 0.97
    assert clf.factor_shape_ == (8, 8)


def _regression_data(n=40, d=6):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d))
    return X, X[:, 0] - X[:, 1] ** 2


@pytest.mark.parametrize(
    "value,expected",
    [(0.0, "alpha"), (-1.0, "alpha"), (np.nan, "alpha"), (np.inf, "alpha"), ([1.0, -2.0], "alpha"), ("big", "alpha")],
)
def test_bad_alpha_is_named(value, expected):
    X, y = _regression_data()
    message = rf"The '{expected}' parameter of KronNTKRegressor must be 'auto', a finite"
    with pytest.raises(ValidationError, match=message):
        KronNTKRegressor(alpha=value).fit(X, y)


@pytest.mark.parametrize(
    "param,value,expected",
    [
        ("shift", -0.5, "a finite float in the range [0.0, inf)"),
        ("selection", "kfold", "'loo' or 'gcv'"),
        ("energy", 0.0, "a finite float in the range (0.0, 1.0]"),
        ("memory_budget", 0, "an int in the range [1, inf) or None"),
        ("normalize", "no", "a bool"),
    ],
)
def test_other_parameters_are_checked_at_fit(param, value, expected):
    X, y = _regression_data()
    message = f"The '{param}' parameter of KronNTKClassifier must be {expected}. Got {value!r} instead."
    with pytest.raises(ValidationError) as info:
        KronNTKClassifier(**{param: value}).fit(X, y > 0)
    assert str(info.value) == message


def test_too_many_points_for_the_budget_names_it_and_the_way_out():
    X, y = _regression_data(n=200)
    message = r"KronNTKRegressor.fit on n = 200 points .* memory budget of 500.0 KiB"
    with pytest.raises(MemoryBudgetError, match=message):
        KronNTKRegressor(memory_budget=500 * 1024).fit(X, y)
    with pytest.raises(MemoryBudgetError, match=r"train KronMLPClassifier/KronSGD instead"):
        KronNTKClassifier(alpha=[1e-3, 1e-2], memory_budget=600_000).fit(X, y > 0)  # 2 x 320 KB > 600 KB
    with pytest.raises(MemoryBudgetError, match=r"\(one 200 x 200 float64 matrix\)"):
        KronNTKClassifier(alpha=1e-3, memory_budget=300_000).fit(X, y > 0)  # 320 KB > 300 KB
    reg = KronNTKRegressor(alpha=1e-3, memory_budget=340_000).fit(X, y)  # a float alpha factors H in place
    assert not hasattr(KronNTKRegressor(), "dual_coef_") and reg.dual_coef_.shape == (200, 1)


def test_targets_and_widths_of_the_wrong_shape_are_kronsgd_errors():
    X, y = _regression_data()
    with pytest.raises(ValidationError, match="inconsistent numbers of samples"):
        KronNTKRegressor().fit(X, y[:-1])
    with pytest.raises(ValidationError, match=r"y has 39 values"):
        KronNTKRegressor().fit(KroneckerData.from_dense(X, shape=(2, 3)), y[:-1])
    with pytest.raises(ValidationError, match="y"):
        KronNTKRegressor().fit(X, y.reshape(-1, 2, 1).repeat(2, axis=0)[: len(y)])
    reg = KronNTKRegressor().fit(X, y)
    with pytest.raises(ValidationError, match="X has 5 features, but KronNTKRegressor is expecting 6 features"):
        reg.predict(X[:, :5])
    with pytest.raises(ValidationError, match=r"X has factor dims \(3, 2\), but KronNTKRegressor was fitted"):
        reg.predict(KroneckerData.from_dense(X, shape=(3, 2)))
    with pytest.raises(ValidationError, match="Unknown label type"):
        KronNTKClassifier().fit(X, y)
    with pytest.raises(ValidationError, match="at least 2 classes"):
        KronNTKClassifier().fit(X, np.ones(len(y)))


def test_zero_points_are_left_out_and_predict_the_mean():
    X, y = _regression_data()
    X[5] = 0.0
    reg = KronNTKRegressor(alpha=0.01).fit(X, y)
    assert reg.X_fit_.n == 39 and reg.dual_coef_.shape == (39, 1)
    assert reg.predict(np.zeros((2, 6))) == pytest.approx([reg.y_mean_[0]] * 2)
    with pytest.raises(ValidationError, match="X has no point with a nonzero norm"):
        reg.fit(np.zeros((4, 6)), np.arange(4.0))
    assert not hasattr(reg, "dual_coef_")


def test_without_normalize_the_kernel_keeps_the_norms():
    data, test = _points(40, seed=6), _points(9, seed=7)
    y = _target(data)
    reg = KronNTKRegressor(alpha=0.1, shift=1.0, normalize=False).fit(data, y)
    ridge = KernelRidge(alpha=0.1, kernel="precomputed").fit(ntk_gram(data, 1.0, normalize=False), y - y.mean())
    expected = ridge.predict(ntk_cross(test, data, 1.0, normalize=False)) + y.mean()
    np.testing.assert_allclose(reg.predict(test), expected, rtol=0, atol=1e-8)
    assert not np.allclose(reg.predict(test), KronNTKRegressor(alpha=0.1, shift=1.0).fit(data, y).predict(test))
    auto = KronNTKRegressor(shift=1.0, normalize=False).fit(data, y)
    mean_diagonal = np.mean(np.diag(ntk_gram(data, 1.0, normalize=False)))
    assert auto.alphas_[0] == pytest.approx(1e-6 * mean_diagonal)
    huge = KroneckerData([f * 1e160 for f in test.factors])
    with pytest.raises(ValidationError, match="X has points whose squared norm overflows float64"):
        reg.predict(huge)


def test_multi_output_and_predictions_one_by_one():
    X, y = _regression_data(n=50)
    Y = np.stack([y, -y + 1], axis=1)  # (n, 2)
    reg = KronNTKRegressor().fit(X, Y)
    assert reg.predict(X).shape == (50, 2)
    new = np.random.default_rng(1).standard_normal((5, 6))
    one_by_one = np.concatenate([reg.predict(new[i : i + 1]) for i in range(5)])
    np.testing.assert_allclose(one_by_one, reg.predict(new), rtol=1e-12, atol=1e-12)
    # A training point against itself has ρ = 1 within rounding, and Pr has a square-root
    # kink at ρ = 1: 1e-16 in ρ moves the kernel entry by about 1e-9.
    np.testing.assert_allclose(reg.predict(X[:1]), reg.predict(X[:5])[:1], rtol=1e-6)
    assert reg.score(X, Y) > 0.9
