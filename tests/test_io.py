"""TwoLayerNet.save / kronsgd.load: exact round trips, atomic writes, clear errors on bad files."""

import json
import os
import zipfile

import numpy as np
import pytest

import kronsgd
from kronsgd import KroneckerData, KronSGD, TwoLayerNet, ValidationError, load
from kronsgd.model import files as io
from zipfiles import bit_flips, entry_regions


def _points(n, dims, rank, seed):
    rng = np.random.default_rng(seed)
    return KroneckerData([rng.standard_normal((n, rank, d)) for d in dims])


def _trained(dims=(3, 4), rank=1, outputs=1, width=48, blocks=1, seed=0):
    """A net trained by ``blocks`` KronSGD runs on different points (one support block each)."""
    net = TwoLayerNet(dims, width=width, outputs=outputs, seed=seed + 7)
    rng = np.random.default_rng(seed)
    for b in range(blocks):
        data = _points(20 + 5 * b, dims, rank, seed + b)
        y = rng.standard_normal((data.n, outputs))
        dtype = np.float32 if b % 2 == 0 else np.float64  # alpha of both dtypes in one file
        KronSGD(net, data, y, lr=0.5, batch_size=5, seed=b, dtype=dtype).run(15, log_every=0)
    return net


CASES = {
    "plain": {},
    "multi-output": {"outputs": 3},
    "k=3, rank 2": {"dims": (2, 3, 2), "rank": 2},
    "two blocks": {"blocks": 2, "outputs": 2},
    "untrained": {"blocks": 0},
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_round_trip_predicts_bit_identically(tmp_path, case):
    net = _trained(**case)
    path = tmp_path / "model.npz"
    net.save(path)
    loaded = load(path)
    assert (loaded.dims, loaded.width, loaded.outputs, loaded.shift, loaded.seed, loaded.normalize) == (
        net.dims,
        net.width,
        net.outputs,
        net.shift,
        net.seed,
        net.normalize,
    )
    assert len(loaded._support) == len(net._support)
    for (data, alpha), (data2, alpha2) in zip(net._support, loaded._support, strict=True):
        assert alpha2.dtype == alpha.dtype
        np.testing.assert_array_equal(alpha2, alpha)
        for f, f2 in zip(data.factors, data2.factors, strict=True):
            np.testing.assert_array_equal(f2, f)
    new = _points(9, net.dims, case.get("rank", 1), seed=99)
    np.testing.assert_array_equal(loaded.predict(new), net.predict(new))


def test_file_holds_metadata_and_support_but_not_w0(tmp_path):
    net = _trained(dims=(5, 6), width=64, outputs=2, blocks=2)
    path = tmp_path / "model.npz"
    net.save(str(path))
    with zipfile.ZipFile(path) as archive:
        names = sorted(archive.namelist())
        meta = json.loads(np.load(path, allow_pickle=False)["metadata"].tobytes())
    expected = ["metadata.npy"] + [f"block{b}_{part}.npy" for b in (0, 1) for part in ("alpha", "factor0", "factor1")]
    assert names == sorted(expected)  # no W0 (64 x 30) and no a: both come from the seed
    assert meta["format"] == "kronsgd.TwoLayerNet" and meta["format_version"] == 2
    assert meta["init"] == "gaussian" and meta["init_rank"] is None and meta["w0_stream"] == 2
    assert meta["library_version"] == kronsgd.__version__
    assert meta["dims"] == [5, 6] and meta["width"] == 64 and meta["outputs"] == 2 and meta["seed"] == net.seed
    assert meta["shift"] == net.shift and meta["normalize"] is True
    assert [b["alpha_dtype"] for b in meta["blocks"]] == ["float32", "float64"]
    assert meta["checksum"]["algorithm"] == "sha256" and len(meta["checksum"]["value"]) == 64


def _entries(path):
    with np.load(path, allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def _rewrite(path, entries, **meta_changes):
    meta = json.loads(entries["metadata"].tobytes())
    meta.update(meta_changes)
    entries = dict(entries, metadata=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    with open(path, "wb") as handle:
        np.savez(handle, **entries)


@pytest.fixture
def saved(tmp_path):
    net = _trained(width=32, outputs=2)
    path = tmp_path / "model.npz"
    net.save(path)
    return net, path


def _fails(path, *phrases):
    with pytest.raises(ValidationError) as info:
        load(path)
    message = str(info.value)
    assert str(path) in message
    for phrase in phrases:
        assert phrase in message, message
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no raw zipfile/numpy traceback


def test_truncated_files_are_reported_with_the_path(saved):
    _, path = saved
    content = path.read_bytes()
    for size in (0, 3, 30, len(content) // 2, len(content) - 10):
        path.write_bytes(content[:size])
        _fails(path, "Cannot load a kronsgd model from")


def test_a_bit_flip_in_any_byte_of_any_array_is_refused_naming_the_file(tmp_path):
    # One bit is flipped in every byte of the file. In an entry's stored .npy (its header and
    # data: the metadata JSON, alpha, the factors) every flip must be refused. Elsewhere (the ZIP
    # headers and directory) a flip is refused or lands where nothing is read back (a
    # timestamp, a local header's copy of the sizes), and then the loaded net is unchanged.
    net, path = _trained(width=8, outputs=2), tmp_path / "model.npz"  # small: the file is read once per byte
    net.save(path)
    content = path.read_bytes()
    regions = entry_regions(path)
    assert set(regions) == {"metadata", "block0_alpha", "block0_factor0", "block0_factor1"}
    inside = {position for region in regions.values() for position in region}
    new = _points(6, net.dims, 1, seed=5)
    expected = net.predict(new)
    with bit_flips(path) as flip:
        for position in range(len(content)):
            flip(position)
            try:
                loaded = load(path)
            except ValidationError as exc:
                assert str(path) in str(exc)
                continue
            assert position not in inside, f"a flip at byte {position} of an array entry was not detected"
            np.testing.assert_array_equal(loaded.predict(new), expected)
    assert len(inside) == sum(len(region) for region in regions.values())  # the entries do not overlap


def test_a_changed_array_fails_the_checksum(saved):
    _, path = saved
    entries = _entries(path)
    entries["block0_alpha"] = entries["block0_alpha"] + np.float32(1e-3)  # a valid archive, other numbers
    _rewrite(path, entries)
    _fails(path, "SHA-256 checksum", "damaged")


def test_edited_metadata_fails_the_checksum(saved):
    _, path = saved
    entries = _entries(path)
    meta = json.loads(entries["metadata"].tobytes())
    _rewrite(path, entries, shift=meta["shift"] + 1e-9)  # still a valid net, but not the one saved
    _fails(path, "SHA-256 checksum")


def test_other_format_versions_are_refused(saved):
    _, path = saved
    _rewrite(path, _entries(path), format_version=3, library_version="9.0.0")
    _fails(path, "format version 3", "kronsgd 9.0.0", "reads format versions 1, 2", "Upgrade kronsgd")
    _rewrite(path, _entries(path), format_version="1")
    _fails(path, "format version '1'")


def test_foreign_files_are_refused(tmp_path):
    npz = tmp_path / "other.npz"
    np.savez(npz, weights=np.arange(3.0))
    _fails(npz, "not a kronsgd model", "weights")
    npy = tmp_path / "array.npy"
    np.save(npy, np.arange(3.0))
    _fails(npy, "ZIP signature")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    _fails(text, "ZIP signature")
    other = tmp_path / "other_format.npz"
    np.savez(other, metadata=np.frombuffer(json.dumps({"format": "something.else"}).encode(), dtype=np.uint8))
    _fails(other, "'something.else'")
    garbled = tmp_path / "garbled.npz"
    np.savez(garbled, metadata=np.arange(5.0))
    _fails(garbled, "not UTF-8 JSON")


def test_metadata_that_disagrees_with_the_arrays_is_refused(saved):
    _, path = saved
    entries = _entries(path)
    _rewrite(path, entries, width=33)
    _fails(path, "entry 'block0_alpha' has shape (32, 20)", "(33, 20)")
    _rewrite(path, entries, dims="3x4")
    _fails(path, "dims")
    extra = dict(entries, stray=np.zeros(2))
    _rewrite(path, extra)
    _fails(path, "unexpected ['stray']")


def test_missing_file(tmp_path):
    with pytest.raises(kronsgd.FileFormatError, match=r"absent\.npz': no such file"):
        load(tmp_path / "absent.npz")
    with pytest.raises(kronsgd.KronsgdError):  # the same base class as every other kronsgd error
        load(tmp_path)  # a folder is no model file either


# ---- atomic writes -----------------------------------------------------------------------
@pytest.mark.parametrize("fail_in", ["savez", "fsync", "replace"])
def test_a_failed_save_leaves_the_previous_file_intact(tmp_path, monkeypatch, fail_in):
    old, new = _trained(seed=1), _trained(seed=2, outputs=2)
    path = tmp_path / "model.npz"
    old.save(path)
    before = path.read_bytes()

    def savez_half_then_fail(handle, **entries):
        handle.write(b"PK\x03\x04 partial archive")
        raise OSError("disk full")

    def fail(*args, **kwargs):
        raise OSError("simulated failure")

    target = {"savez": (io.np, "savez", savez_half_then_fail), "fsync": (io.os, "fsync", fail)}
    target["replace"] = (io.os, "replace", fail)
    module, name, replacement = target[fail_in]
    monkeypatch.setattr(module, name, replacement)
    with pytest.raises(OSError):
        new.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.npz"]  # the temporary file was removed
    points = _points(4, old.dims, 1, seed=3)
    np.testing.assert_array_equal(load(path).predict(points), old.predict(points))


def test_save_replaces_an_existing_file_and_writes_no_temporary_left(tmp_path):
    path = tmp_path / "model.npz"
    _trained(seed=1).save(path)
    net = _trained(seed=2)
    net.save(path)
    assert os.listdir(tmp_path) == ["model.npz"]
    assert load(path).seed == net.seed


def test_save_refuses_a_non_path(saved):
    net, _ = saved
    with pytest.raises(ValidationError, match="path must be a str or os.PathLike"):
        net.save(3.5)
