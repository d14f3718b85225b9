"""Every bad input gets a kronsgd error that names the argument and says what was expected.

Each case pins the message with a regex: the argument's name, the expectation and, where it
helps, what came instead. No raw numpy/numba exception may escape the public API.
"""

import numpy as np
import pytest

from kronsgd import (
    DenseSGD,
    KroneckerData,
    KronSGD,
    KronsgdError,
    MemoryBudgetError,
    TwoLayerNet,
    ValidationError,
)

N, DIMS, WIDTH = 10, (3, 4), 16  # P and alpha in float64: 2 · 16 · 10 · 8 = 2560 B; G: 10 · 10 · 8 = 800 B
TRAINERS = [KronSGD, DenseSGD]


def _factors(n=N, dims=DIMS, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n, d)) for d in dims]  # each (n, d_l)


def _with(array, index, value):
    out = np.array(array, dtype=float)
    out[index] = value
    return out


U, V = _factors()  # (N, 3), (N, 4)
Y = np.linspace(-1.0, 1.0, N)  # (N,)


def _trainer(cls, *, net=None, data=None, y=None, **kwargs):
    net = TwoLayerNet(DIMS, WIDTH, seed=1) if net is None else net
    data = [U, V] if data is None else data
    y = Y if y is None else y
    return cls(net, data, y, **{"lr": 0.1, "batch_size": 4, "dtype": np.float64, **kwargs})


def test_error_types_are_one_family():
    assert issubclass(ValidationError, KronsgdError) and issubclass(ValidationError, ValueError)
    assert issubclass(MemoryBudgetError, KronsgdError) and issubclass(MemoryBudgetError, MemoryError)


# ---- KroneckerData ---------------------------------------------------------------------

NOT_A_LIST = r"factors must be a list of k >= 2 arrays, each \(n, d_l\) or \(n, R, d_l\)\. Got "


@pytest.mark.parametrize(
    "factors, message",
    [
        pytest.param(np.ones((2, N, 3)), NOT_A_LIST + "ndarray", id="ndarray"),
        pytest.param(3.0, NOT_A_LIST + "float", id="number"),
        pytest.param("uv", NOT_A_LIST + "str", id="string"),
        pytest.param({"u": U, "v": V}, NOT_A_LIST + "dict", id="dict"),
        pytest.param(None, NOT_A_LIST + "NoneType", id="none"),
        pytest.param([U], r"factors must hold at least 2 arrays \(k >= 2\)\. Got 1", id="one-factor"),
        pytest.param([U, np.ones(N)], r"factors\[1\] must have 2 or 3 dimensions\. Got shape \(10,\)", id="ndim-1"),
        pytest.param(
            [U, np.ones((N, 1, 1, 4))],
            r"factors\[1\] must have 2 or 3 dimensions\. Got shape \(10, 1, 1, 4\)",
            id="ndim-4",
        ),
        pytest.param(
            [U, V[:5]],
            r"factors must all have the same number of points n; factors\[0\] has 10, factors\[1\] has 5",
            id="mismatched-n",
        ),
        pytest.param(
            [np.ones((N, 2, 3)), np.ones((N, 3, 4))],
            r"factors must all have the same rank R; factors\[0\] has 2, factors\[1\] has 3",
            id="mismatched-rank",
        ),
        pytest.param(
            [U, _with(V, (2, 3), np.nan)],
            r"factors\[1\] must be finite, but has 1 NaN or infinite value\(s\) \(the first at index \(2, 3\)",
            id="nan",
        ),
        pytest.param(
            [_with(U, (7, 0), -np.inf), V],
            r"factors\[0\] must be finite, but has 1 NaN or infinite value\(s\) \(the first at index \(7, 0\)",
            id="inf",
        ),
        pytest.param(
            [np.ones((0, 3)), np.ones((0, 4))], r"factors\[0\] must not be empty\. Got shape \(0, 3\)", id="no-points"
        ),
        pytest.param([U, np.ones((N, 0))], r"factors\[1\] must not be empty\. Got shape \(10, 0\)", id="zero-dim"),
        pytest.param([[["a", "b"]], [["c", "d"]]], r"factors\[0\] must be a numeric array\. Got dtype <U1", id="str"),
        pytest.param(
            [U, np.full((N, 4), None, dtype=object)],
            r"factors\[1\] must be a numeric array\. Got dtype object",
            id="object",
        ),
        pytest.param([[[1.0, 2.0], [3.0]], V], r"factors\[0\] must be a numeric array\. Got \[\[1\.0", id="ragged"),
        pytest.param([U + 1j, V], r"factors\[0\] must be real\. Got complex dtype complex128", id="complex"),
    ],
)
def test_bad_factors(factors, message):
    with pytest.raises(ValidationError, match=message):
        KroneckerData(factors)


