"""The NTK theory module against Monte Carlo, closed forms, dense gradients and real runs."""

import math

import numpy as np
import pytest

from kronsgd import KroneckerData, KronSGD, TwoLayerNet, ValidationError
from kronsgd.cli.demo import synthetic_task
from kronsgd.data.contract import dense_w0
from kronsgd.theory import (
    DriftTracker,
    contraction_factor,
    empirical_ntk,
    fire_fraction,
    lr_limit,
    min_eigenvalue,
    ntk_gram,
    orthant_probability,
    theory_report,
)


def random_data(n, dims=(3, 4), seed=0):
    rng = np.random.default_rng(seed)
    return KroneckerData([rng.standard_normal((n, d)) for d in dims])


def unit_dense(data):
    X = data.to_dense()  # (n, d)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def orthant_by_1d_integral(rho, b):
    """Pr[Z1 > b, Z2 > b] = ∫_b^∞ φ(z) Φ̄((b - ρ z)/√(1 - ρ²)) dz, composite Simpson, |ρ| < 1."""
    z = np.linspace(b, b + 40.0, 40001)  # (N,)
    tail = np.vectorize(math.erfc)((b - rho * z) / math.sqrt(1.0 - rho * rho) / math.sqrt(2.0)) / 2.0
    f = np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi) * tail
    h = z[1] - z[0]
    return h / 3.0 * (f[0] + f[-1] + 4.0 * f[1:-1:2].sum() + 2.0 * f[2:-1:2].sum())


# ---- the kernel formula ----------------------------------------------------------------
@pytest.mark.parametrize("shift", [0.0, 0.3, 1.0, 2.5])
@pytest.mark.parametrize("rho", [-0.95, -0.6, -0.1, 0.0, 0.2, 0.7, 0.95])
def test_orthant_probability_matches_an_independent_integral(shift, rho):
    expected = orthant_by_1d_integral(rho, shift)
    got = float(orthant_probability(rho, shift))
    # Probabilities below 1e-30 (here ~1e-58 at ρ = -0.95, b = 2.5) keep less relative accuracy.
    assert got == pytest.approx(expected, rel=1e-9 if expected > 1e-30 else 1e-5, abs=1e-300)


@pytest.mark.parametrize("shift", [0.0, 1e-6, 0.01, 0.5, 1.5, 3.0])
def test_orthant_probability_agrees_with_owens_t(shift):
    special = pytest.importorskip("scipy.special")
    rho = np.array([-0.999999, -0.99, -0.5, -0.01, 0.01, 0.4, 0.9, 0.999999])
    # Pr = Φ̄(b) - 2 T(b, √((1 - ρ)/(1 + ρ))) for the upper orthant at equal thresholds.
    expected = fire_fraction(shift) - 2.0 * special.owens_t(shift, np.sqrt((1.0 - rho) / (1.0 + rho)))
    got = orthant_probability(rho, shift)
    # Owen's T loses relative accuracy on tiny orthants (Φ̄ - 2T cancels): atol covers those.
    np.testing.assert_allclose(got, expected, rtol=1e-11, atol=1e-16)


@pytest.mark.parametrize("shift", [0.0, 0.5, 1.0, 2.0, 4.0])
def test_orthant_probability_limits(shift):
    p = orthant_probability(np.array([-1.0, 0.0, 1.0]), shift)
    assert p[0] == pytest.approx(max(0.0, 1.0 - 2.0 * (1.0 - fire_fraction(shift))), abs=1e-15)  # Pr[b < Z < -b]
    assert p[1] == pytest.approx(fire_fraction(shift) ** 2, rel=1e-13)  # independent
    assert p[2] == pytest.approx(fire_fraction(shift), rel=1e-13)  # Z1 = Z2
    grid = orthant_probability(np.linspace(-1.0, 1.0, 401), shift)
    assert np.all(np.diff(grid) >= 0.0)  # dPr/dρ = φ2(b, b; ρ) >= 0


def test_ntk_gram_at_zero_shift_is_the_arc_cosine_kernel():
    data = random_data(12)
    rho = np.clip(unit_dense(data) @ unit_dense(data).T, -1.0, 1.0)  # (n, n)
    np.fill_diagonal(rho, 1.0)  # arccos amplifies a rounding of 1 - 1e-16 to 1e-8
    expected = rho * (np.pi - np.arccos(rho)) / (2.0 * np.pi)
    np.testing.assert_allclose(ntk_gram(data, 0.0), expected, rtol=1e-12, atol=1e-14)


def test_ntk_gram_is_the_same_in_small_blocks():
    data = random_data(23, seed=8)
    whole = ntk_gram(data, 0.7)
    small = ntk_gram(data, 0.7, block_bytes=8 * data.rank**2 * 25)  # blocks of 5 x 5 points
    np.testing.assert_allclose(small, whole, rtol=1e-13)  # BLAS may sum in another order
    np.testing.assert_array_equal(whole, whole.T)
    np.testing.assert_array_equal(small, small.T)


