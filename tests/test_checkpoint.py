"""Checkpoints: exact resume, crash safety under SIGKILL, damaged files detected."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import kronsgd
from kronsgd import DenseSGD, FileFormatError, KronSGD, TwoLayerNet, ValidationError
from kronsgd.base.atomic import load_checked
from kronsgd.cli.demo import synthetic_task
from kronsgd.engine.checkpoint import KIND, VERSION
from zipfiles import bit_flips, entry_regions


def _trainer(dtype=np.float64, **kwargs):
    data, y = synthetic_task(120, (5, 6), seed=1)
    net = TwoLayerNet((5, 6), width=64, seed=2)
    return KronSGD(net, data, y, lr=0.5, batch_size=6, dtype=dtype, **kwargs), data, y


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kwargs", [{}, {"gram": "on_the_fly", "window": 3}, {"keep_log": True}])
def test_resuming_gives_the_bits_of_an_uninterrupted_run(tmp_path, dtype, kwargs):
    whole, data, y = _trainer(dtype, **kwargs)
    whole.run(200, log_every=40)
    first, _, _ = _trainer(dtype, **kwargs)
    first.run(90, log_every=40, checkpoint=tmp_path / "run.ckpt", checkpoint_every=30)
    resumed = kronsgd.resume(tmp_path / "run.ckpt", data, y)
    assert resumed.step_count == 90
    resumed.run(110, log_every=40)
    np.testing.assert_array_equal(resumed.P, whole.P)
    np.testing.assert_array_equal(resumed.alpha, whole.alpha)
    np.testing.assert_array_equal(resumed.predict(data), whole.predict(data))
    assert [h["loss"] for h in resumed.history][-1] == whole.history[-1]["loss"]
    assert resumed.counters()["nnz"] == whole.counters()["nnz"]
    if kwargs.get("keep_log"):
        assert len(resumed.records) == 200 and [r.seq for r in resumed.records] == [r.seq for r in whole.records]


def test_a_run_that_fails_leaves_a_resumable_checkpoint(tmp_path):
    trainer, data, y = _trainer(workers=3, max_staleness=2)
    victim, calls = trainer.workers[2], []
    original = victim.compute

    def failing(batch):
        calls.append(1)
        if len(calls) == 15:
            raise RuntimeError("worker two broke")
        return original(batch)

    victim.compute = failing
    with pytest.raises(RuntimeError, match="worker two broke"):
        trainer.run(300, checkpoint=tmp_path / "c.ckpt", checkpoint_every=1000)
    resumed = kronsgd.resume(tmp_path / "c.ckpt", data, y)
    assert resumed.step_count == trainer.step_count < 300
    np.testing.assert_array_equal(resumed.P, trainer.P)
    np.testing.assert_array_equal(resumed.alpha, trainer.alpha)
    resumed.run(60)
    recomputed = resumed.net.preactivations(resumed.data, prepared=True)
    np.testing.assert_allclose(resumed.P, recomputed, rtol=0, atol=1e-9 * np.abs(recomputed).max())


CHILD = textwrap.dedent(
    """
    import os, sys, time
    import numpy as np
    import kronsgd
    from kronsgd import KronSGD, TwoLayerNet
    from kronsgd.cli.demo import synthetic_task

    path, total = sys.argv[1], int(sys.argv[2])
    real_replace = os.replace

    def slow_replace(src, dst):  # widen the moment a kill can land inside a checkpoint write
        time.sleep(0.01)
        real_replace(src, dst)

    os.replace = slow_replace
    data, y = synthetic_task(256, (8, 8), seed=1)
    if os.path.exists(path):
        trainer = kronsgd.resume(path, data, y)
    else:
        trainer = KronSGD(TwoLayerNet((8, 8), 256, seed=2), data, y, lr=0.5, batch_size=8, dtype=np.float64)
    print("started", trainer.step_count, flush=True)
    trainer.run(total - trainer.step_count, log_every=0, checkpoint=path, checkpoint_every=20)
    """
)


def test_sigkill_at_random_moments_then_resume_equals_the_uninterrupted_run(tmp_path):
    script, path, total = tmp_path / "child.py", tmp_path / "run.ckpt", 3000
    script.write_text(CHILD)
    rng = np.random.default_rng(7)
    kills = starts = 0
    while True:
        child = subprocess.Popen(
            [sys.executable, str(script), str(path), str(total)], stdout=subprocess.PIPE, text=True
        )
        first = child.stdout.readline()  # the child is training from here
        assert first.startswith("started"), first
        starts += 1
        if kills < 5:
            time.sleep(rng.uniform(0.05, 0.6))
            if child.poll() is None:
                os.kill(child.pid, signal.SIGKILL)
                kills += 1
        assert child.wait(timeout=120) in (0, -signal.SIGKILL)
        if child.returncode == 0:
            break
        assert starts < 20
    assert kills >= 1
    assert not list(tmp_path.glob(".run.ckpt.*.tmp"))  # stale temporaries were cleaned by later writes

    data, y = synthetic_task(256, (8, 8), seed=1)
    done = kronsgd.resume(path, data, y)
    whole = KronSGD(TwoLayerNet((8, 8), 256, seed=2), data, y, lr=0.5, batch_size=8, dtype=np.float64)
    whole.run(total, log_every=0)
    assert done.step_count == total
    np.testing.assert_array_equal(done.alpha, whole.alpha)
    np.testing.assert_array_equal(done.P, whole.P)


def _saved_run(tmp_path):
    trainer, data, y = _trainer()
    trainer.run(30, checkpoint=tmp_path / "c.ckpt")
    return tmp_path / "c.ckpt", data, y


def test_truncated_file_is_detected(tmp_path):
    path, data, y = _saved_run(tmp_path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(FileFormatError, match=r"c\.ckpt.*(damaged|truncated)"):
        kronsgd.resume(path, data, y)


def test_a_bit_flip_in_any_byte_of_any_array_is_refused_naming_the_file(tmp_path):
    # A small run whose checkpoint holds every kind of entry: the JSON metadata, P, alpha, the
    # staleness list, a prior support block (points and alpha of an earlier run) and the kept
    # log. One bit is flipped in every byte of every entry's stored .npy (its header and data):
    # resume must refuse each flip. Every byte outside those regions (the ZIP headers and
    # directory) is flipped too: there a flip is refused or lands where nothing is read back
    # (a timestamp, a local header's copy of the sizes); then the file reads back as the same
    # metadata and arrays, from which resume rebuilds the same run (checked on the first one).
    data, y = synthetic_task(8, (2, 3), seed=1)
    earlier, y_earlier = synthetic_task(3, (2, 3), seed=5)
    net = TwoLayerNet((2, 3), width=4, seed=2)
    KronSGD(net, earlier, y_earlier, lr=0.5, batch_size=1, dtype=np.float32).run(2, log_every=0)
    path = tmp_path / "c.ckpt"
    KronSGD(net, data, y, lr=0.5, batch_size=2, dtype=np.float64, keep_log=True).run(2, log_every=0, checkpoint=path)
    raw = path.read_bytes()
    regions = entry_regions(path)
    assert set(regions) == {"metadata", "P", "alpha", "staleness", "prior0_alpha", "prior0_factor0",
                            "prior0_factor1", "rec_meta", "rec_batch", "rec_rows", "rec_owner", "rec_coef"}  # fmt: skip
    reference, (meta, arrays) = kronsgd.resume(path, data, y), load_checked(path, KIND, VERSION)
    inside = {position for region in regions.values() for position in region}
    harmless = []
    with bit_flips(path) as flip:
        for position in range(len(raw)):
            flip(position)
            if position in inside:
                with pytest.raises(FileFormatError) as info:
                    kronsgd.resume(path, data, y)
                assert str(path) in str(info.value), position
                continue
            try:
                meta_read, arrays_read = load_checked(path, KIND, VERSION)  # what resume reads first
            except FileFormatError as exc:
                assert str(path) in str(exc)
                continue
            assert meta_read == meta and arrays_read.keys() == arrays.keys()
            for name, array in arrays.items():
                np.testing.assert_array_equal(arrays_read[name], array)
                assert arrays_read[name].dtype == array.dtype
            if not harmless:
                resumed = kronsgd.resume(path, data, y)
                np.testing.assert_array_equal(resumed.P, reference.P)
                np.testing.assert_array_equal(resumed.alpha, reference.alpha)
                assert resumed.step_count == reference.step_count and resumed.history == reference.history
            harmless.append(position)
    assert len(inside) == sum(len(region) for region in regions.values())  # the entries do not overlap
    assert 0 < len(harmless) < len(raw) - len(inside)  # both outcomes occur outside the entries


def test_foreign_other_version_and_missing_files_are_refused(tmp_path):
    path, data, y = _saved_run(tmp_path)
    np.savez(tmp_path / "other.npz", X=np.ones(3))
    with pytest.raises(FileFormatError, match=r"other\.npz is not a kronsgd.checkpoint file"):
        kronsgd.resume(tmp_path / "other.npz", data, y)
    with pytest.raises(FileFormatError, match=r"nothing\.ckpt: no such file"):
        kronsgd.resume(tmp_path / "nothing.ckpt", data, y)
    from kronsgd.engine import resume as module

    version, module.READS = module.READS, (99,)
    try:
        with pytest.raises(FileFormatError, match=r"format version 2; this kronsgd reads version 99"):
            kronsgd.resume(path, data, y)
    finally:
        module.READS = version


def test_resume_checks_the_data_and_targets(tmp_path):
    path, data, y = _saved_run(tmp_path)
    with pytest.raises(FileFormatError, match="data differs"):
        kronsgd.resume(path, data[::-1], y)
    with pytest.raises(FileFormatError, match="y differs"):
        kronsgd.resume(path, data, y + 1)


def test_checkpoint_arguments_are_validated(tmp_path):
    trainer, data, y = _trainer()
    with pytest.raises(ValidationError, match="checkpoint_every needs checkpoint="):
        trainer.run(5, checkpoint_every=2)
    with pytest.raises(ValidationError, match="checkpoint must be a file path"):
        trainer.run(5, checkpoint=3)
    with pytest.raises(ValidationError, match=r"checkpoint_every must be an int in the range \[1, inf\)"):
        trainer.run(5, checkpoint=tmp_path / "x", checkpoint_every=0)
    with pytest.raises(FileFormatError, match="does not exist"):
        trainer.run(5, checkpoint=tmp_path / "no" / "dir" / "x")
    dense = DenseSGD(TwoLayerNet((5, 6), width=8), data, y, lr=0.1, batch_size=2)
    with pytest.raises(ValidationError, match="checkpoints are written by KronSGD runs"):
        dense.run(5, checkpoint=tmp_path / "d")


def test_resume_restores_the_fired_mode_and_the_backend(tmp_path):
    whole, data, y = _trainer(fired="tree")
    whole.run(30)
    first, _, _ = _trainer(fired="tree")
    first.run(20, checkpoint=tmp_path / "t.ckpt")
    resumed = kronsgd.resume(tmp_path / "t.ckpt", data, y)
    assert (resumed.fired_mode, resumed.backend) == ("tree", "threads") and resumed.tree is not None
    resumed.run(10)
    np.testing.assert_array_equal(resumed.P, whole.P)  # the tree answers as the scan would: same bits
