"""Files written before W0 was drawn in float32 (no w0_stream field) predict the same bits as then.

The fixtures were written by kronsgd as it was before the field existed: two trained nets
(float32 and float64 runs), their checkpoints, their outputs on test points, and the state
of each checkpoint resumed and run 5 more steps.
"""

from pathlib import Path

import numpy as np
import pytest

import kronsgd
from kronsgd import KroneckerData, KronSGD, TwoLayerNet
from kronsgd.base.errors import ValidationError

FIXTURES = Path(__file__).parent / "fixtures"


def _points():
    with np.load(FIXTURES / "stream1_points.npz") as f:
        train = KroneckerData([f["train0"], f["train1"]])
        test = KroneckerData([f["test0"], f["test1"]])
        return train, f["y"], test


@pytest.mark.parametrize("name", ["f32", "f64"])
def test_old_model_file_predicts_the_same_bits(name):
    _, _, test = _points()
    net = kronsgd.load(FIXTURES / f"stream1_{name}.npz")
    assert net.w0_stream == 1 and net.init == "gaussian"
    with np.load(FIXTURES / f"stream1_{name}_expected.npz") as expected:
        np.testing.assert_array_equal(net.predict(test), expected["predict"])
        np.testing.assert_array_equal(net.preactivations(test), expected["pre"])


@pytest.mark.parametrize("name", ["f32", "f64"])
def test_old_checkpoint_resumes_to_the_same_predictions(name):
    train, y, test = _points()
    trainer = kronsgd.resume(FIXTURES / f"stream1_{name}.ckpt", train, y)
    assert trainer.net.w0_stream == 1
    with np.load(FIXTURES / f"stream1_{name}_expected.npz") as expected:
        np.testing.assert_array_equal(trainer.predict(test), expected["predict"])
    # steps after the resume use the Gram matrix as computed now (its route may round differently)
    trainer.run(5)
    tol = 1e-5 if name == "f32" else 1e-12
    with np.load(FIXTURES / f"stream1_{name}_resumed.npz") as expected:
        np.testing.assert_allclose(trainer.P, expected["P"], rtol=tol, atol=tol)
        np.testing.assert_allclose(trainer.predict(test), expected["predict"], rtol=tol, atol=tol)


def test_new_files_record_the_stream_and_round_trip(tmp_path):
    train, y, test = _points()
    for init in ("gaussian", "kronecker"):
        net = TwoLayerNet(train.dims, width=40, outputs=2, seed=5, init=init)
        assert net.w0_stream == 2
        trainer = KronSGD(net, train, y, lr=0.3, batch_size=4, dtype=np.float32)
        trainer.run(10, checkpoint=tmp_path / f"{init}.ckpt")
        net.save(tmp_path / f"{init}.npz")
        loaded = kronsgd.load(tmp_path / f"{init}.npz")
        assert loaded.config() == net.config()
        np.testing.assert_array_equal(loaded.predict(test), net.predict(test))
        resumed = kronsgd.resume(tmp_path / f"{init}.ckpt", train, y)
        assert resumed.net.config() == net.config()
        trainer.run(5)
        resumed.run(5)
        np.testing.assert_array_equal(resumed.P, trainer.P)
        np.testing.assert_array_equal(resumed.predict(test), trainer.predict(test))


def test_stream_1_and_2_draw_different_but_equally_exact_w0():
    train, _, test = _points()
    old = TwoLayerNet.from_config({**TwoLayerNet(train.dims, 40).config(), "w0_stream": 1})
    new = TwoLayerNet(train.dims, 40)
    assert old.w0_stream == 1 and new.w0_stream == 2
    X = test.normalized().to_dense()
    for net in (old, new):
        np.testing.assert_allclose(net.preactivations(test), net.dense_weights() @ X.T, rtol=1e-12, atol=1e-12)
    assert not np.allclose(old.dense_weights(), new.dense_weights())


@pytest.mark.parametrize("stream", [0, 3, True, "2"])
def test_unknown_stream_is_refused(stream):
    with pytest.raises(ValidationError, match="w0_stream"):
        TwoLayerNet.from_config({**TwoLayerNet((3, 4), 8).config(), "w0_stream": stream})


def test_a_version_2_file_without_its_init_fields_is_refused(tmp_path):
    import json

    from kronsgd.base.errors import FileFormatError

    path = tmp_path / "net.npz"
    TwoLayerNet((3, 4), 8).save(path)
    with np.load(path, allow_pickle=False) as npz:
        entries = {name: npz[name] for name in npz.files}
    meta = json.loads(entries["metadata"].tobytes())
    for field in ("init", "w0_stream"):
        broken = {k: v for k, v in meta.items() if k != field}
        entries["metadata"] = np.frombuffer(json.dumps(broken).encode(), dtype=np.uint8)
        np.savez(path, **entries)
        with pytest.raises(FileFormatError, match=f"metadata field\\(s\\) {field} are missing or malformed"):
            kronsgd.load(path)