@pytest.mark.parametrize("shift", [0.0, 0.8])
def test_ntk_gram_matches_monte_carlo(shift):
    """H[i, j] = E_w[<x_i, x_j> 1[w·x_i > b] 1[w·x_j > b]] over 200k Gaussian w, within 5 standard errors."""
    data = random_data(6, seed=1)
    X = unit_dense(data)  # (n, d)
    w = np.random.default_rng(7).standard_normal((200_000, data.d))  # (N, d)
    fired = (w @ X.T > shift).astype(np.float64)  # (N, n)
    both = fired.T @ fired / w.shape[0]  # (n, n) Monte Carlo Pr[both fire]
    rho = X @ X.T
    se = np.abs(rho) * np.sqrt(both * (1.0 - both) / w.shape[0])
    H = ntk_gram(data, shift)
    assert np.all(np.abs(H - rho * both) <= 5.0 * se + 1e-12)
    assert np.abs(H - rho * both).max() > 0.0  # a real comparison, not two copies of one number


def test_trainer_initial_kernel_converges_to_ntk_gram():
    """The engine's W0 is i.i.d. Gaussian, so H(0) is a Monte Carlo estimate of H over m neurons."""
    data = random_data(6, seed=2)
    m, shift = 16384, 0.6
    trainer = KronSGD(TwoLayerNet(data.dims, m, shift=shift, seed=3), data, np.zeros(6), 0.1, 6, dtype=np.float64)
    H0, H = empirical_ntk(trainer), ntk_gram(data, shift)
    both = np.clip(H0 / trainer.G, 0.0, 1.0)
    se = np.abs(trainer.G) * np.sqrt(both * (1.0 - both) / m)
    assert np.all(np.abs(H0 - H) <= 5.0 * se + 1e-12)


def test_empirical_ntk_is_the_gram_of_dense_gradients():
    """Σ_r <∂f_i/∂w_r, ∂f_j/∂w_r>, with ∂f_i/∂w_r = a_r 1[w_r·x_i > b] x_i / √m, written out."""
    data, y = synthetic_task(8, (3, 4), seed=4)
    net = TwoLayerNet(data.dims, 96, shift=0.4, seed=5)
    trainer = KronSGD(net, data, y, lr=0.3, batch_size=3, dtype=np.float64)
    trainer.run(15)
    X, W = unit_dense(data), net.dense_weights()  # (n, d), (m, d)
    gate = (X @ W.T > net.shift) * net.a[:, 0] / math.sqrt(net.width)  # (n, m)
    J = gate[:, :, None] * X[:, None, :]  # (n, m, d) per-point gradient of f_i
    dense = np.einsum("imd,jmd->ij", J, J)
    np.testing.assert_allclose(empirical_ntk(trainer), dense, rtol=1e-10, atol=1e-12)


# ---- eigenvalues and rates ---------------------------------------------------------------
@pytest.mark.parametrize("shift", [0.0, 1.0])
def test_min_eigenvalue_positive_on_distinct_points_and_zero_on_duplicates(shift):
    data = random_data(20, seed=3)
    exact = min_eigenvalue(data, shift)
    assert exact.method == "exact" and exact.lower == exact.upper == exact.value > 1e-4
    assert float(exact) == pytest.approx(np.linalg.eigvalsh(ntk_gram(data, shift))[0], rel=1e-12)
    twice = data[list(range(20)) + [0]]  # a repeated point makes two rows of H equal, up to rounding:
    # BLAS may round <x_0, x_0'> one ulp below 1, where the kernel has a sqrt(1 - ρ²) cusp
    assert abs(float(min_eigenvalue(twice, shift))) < 1e-7 * float(np.linalg.eigvalsh(ntk_gram(twice, shift))[-1])


def test_subsample_bound_is_an_upper_bound_and_exact_at_full_size():
    data = random_data(40, seed=4)
    exact = float(min_eigenvalue(data, 0.5))
    est = min_eigenvalue(data, 0.5, method="subsample", size=12, trials=5, seed=1)
    assert est.method == "subsample" and est.lower == 0.0 and est.upper == est.value
    assert est.value >= exact - 1e-12  # Cauchy interlacing
    H = ntk_gram(data, 0.5)
    from_matrix = min_eigenvalue(H, method="subsample", size=12, trials=5, seed=1)
    assert from_matrix.value == pytest.approx(est.value, rel=1e-12)  # the same subsets, the same blocks
    assert float(min_eigenvalue(data, 0.5, method="subsample", size=40)) == pytest.approx(exact, rel=1e-12)


def test_min_eigenvalue_validates():
    data = random_data(5)
    with pytest.raises(ValidationError, match="shift is required"):
        min_eigenvalue(data)
    with pytest.raises(ValidationError, match="shift must be None"):
        min_eigenvalue(np.eye(3), 0.5)
    with pytest.raises(ValidationError, match="symmetric"):
        min_eigenvalue(np.arange(9.0).reshape(3, 3))
    with pytest.raises(ValidationError, match="method"):
        min_eigenvalue(data, 0.5, method="nystrom")


