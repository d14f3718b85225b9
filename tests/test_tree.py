"""The AsynchronousTree: exact queries under lazy maintenance, its kernels against NumPy twins,
and training with fired="tree" against fired="scan"."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import naive
from kronsgd import KroneckerData, KronSGD, MemoryBudgetError, TwoLayerNet, ValidationError
from kronsgd.engine.tree import FiredTree
from kronsgd.kernels import step as K
from kronsgd.kernels import tree as TK
from kronsgd.kernels import tree_fold as TF
from kronsgd.kernels.intrinsics import compare16_scalar

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DTYPES = [np.float32, np.float64]
TOPS = [1, 16, 4096]  # the level a query starts from: the root, a middle one, level 0 for small m


def _tree(P, slack=0.0):
    off = TK.layout(P.shape[0])
    tree = TK.empty_tree(P.shape[1], P.shape[0])
    TK.build(P, tree, off, slack, 0, P.shape[1])
    return tree, off


def _query(P, tree, off, j, t, top=1):
    out = np.zeros(P.shape[0], np.int64)
    frontier = np.zeros((2, off[1]), np.int64)
    end, reads = TK.query(P, tree, off, TK.start_level(P.shape[0], top), j, t, out, 0, frontier)
    return out[:end], reads


def _thresholds(P, j, rng):
    """Random thresholds, keys themselves (ties do not fire), and all-fired / none-fired ones."""
    col = P[:, j].astype(np.float64)
    return [*rng.standard_normal(3), *rng.choice(col, size=min(3, col.size)), col.min() - 1, col.max(), np.inf]


@st.composite
def updates(draw):
    """A key matrix, a start level, and batches of updates like folds: (rows, col0, col1, deltas)."""
    m = draw(st.one_of(st.integers(1, 17), st.integers(18, 300), st.sampled_from([256, 4096, 4097, 5000])))
    n = draw(st.integers(1, 6))
    top = draw(st.sampled_from(TOPS))
    dtype = draw(st.sampled_from(DTYPES))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    P = rng.standard_normal((m, n)).astype(dtype)
    if draw(st.booleans()):  # many equal keys: ties with the thresholds and between siblings
        P = np.round(P).astype(dtype)
    steps = []
    for _ in range(draw(st.integers(0, 6))):
        rows = np.unique(rng.integers(0, m, size=rng.integers(1, m + 1)))
        col0 = int(rng.integers(0, n))
        col1 = int(rng.integers(col0 + 1, n + 1))
        scale = rng.choice([0.1, 1.0, 5.0])
        steps.append((rows, col0, col1, (scale * rng.standard_normal((rows.size, col1 - col0))).astype(dtype)))
    return P, top, steps, rng


def test_layout_levels_are_aligned_and_padded():
    for m in (1, 15, 16, 17, 256, 257, 4096, 70_000):
        off = TK.layout(m)
        sizes = naive.tree_levels(m)
        assert off.size == len(sizes) + 1 and sizes[-1] == 1
        assert np.all(off % 16 == 0) and np.all(np.diff(off) >= np.array(sizes))
        tree = TK.empty_tree(3, m)
        assert tree.ctypes.data % 64 == 0 and tree.shape == (3, off[-1]) and tree.dtype == np.float32
        assert np.all(tree == -np.inf)
    assert [TK.start_level(5000, top) for top in TOPS] == [4, 3, 1]  # 5000, 313, 20, 2, 1 entries
    assert TK.start_level(4096, 4096) == 0 and TK.start_level(1, 1) == 0


@FAST
@given(updates())
def test_queries_are_exact_and_bounds_stay_upper_after_any_updates(case):
    P, top, steps, rng = case
    tree, off = _tree(P)
    np.testing.assert_array_equal(tree, naive.tree_bounds(P, off))
    for rows, col0, col1, delta in steps:
        P[rows, col0:col1] += delta  # increases and decreases
        expected = tree.copy()
        naive.raise_bounds(P, expected, off, rows, col0, col1)
        TF.raise_bounds(P, tree, off, rows, col0, col1)
        np.testing.assert_array_equal(tree, expected)
        assert naive.bounds_are_upper(P, tree, off)
    for j in range(P.shape[1]):
        for t in _thresholds(P, j, rng):
            found, _ = _query(P, tree, off, j, t, top)
            np.testing.assert_array_equal(found, np.flatnonzero(P[:, j] > t))
    for j in range(P.shape[1]):  # a rebuild restores the tight tree
        TK.rebuild_column(P, tree, off, 0.0, j, np.zeros(P.shape[0]))
    np.testing.assert_array_equal(tree, naive.tree_bounds(P, off))


@FAST
@given(updates())
def test_a_tight_tree_reads_no_more_than_its_bound(case):
    P, top, _, rng = case
    P = P.astype(np.float32).astype(P.dtype)  # keys float32 holds exactly: bounds built without slack are the keys
    tree, off = _tree(P)
    start = TK.start_level(P.shape[0], top)
    for j in range(P.shape[1]):
        for t in _thresholds(P, j, rng):
            found, reads = _query(P, tree, off, j, t, top)
            assert reads <= TK.tight_visits(found.size, P.shape[0], off, start)


def test_edge_cases_one_neuron_all_fired_none_fired_ties():
    P = np.array([[0.5, -1.0, 2.0]], np.float32)  # m = 1
    tree, off = _tree(P)
    assert tree.shape == (3, 16) and list(off) == [0, 16]
    assert list(_query(P, tree, off, 0, 0.5)[0]) == []  # a key equal to the threshold does not fire
    assert list(_query(P, tree, off, 0, 0.4999)[0]) == [0]
    P = np.full((300, 2), 3.0)  # m not a power of two, all keys equal
    tree, off = _tree(P)
    assert list(_query(P, tree, off, 1, 2.0)[0]) == list(range(300))
    assert list(_query(P, tree, off, 1, 3.0)[0]) == []
    assert _query(P, tree, off, 1, 3.0)[1] == 1  # only the root's line was read
    assert _query(P, tree, off, 1, 3.0, top=4096)[1] == off[1] // 16  # from level 0: its lines, scanned


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_vector_compare_of_16_children_matches_the_scalar_one(dtype):
    rng = np.random.default_rng(3)
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, np.nextafter(1.0, 2.0), np.nextafter(1.0, 0.0)])
    for _ in range(200):
        col = rng.choice(np.concatenate([special, rng.standard_normal(8)]), size=48).astype(dtype)
        start = int(rng.integers(0, 33))  # unaligned starts too
        for t in (*special[1:], float(col[start]), 0.5, -3):
            expected = sum(1 << c for c in range(16) if col[start + c] > t)
            assert TK._children(col, start, 0, t) == expected  # the compare queries use
            assert compare16_scalar(col, start, t) == expected


def test_float64_keys_between_two_float32_bounds_are_found_exactly():
    one32 = np.nextafter(np.float32(1.0), np.float32(2.0)).astype(np.float64)  # the float32 after 1
    keys = np.array([1.0 + 1e-12, 1.0 - 1e-12, 1.0, 0.5 * (1.0 + one32), one32, -1e-300, 1e-300, 3e38 * 1.5])
    P = np.repeat(keys[:, None], 2, axis=1)  # (8, 2) float64, most not representable in float32
    tree, off = _tree(P)
    assert tree.dtype == np.float32 and np.all(tree[:, : keys.size].astype(np.float64) >= P.T)
    for t in (*keys, 1.0 - 2e-12, 0.0, -0.0):
        np.testing.assert_array_equal(_query(P, tree, off, 1, t)[0], np.flatnonzero(keys > t))


def test_a_query_enters_only_nodes_above_the_threshold():
    m = 16**4
    P = np.zeros((m, 1), np.float32)
    P[[5, 40_000], 0] = 1.0  # two keys fire, far apart
    tree, off = _tree(P)
    found, reads = _query(P, tree, off, 0, 0.5)
    assert list(found) == [5, 40_000]
    assert reads == 1 + 1 + 2 + 2 + 2 + 2  # the root's line; levels 4..1 enter 1, 2, 2, 2 nodes; 2 keys confirmed


def _record(P, a, G, y, batch, shift, dtype, slots=1):
    """One update record (as the trainer logs it) computed from P for ``batch``, in slot 0."""
    m, n = P.shape
    B = batch.size
    fired_ptr, fired_rows, f = np.zeros(B + 1, np.int64), np.zeros(m * B + 1, np.int64), np.zeros((B, a.shape[1]))
    nnz = K.forward_batch(P, a, batch, shift, 1 / np.sqrt(m), fired_ptr, fired_rows, f)
    coefs = np.zeros(max(nnz, 1), dtype)
    K.coefficients(a, f - y[batch], fired_ptr, fired_rows, -0.7 / np.sqrt(m), coefs)
    g_rows, row_ptr = np.zeros((slots, B, n), dtype), np.zeros((slots, m + 1), np.int64)
    owner, coef = np.zeros((slots, m * B + 1), np.int64), np.zeros((slots, m * B + 1), dtype)
    touched, n_touched = np.zeros((slots, m * B + 1), np.int64), np.zeros(slots, np.int64)
    n_touched[0] = K.group_by_row(m, fired_ptr, fired_rows, coefs, row_ptr[0], owner[0], coef[0], touched[0])
    g_rows[0] = G[batch]
    return (g_rows, row_ptr, owner, coef), (touched, n_touched)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [1, 37, 200, 256, 5000])
def test_fold_and_raise_adds_exactly_what_fold_records_adds(dtype, m):
    rng = np.random.default_rng(m)
    n = 17
    P = rng.standard_normal((m, n)).astype(dtype)
    a, G = rng.choice([-1.0, 1.0], size=(m, 2)), rng.standard_normal((n, n)).astype(dtype)
    y = 3 * rng.standard_normal((n, 2))
    record, lists = _record(P, a, G, y, rng.choice(n, size=5, replace=False), 0.3, dtype)
    (tree, off), headroom, counts = _tree(P), np.zeros(m), np.zeros(2, np.int64)
    TK.headroom_of(P, tree, headroom, 4, 15)
    folded, reference = P.copy(), P.copy()
    touched = TF.fold_and_raise(folded, tree, off, *record, np.arange(1), 4, 15, headroom, 0.05, counts, *lists)
    assert touched == K.fold_records(reference, *record, np.arange(1), 4, 15) == counts.sum()
    np.testing.assert_array_equal(folded, reference)
    assert naive.bounds_are_upper(folded, tree, off)
    assert naive.headroom_holds(folded, tree, headroom, 4, 15)
    untouched = np.r_[0:4, 15:17]
    np.testing.assert_array_equal(tree[untouched], _tree(P)[0][untouched])  # other columns untouched


@st.composite
def records(draw):
    """Keys, a column range, and update records (slot arrays as in the log) of every size of change."""
    m, n = draw(st.integers(1, 120)), draw(st.integers(1, 8))
    dtype, top = draw(st.sampled_from(DTYPES)), draw(st.sampled_from(TOPS))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    col0 = int(rng.integers(0, n))
    col1 = int(rng.integers(col0 + 1, n + 1))
    P = rng.standard_normal((m, n)).astype(dtype)
    out = []
    for _ in range(draw(st.integers(1, 12))):
        B = int(rng.integers(1, 4))
        counts = rng.integers(0, 3, size=m) * (rng.random(m) < 0.3)  # pairs per row
        nnz = int(counts.sum())
        row_ptr = np.concatenate([[0], np.cumsum(counts)])[None].astype(np.int64)  # (1, m + 1)
        scale = draw(st.sampled_from([1e-4, 1e-2, 1.0]))  # within the headroom, or past it
        coef = (scale * rng.standard_normal((1, nnz + 1))).astype(dtype)
        owner = rng.integers(0, B, size=(1, nnz + 1))
        out.append((rng.standard_normal((1, B, n)).astype(dtype), row_ptr, owner, coef))
    return P, top, col0, col1, out, rng


@FAST
@given(records())
def test_folds_spend_or_renew_headroom_and_keep_every_query_exact(case):
    P, top, col0, col1, recs, rng = case
    headroom, counts, slack = np.zeros(P.shape[0]), np.zeros(2, np.int64), 0.01
    tree, off = _tree(P, slack)
    np.testing.assert_array_equal(tree, naive.tree_bounds(P, off, slack))
    TK.headroom_of(P, tree, headroom, col0, col1)
    reference = P.copy()
    for rec in recs:
        touched = TF.fold_and_raise(
            P, tree, off, *rec, np.zeros(1, np.int64), col0, col1, headroom, slack, counts, None, None
        )  # every row swept (the trainer passes the touched lists: tests/test_kernels.py checks both agree)
        assert touched == K.fold_records(reference, *rec, np.zeros(1, np.int64), col0, col1) == counts.sum()
        np.testing.assert_array_equal(P, reference)
        assert naive.bounds_are_upper(P, tree, off)
        assert naive.headroom_holds(P, tree, headroom, col0, col1)
    for j in range(col0, col1):
        for t in _thresholds(P, j, rng):
            found, _ = _query(P, tree, off, j, t, top)
            np.testing.assert_array_equal(found, np.flatnonzero(P[:, j] > t))
        TK.rebuild_column(P, tree, off, slack, j, headroom)  # a rebuild may lower bounds: headroom follows
        assert naive.headroom_holds(P, tree, headroom, col0, col1)
    np.testing.assert_array_equal(tree[col0:col1], naive.tree_bounds(P, off, slack)[col0:col1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_tree_forward_equals_the_scan_bit_for_bit_and_rebuilds_loose_columns(dtype):
    rng = np.random.default_rng(1)
    m, n, C = 500, 9, 2
    P = rng.standard_normal((m, n)).astype(dtype)
    tree = FiredTree(P)
    P -= 2.0  # every key decreases: the bounds stay valid but loose
    a = rng.choice([-1.0, 1.0], size=(m, C))
    batch = np.array([3, 0, 3, 8, 5], np.int64)  # repeats allowed
    scan = (np.zeros(6, np.int64), np.zeros(m * 5, np.int64), np.zeros((5, C)))
    via_tree = (np.zeros(6, np.int64), np.zeros(m * 5, np.int64), np.zeros((5, C)))
    counters = {}
    for _ in range(40):  # the waste of the loose columns accumulates until they are rebuilt
        nnz = tree.forward(0, P, a, batch, 0.9, 1 / np.sqrt(m), *via_tree, counters)
    assert nnz == K.forward_batch(P, a, batch, 0.9, 1 / np.sqrt(m), *scan)
    np.testing.assert_array_equal(via_tree[0], scan[0])
    np.testing.assert_array_equal(via_tree[1][:nnz], scan[1][:nnz])
    np.testing.assert_array_equal(via_tree[2], scan[2])  # same sums in the same order
    assert counters["tree_rebuilds"] == 4  # once per distinct loose column, then tight for good
    used = [0, 3, 5, 8]
    np.testing.assert_array_equal(tree.bounds[used], naive.tree_bounds(P, tree.off, tree.slack)[used])
    assert counters["tree_reported"] == 40 * nnz


def _task(n=48, dims=(6, 5), outputs=2, seed=0):
    rng = np.random.default_rng(seed)
    return KroneckerData([rng.standard_normal((n, 2, d)) for d in dims]), rng.standard_normal((n, outputs))


@pytest.mark.parametrize("dtype", DTYPES)
def test_training_with_the_tree_gives_the_same_bits_as_the_scan(dtype):
    data, y = _task()
    runs = {}
    for fired, window in (("scan", 3), ("tree", "auto")):  # the scan defers its folds, the tree cannot
        net = TwoLayerNet(data.dims, width=200, outputs=2, shift=1.2, seed=4)
        trainer = KronSGD(net, data, y, lr=0.3, batch_size=6, dtype=dtype, fired=fired, window=window, keep_log=True)
        history = trainer.run(120, log_every=25)
        assert trainer.fired_mode == fired and all(h["fired_mode"] == fired for h in history)
        runs[fired] = (trainer.P.copy(), trainer.alpha.copy(), [h["loss"] for h in history], trainer)
    np.testing.assert_array_equal(runs["tree"][0], runs["scan"][0])
    np.testing.assert_array_equal(runs["tree"][1], runs["scan"][1])
    assert runs["tree"][2] == runs["scan"][2]
    tree_trainer = runs["tree"][3]
    assert tree_trainer.window_size == 1 and runs["scan"][3].window_size == 3
    c = tree_trainer.counters()
    assert c["tree_reported"] == c["nnz"] > 0 and c["tree_reads"] > c["tree_reported"]
    assert naive.bounds_are_upper(tree_trainer.P, tree_trainer.tree.bounds, tree_trainer.tree.off)
    replay = KronSGD(TwoLayerNet(data.dims, width=200, outputs=2, shift=1.2, seed=4), data, y, lr=0.3,
                     batch_size=6, dtype=dtype, fired="tree")  # fmt: skip
    replay.replay(tree_trainer.records)
    np.testing.assert_array_equal(replay.P, tree_trainer.P)


def test_a_worker_with_records_pending_falls_back_to_the_scan_and_keeps_the_tree_valid():
    data, y = _task()
    runs = []
    for fired in ("scan", "tree"):
        net = TwoLayerNet(data.dims, width=120, outputs=2, shift=1.0, seed=1)
        trainer = KronSGD(net, data, y, lr=0.3, batch_size=4, dtype=np.float64, fired=fired, window=1)
        trainer.window_size = 3  # records now wait in the log: the tree, indexing P as folded, must not answer
        trainer.run(40, log_every=13)
        runs.append(trainer)
    np.testing.assert_array_equal(runs[1].P, runs[0].P)
    assert 0 < runs[1].counters()["tree_reported"] < runs[1].counters()["nnz"]  # some steps scanned
    assert naive.bounds_are_upper(runs[1].P, runs[1].tree.bounds, runs[1].tree.off)


@pytest.mark.parametrize("dtype", DTYPES)
def test_two_workers_with_the_tree_keep_p_equal_to_p0_plus_alpha_g(dtype):
    data, y = _task(n=96)
    net = TwoLayerNet(data.dims, width=160, outputs=2, shift=1.0, seed=2)
    trainer = KronSGD(net, data, y, lr=0.3, batch_size=5, dtype=dtype, fired="tree", workers=2, max_staleness=2)
    trainer.run(200, log_every=60)
    recomputed = trainer.net.preactivations(trainer.data, prepared=True)  # P0 + alpha G from scratch
    tol = 1e-9 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(trainer.P, recomputed, rtol=0, atol=tol * np.abs(recomputed).max())
    tree = trainer.tree
    assert naive.bounds_are_upper(trainer.P, tree.bounds, tree.off)
    for w, (start, stop) in enumerate(tree.ranges):  # each worker keeps the headroom of its own columns
        assert naive.headroom_holds(trainer.P, tree.bounds, tree.headroom[w], start, stop)
    c = trainer.counters()
    assert c["steps"] == 200 and c["tree_reported"] >= c["nnz"] > 0  # a stale update is computed again


def test_fired_is_validated_and_auto_is_recorded():
    data, y = _task()
    net = TwoLayerNet(data.dims, width=64, outputs=2)
    kw = dict(lr=0.1, batch_size=4)
    with pytest.raises(ValidationError, match="fired must be one of"):
        KronSGD(net, data, y, fired="heap", **kw)
    with pytest.raises(ValidationError, match='window must be 1 or "auto" when fired="tree"'):
        KronSGD(net, data, y, fired="tree", window=4, **kw)
    with pytest.raises(MemoryBudgetError, match="fired-neuron tree"):
        KronSGD(net, data, y, fired="tree", memory_budget=10_000, **kw)
    assert KronSGD(net, data, y, fired="auto", window=4, **kw).fired_mode == "scan"  # the tree needs window 1
    auto = KronSGD(net, data, y, **kw)
    assert auto.fired_mode in ("scan", "tree") and (auto.tree is not None) == (auto.fired_mode == "tree")
    assert auto.run(3)[-1]["fired_mode"] == auto.fired_mode


def test_explicit_batches_larger_than_the_batch_size_take_the_tree_path_safely():
    """run(batches=...) may pass more points than batch_size; the tree's buffers grow like the scan's."""
    data, y = _task()
    runs = []
    for fired in ("scan", "tree"):
        net = TwoLayerNet(data.dims, width=120, outputs=2, shift=1.0, seed=1)
        trainer = KronSGD(net, data, y, lr=0.3, batch_size=2, dtype=np.float64, fired=fired, window=1)
        trainer.run(batches=[np.arange(k, k + 9) for k in range(0, 30, 3)])
        runs.append(trainer)
    np.testing.assert_array_equal(runs[1].P, runs[0].P)
    np.testing.assert_array_equal(runs[1].alpha, runs[0].alpha)