@pytest.mark.parametrize(
    "index, message",
    [
        pytest.param(N, r"index must index 10 points \(values in \[-10, 10\)\)\. Got values in \[10, 10\]", id="n"),
        pytest.param(-N - 1, r"index must index 10 points .*Got values in \[-11, -11\]", id="-n-1"),
        pytest.param([0, 99], r"index must index 10 points .*Got values in \[0, 99\]", id="list"),
        pytest.param([], r"index selects no points", id="empty-list"),
        pytest.param(slice(5, 5), r"index selects no points", id="empty-slice"),
        pytest.param(np.zeros(N, dtype=bool), r"index selects no points", id="all-false-mask"),
        pytest.param(
            np.ones(3, dtype=bool), r"index as a boolean mask must have shape \(10,\)\. Got \(3,\)", id="mask"
        ),
        pytest.param(1.5, r"index must be a 1-d sequence of integer indices\. Got 1\.5 \(float\)", id="float"),
        pytest.param([[1, 2]], r"index must be a 1-d sequence of integer indices", id="2-d"),
    ],
)
def test_bad_index(index, message):
    data = KroneckerData([U, V])
    with pytest.raises(ValidationError, match=message):
        data[index]


def test_good_indices_select_the_right_points():
    data = KroneckerData([U, V])
    np.testing.assert_array_equal(data[[-1, 2]].factors[0][:, 0], U[[9, 2]])
    assert data[U[:, 0] > 0].n == int((U[:, 0] > 0).sum())


def test_gram_refuses_other_points_of_other_dims():
    data = KroneckerData([U, V])
    with pytest.raises(
        ValidationError, match=r"other must have dims \(3, 4\) to pair with these points\. Got \(4, 3\)"
    ):
        data.gram(other=KroneckerData([V, U]))
    with pytest.raises(ValidationError, match=r"other must be a KroneckerData\. Got ndarray"):
        data.gram(other=np.ones((N, 12)))
    with pytest.raises(ValidationError, match=r"rows must index 10 points"):
        data.gram(rows=[N])


def test_to_dense_refuses_above_its_budget():
    data = KroneckerData([U, V])  # 10 · 12 · 8 = 960 B dense
    with pytest.raises(MemoryBudgetError, match=r"to_dense\(\) .* would take 960 B, above the memory budget of 16 B"):
        data.to_dense(max_bytes=16)
    with pytest.raises(ValidationError, match=r"max_bytes must be an int in the range \[1, inf\)\. Got 0"):
        data.to_dense(max_bytes=0)
    assert data.to_dense(max_bytes=960).shape == (N, 12)  # exactly the budget is allowed