def test_contraction_factor_is_the_worst_case_of_the_linear_step():
    rng = np.random.default_rng(5)
    H = ntk_gram(random_data(10, seed=5), 0.5)
    lr = 0.9 * lr_limit(H)
    q = contraction_factor(H, lr)
    lam, vec = np.linalg.eigh(H)
    assert q == pytest.approx(1.0 - lr * lam[0], rel=1e-12)
    assert contraction_factor(lam[0], lr) == pytest.approx(q, rel=1e-12)
    step = np.eye(10) - lr * H
    for e in rng.standard_normal((20, 10)):
        assert np.linalg.norm(step @ e) <= q * np.linalg.norm(e) * (1 + 1e-12)
    assert np.linalg.norm(step @ vec[:, 0]) == pytest.approx(q, rel=1e-10)  # attained
    assert contraction_factor(H, 3.0 * lr_limit(H)) > 1.0  # too large a rate: no contraction


# ---- drift -------------------------------------------------------------------------------
def test_weight_move_and_patterns_match_dense_weights():
    data, y = synthetic_task(10, (3, 4), seed=6)
    net = TwoLayerNet(data.dims, 64, shift=0.3, seed=7)
    trainer = KronSGD(net, data, y, lr=0.5, batch_size=4, dtype=np.float64)
    tracker = DriftTracker(trainer, norm="spectral")
    history = trainer.run(25, log_every=5, callback=tracker)
    assert history[0]["max_weight_move"] == 0.0 and history[0]["pattern_change"] == 0.0
    W0 = dense_w0(net.seed, net.width, net.d)  # (m, d)
    W = net.dense_weights()
    X = unit_dense(data)
    moved = np.linalg.norm(W - W0, axis=1)  # (m,)
    changed = (X @ W.T > net.shift) != (X @ W0.T > net.shift)  # (n, m)
    last = history[-1]
    assert last["max_weight_move"] == pytest.approx(moved.max(), rel=1e-9)
    assert last["pattern_change"] == pytest.approx(changed.any(axis=0).mean())
    assert last["flip_fraction"] == pytest.approx(changed.mean())
    H0, H = tracker.ntk0, empirical_ntk(trainer)
    assert last["ntk_drift"] == pytest.approx(np.linalg.norm(H - H0, 2) / np.linalg.norm(H0, 2), rel=1e-9)
    assert last["max_weight_move"] > 0 and [r["step"] for r in tracker.records] == [0, 5, 10, 15, 20, 25]


def test_tracker_refuses_another_trainer_and_dense_engines():
    from kronsgd import DenseSGD

    data, y = synthetic_task(6, (2, 3))
    trainer = KronSGD(TwoLayerNet(data.dims, 32), data, y, 0.1, 2)
    other = KronSGD(TwoLayerNet(data.dims, 16), data, y, 0.1, 2)
    with pytest.raises(ValidationError, match="per trainer"):
        DriftTracker(trainer).measure(other)
    with pytest.raises(ValidationError, match="KronSGD"):
        DriftTracker(DenseSGD(TwoLayerNet(data.dims, 16), data, y, 0.1, 2))


def test_full_batch_gd_follows_the_predicted_linear_rate_and_drift_shrinks_with_width():
    """Full batch, float64, shift 0: L(t) <= L(0) q^{2t} with q = 1 - η λ_min(H), and wider nets move less."""
    n, lr, steps = 16, 0.5, 200
    data, y = synthetic_task(n, (4, 4), seed=3)
    H = ntk_gram(data, 0.0)
    assert lr <= lr_limit(H)
    q = contraction_factor(H, lr)
    at_100 = {}  # width -> the history record at step 100
    for width in (256, 1024, 4096):
        trainer = KronSGD(TwoLayerNet(data.dims, width, shift=0.0, seed=1), data, y, lr, n, dtype=np.float64)
        history = trainer.run(steps if width == 4096 else 100, log_every=20, callback=DriftTracker(trainer))
        at_100[width] = next(e for e in history if e["step"] == 100)
    loss = {e["step"]: e["loss"] for e in history}  # the widest run
    # The bound, with 10% slack on the rate for the finite-width kernel (its λ_min is within ~2%).
    slack = 1.0 - 0.9 * lr * float(min_eigenvalue(H))
    for t, value in loss.items():
        assert value <= loss[0] * slack ** (2 * t) * (1 + 1e-9)
    # After the fast modes have died the slowest one sets the pace: the measured rate is q².
    measured = (loss[200] / loss[100]) ** (1 / 100)
    assert abs(math.log(measured) / math.log(q * q) - 1.0) < 0.1
    report = theory_report(trainer)
    assert report.predicted_loss_factor == pytest.approx(q * q) and report.measured_loss_factor < q * q
    for key in ("max_weight_move", "pattern_change", "ntk_drift"):
        values = [at_100[w][key] for w in (256, 1024, 4096)]
        assert values[0] > values[1] > values[2] > 0.0, (key, values)
        assert values[2] < 0.6 * values[0]