# ---- TwoLayerNet -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        pytest.param({"width": 0}, r"width must be an int in the range \[1, inf\)\. Got 0", id="width-0"),
        pytest.param(
            {"width": 1.5}, r"width must be an int in the range \[1, inf\)\. Got 1\.5 \(float\)", id="width-1.5"
        ),
        pytest.param(
            {"width": True}, r"width must be an int in the range \[1, inf\)\. Got True \(bool\)", id="width-bool"
        ),
        pytest.param({"width": "8"}, r"width must be an int in the range \[1, inf\)\. Got '8' \(str\)", id="width-str"),
        pytest.param({"outputs": 0}, r"outputs must be an int in the range \[1, inf\)\. Got 0", id="outputs-0"),
        pytest.param({"shift": -0.5}, r"shift must be >= 0\.0\. Got -0\.5", id="shift-negative"),
        pytest.param({"shift": float("nan")}, r"shift must be a finite real number\. Got nan", id="shift-nan"),
        pytest.param({"shift": "1"}, r"shift must be a real number\. Got '1' \(str\)", id="shift-str"),
        pytest.param({"seed": -1}, r"seed must be an int in the range \[0, \d+\]\. Got -1", id="seed-negative"),
        pytest.param(
            {"seed": 1.0}, r"seed must be an int in the range \[0, \d+\]\. Got 1\.0 \(float\)", id="seed-float"
        ),
        pytest.param(
            {"dims": (12,)}, r"dims must be a sequence of k >= 2 factor dimensions\. Got \(12,\)", id="dims-1"
        ),
        pytest.param({"dims": 12}, r"dims must be a sequence of k >= 2 factor dimensions\. Got 12", id="dims-int"),
        pytest.param({"dims": (3, 0)}, r"dims\[1\] must be an int in the range \[1, inf\)\. Got 0", id="dims-zero"),
        pytest.param(
            {"dims": (-3, 4)}, r"dims\[0\] must be an int in the range \[1, inf\)\. Got -3", id="dims-negative"
        ),
        pytest.param({"dims": (3, 4.0)}, r"dims\[1\] must be an int .*Got 4\.0 \(float\)", id="dims-float"),
        pytest.param({"normalize": 1}, r"normalize must be True or False\. Got 1", id="normalize-int"),
        pytest.param({"normalize": "yes"}, r"normalize must be True or False\. Got 'yes'", id="normalize-str"),
        pytest.param({"normalize": None}, r"normalize must be True or False\. Got None", id="normalize-none"),
    ],
)
def test_bad_net_parameters(kwargs, message):
    with pytest.raises(ValidationError, match=message):
        TwoLayerNet(**{"dims": DIMS, "width": WIDTH, **kwargs})


def test_net_accepts_the_edges_of_each_range():
    net = TwoLayerNet(np.array([1, 1]), width=np.int64(1), outputs=1, shift=0, seed=0, normalize=np.True_)
    assert (net.dims, net.width, net.shift, net.normalize) == ((1, 1), 1, 0.0, True)


def test_dense_weights_refuses_above_its_budget():
    net = TwoLayerNet(DIMS, WIDTH)  # 16 · 12 · 8 = 1536 B
    with pytest.raises(MemoryBudgetError, match=r"dense_weights\(\) .* 1\.5 KiB, above the memory budget of 16 B"):
        net.dense_weights(max_bytes=16)


def test_predict_names_the_data_argument():
    net = TwoLayerNet(DIMS, WIDTH)
    with pytest.raises(ValidationError, match=r"data has dims \(4, 3\) but the net expects dims \(3, 4\)"):
        net.predict([V, U])
    with pytest.raises(ValidationError, match=r"data must be a KroneckerData or a list of factor arrays\. Got ndarray"):
        net.predict(np.ones((N, 12)))


# ---- KronSGD and DenseSGD --------------------------------------------------------------

ZERO_ROW = [_with(U, 2, 0.0), V]  # point 2 is the zero vector
BAD_DTYPE = r"dtype must be numpy\.float32 or numpy\.float64\. Got "


@pytest.mark.parametrize("cls", TRAINERS)
@pytest.mark.parametrize(
    "kwargs, message",
    [
        pytest.param(
            {"y": Y[:5]},
            r"y must have shape \(10,\) or \(10, 1\) to match the data and the net's outputs\. Got \(5,\)",
            id="y-short",
        ),
        pytest.param(
            {"data": [U[:8], V[:8]]}, r"y must have shape \(8,\) or \(8, 1\) .*Got \(10,\)", id="data-shorter-than-y"
        ),
        pytest.param({"y": np.ones((N, 1, 1))}, r"y must have 1 or 2 dimensions\. Got shape \(10, 1, 1\)", id="y-3d"),
        pytest.param({"y": np.ones((N, 2))}, r"y must have shape \(10,\) or \(10, 1\) .*Got \(10, 2\)", id="y-outputs"),
        pytest.param(
            {"y": np.ones((N, 2)), "net": TwoLayerNet(DIMS, WIDTH, outputs=3)},
            r"y must have shape \(10, 3\) .*Got \(10, 2\)",
            id="y-outputs-3",
        ),
        pytest.param(
            {"y": _with(Y, 3, np.nan)}, r"y must be finite, but has 1 NaN .*\(the first at index \(3,\)", id="y-nan"
        ),
        pytest.param({"y": _with(Y, 0, np.inf)}, r"y must be finite, but has 1 NaN or infinite", id="y-inf"),
        pytest.param({"y": "abc"}, r"y must be a numeric array\. Got 'abc' \(str\)", id="y-str"),
        pytest.param(
            {"data": ZERO_ROW},
            r"data has 1 point\(s\) of zero norm \(the first is index 2\).*pass normalize=False",
            id="zero-norm-point",
        ),
        pytest.param({"lr": 0}, r"lr must be > 0\.0\. Got 0\.0", id="lr-0"),
        pytest.param({"lr": -0.1}, r"lr must be > 0\.0\. Got -0\.1", id="lr-negative"),
        pytest.param({"lr": float("nan")}, r"lr must be a finite real number\. Got nan", id="lr-nan"),
        pytest.param({"lr": float("inf")}, r"lr must be a finite real number\. Got inf", id="lr-inf"),
        pytest.param({"lr": "0.1"}, r"lr must be a real number\. Got '0\.1' \(str\)", id="lr-str"),
        pytest.param({"batch_size": 0}, r"batch_size must be an int in the range \[1, 10\]\. Got 0", id="batch-0"),
        pytest.param({"batch_size": N + 1}, r"batch_size must be an int in the range \[1, 10\]\. Got 11", id="batch>n"),
        pytest.param({"batch_size": 2.0}, r"batch_size must be an int .*Got 2\.0 \(float\)", id="batch-float"),
        pytest.param(
            {"net": TwoLayerNet((4, 3), WIDTH)},
            r"data has dims \(3, 4\) but the net expects dims \(4, 3\)",
            id="dims-mismatch",
        ),
        pytest.param(
            {"net": TwoLayerNet((3, 4, 1), WIDTH)},
            r"data has dims \(3, 4\) but the net expects dims \(3, 4, 1\)",
            id="k-mismatch",
        ),
        pytest.param({"dtype": np.int32}, BAD_DTYPE + r"<class 'numpy\.int32'>", id="dtype-int32"),
        pytest.param({"dtype": "float16"}, BAD_DTYPE + r"'float16'", id="dtype-float16"),
        pytest.param({"dtype": None}, BAD_DTYPE + r"None", id="dtype-none"),
        pytest.param({"dtype": "garbage"}, BAD_DTYPE + r"'garbage'", id="dtype-unknown"),
        pytest.param({"net": "net"}, r"net must be a TwoLayerNet\. Got str", id="net-str"),
        pytest.param({"net": object()}, r"net must be a TwoLayerNet\. Got object", id="net-object"),
        pytest.param(
            {"data": np.ones((N, 12))},
            r"data must be a KroneckerData or a list of factor arrays\. Got ndarray",
            id="data-dense",
        ),
        pytest.param(
            {"data": [U, V[:5]]}, r"factors must all have the same number of points n", id="data-mismatched-n"
        ),
        pytest.param({"seed": -1}, r"seed must be an int in the range \[0, \d+\]\. Got -1", id="seed-negative"),
        pytest.param(
            {"memory_budget": 0}, r"memory_budget must be an int in the range \[1, inf\)\. Got 0", id="budget-0"
        ),
    ],
)
def test_bad_trainer_arguments(cls, kwargs, message):
    with pytest.raises(ValidationError, match=message):
        _trainer(cls, **kwargs)


@pytest.mark.parametrize("cls", TRAINERS)
def test_zero_norm_point_is_fine_without_normalisation(cls):
    trainer = _trainer(cls, net=TwoLayerNet(DIMS, WIDTH, normalize=False), data=ZERO_ROW)
    assert np.isfinite(trainer.run(3)[-1]["loss"])


@pytest.mark.parametrize("gram", ["dense", "on-the-fly", None, 0])
def test_bad_gram_mode(gram):
    with pytest.raises(ValidationError, match=r"gram must be one of 'auto', 'precomputed', 'on_the_fly'\. Got "):
        _trainer(KronSGD, gram=gram)


@pytest.mark.parametrize("cls", TRAINERS)
@pytest.mark.parametrize(
    "kwargs, message",
    [
        pytest.param({"steps": -1}, r"steps must be an int in the range \[0, inf\)\. Got -1", id="steps-negative"),
        pytest.param({"steps": 1.5}, r"steps must be an int .*Got 1\.5 \(float\)", id="steps-float"),
        pytest.param({"steps": "3"}, r"steps must be an int .*Got '3' \(str\)", id="steps-str"),
        pytest.param({"steps": True}, r"steps must be an int .*Got True \(bool\)", id="steps-bool"),
        pytest.param({}, r"run\(\) needs steps \(an int >= 0\) or batches", id="nothing"),
        pytest.param(
            {"batches": [[0, 1], [2, N]]},
            r"batches\[1\] must index 10 points \(values in \[-10, 10\)\)\. Got values in \[2, 10\]",
            id="index-n",
        ),
        pytest.param({"batches": [[-N - 1]]}, r"batches\[0\] must index 10 points", id="index-negative"),
        pytest.param(
            {"batches": [[0, 1], []]}, r"batches\[1\] is empty; every batch needs at least one index", id="empty"
        ),
        pytest.param({"batches": [[0.5]]}, r"batches\[0\] must be a 1-d sequence of integer indices", id="float"),
        pytest.param({"batches": 5}, r"batches must be a sequence of index arrays\. Got int", id="not-a-sequence"),
        pytest.param(
            {"steps": 3, "batches": [[0], [1]]},
            r"steps \(3\) must equal len\(batches\) \(2\) when both are given",
            id="steps-vs-batches",
        ),
        pytest.param({"steps": 2, "log_every": -1}, r"log_every must be an int in the range \[0, inf\)", id="log"),
    ],
)
def test_bad_run_arguments_change_nothing(cls, kwargs, message):
    trainer = _trainer(cls)
    with pytest.raises(ValidationError, match=message):
        trainer.run(**kwargs)
    assert trainer.step_count == 0 and trainer.history == []  # every batch is checked before the first step


# ---- memory guard ----------------------------------------------------------------------


def test_budget_below_p_and_alpha():
    with pytest.raises(
        MemoryBudgetError, match=r"P and alpha \(16 neurons x 10 points, float64.*above the memory budget"
    ):
        _trainer(KronSGD, memory_budget=2000)


def test_precomputed_gram_above_budget_names_on_the_fly():
    with pytest.raises(MemoryBudgetError, match=r"Gram matrix \(10 x 10.*above the memory budget.*gram=\"on_the_fly\""):
        # P, alpha and the log (11.4 KiB) fit; with G (800 B) and the block it is built through, not
        _trainer(KronSGD, gram="precomputed", memory_budget=12500)


def test_auto_gram_picks_on_the_fly_under_a_small_budget_and_trains_the_same():
    small = _trainer(KronSGD, gram="auto", memory_budget=12500)
    roomy = _trainer(KronSGD, gram="auto", memory_budget=2**20)
    assert (small.gram_mode, small.G) == ("on_the_fly", None)
    assert roomy.gram_mode == "precomputed" and roomy.G.shape == (N, N)
    small.run(5)
    roomy.run(5)
    np.testing.assert_allclose(small.P, roomy.P, rtol=1e-12, atol=1e-12)
    assert small.history[-1]["loss"] == pytest.approx(roomy.history[-1]["loss"], rel=1e-12)


def test_dense_trainer_budget():
    with pytest.raises(
        MemoryBudgetError, match=r"DenseSGD's dense weights and inputs .*above the memory budget.*KronSGD"
    ):
        _trainer(DenseSGD, memory_budget=100)
