"""TwoLayerNet.to_torch: a dense PyTorch module that computes the same outputs as predict."""

import io

import numpy as np
import pytest

from kronsgd import KroneckerData, KronSGD, MemoryBudgetError, TwoLayerNet, ValidationError

torch = pytest.importorskip("torch")


def _trained(outputs, normalize=True, dims=(4, 5), rank=2, width=96):
    rng = np.random.default_rng(outputs)
    data = KroneckerData([rng.standard_normal((40, rank, d)) for d in dims])
    net = TwoLayerNet(dims, width=width, outputs=outputs, seed=3, normalize=normalize)
    y = rng.standard_normal((40, outputs))
    trainer = KronSGD(net, data, y, lr=0.5 if normalize else 0.02, batch_size=8, seed=1, dtype=np.float64)
    trainer.run(60, log_every=0)
    assert trainer.history[-1]["loss"] < trainer.history[0]["loss"]  # the weights moved away from W0
    return net, data


@pytest.mark.parametrize("outputs", [1, 3])
@pytest.mark.parametrize("normalize", [True, False])
def test_module_matches_predict(outputs, normalize):
    net, data = _trained(outputs, normalize)
    module = net.to_torch()
    x = torch.from_numpy(data.to_dense() * 2.5)  # (n, d); not unit rows, so normalisation matters
    out = module(x).detach().numpy()
    expected = net.predict(KroneckerData([f * 2.5 ** (1 / 2) for f in data.factors]))
    assert out.shape == expected.shape == ((40,) if outputs == 1 else (40, outputs))
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-10 * np.abs(expected).max())


def test_module_state_and_dtypes():
    net, data = _trained(2, dims=(2, 3, 2), rank=1, width=40)
    module = net.to_torch()
    params, buffers = dict(module.named_parameters()), dict(module.named_buffers())
    assert list(params) == ["weight"] and params["weight"].shape == (40, 12)
    assert params["weight"].dtype == torch.float64
    np.testing.assert_array_equal(params["weight"].detach().numpy(), net.dense_weights())
    np.testing.assert_array_equal(buffers["a"].numpy(), net.a)
    assert float(buffers["shift"]) == net.shift
    assert "in_features=12" in repr(module) and "normalize=True" in repr(module)
    x = torch.from_numpy(data.to_dense())
    single = module.float()(x.float()).detach().numpy()  # float32 copy for deployment
    np.testing.assert_allclose(single, net.predict(data), rtol=1e-4, atol=1e-5)


def test_whole_module_survives_torch_save_and_zero_rows_give_zero():
    net, data = _trained(1)
    module = net.to_torch()
    buffer = io.BytesIO()
    torch.save(module, buffer)
    buffer.seek(0)
    restored = torch.load(buffer, weights_only=False)
    x = torch.from_numpy(data.to_dense())
    torch.testing.assert_close(restored(x), module(x), rtol=0, atol=0)
    zero = torch.zeros((2, net.d), dtype=torch.float64)
    assert torch.equal(module(zero), torch.zeros(2, dtype=torch.float64))


def test_bad_input_shape_is_refused():
    net, _ = _trained(1, width=16)
    module = net.to_torch()
    with pytest.raises(ValueError, match=r"x must be an \(n, 20\) tensor of dense inputs\. Got shape \(3, 19\)"):
        module(torch.zeros((3, 19), dtype=torch.float64))


def test_dense_weights_above_the_budget_are_refused():
    net = TwoLayerNet((30, 30), width=64)
    with pytest.raises(MemoryBudgetError, match=r"dense_weights\(\) of 64 neurons x d = 900"):
        net.to_torch(max_bytes=64 * 900 * 8 - 1)
    assert net.to_torch(max_bytes=64 * 900 * 8).weight.shape == (64, 900)


@pytest.mark.parametrize("dtype", ["float32", np.float32, np.dtype("float32"), "torch.float32"])
@pytest.mark.parametrize("outputs", [1, 3])
def test_float32_module_matches_predict_to_float32_rounding(dtype, outputs):
    net, data = _trained(outputs)
    dtype = torch.float32 if dtype == "torch.float32" else dtype
    module = net.to_torch(dtype=dtype)
    assert {t.dtype for t in [*module.parameters(), *module.buffers()]} == {torch.float32}
    x = torch.from_numpy(data.to_dense().astype(np.float32) * 2.5)  # (n, d)
    out = module(x).detach().numpy()
    expected = net.predict(KroneckerData([f * 2.5 ** (1 / 2) for f in data.factors]))
    assert out.dtype == np.float32 and out.shape == expected.shape
    # float32 rounding of weights (d = 20 terms per neuron) and inputs: relative error ~1e-6
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    assert np.abs(out - expected).max() > 0  # it really computed in float32


@pytest.mark.parametrize("dtype", ["float64", np.float64, torch.float64, torch.double])
def test_float64_module_is_the_default_and_matches_predict(dtype):
    net, data = _trained(2)
    module = net.to_torch(dtype=dtype)
    assert module.weight.dtype == module.a.dtype == module.shift.dtype == torch.float64
    np.testing.assert_array_equal(module.weight.detach().numpy(), net.to_torch().weight.detach().numpy())
    out = module(torch.from_numpy(data.to_dense())).detach().numpy()
    expected = net.predict(data)
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-10 * np.abs(expected).max())


@pytest.mark.parametrize("dtype", ["float16", "int64", np.int32, torch.float16, torch.bfloat16, None, 3, "fp32"])
def test_other_dtypes_are_refused(dtype):
    net = TwoLayerNet((2, 3), width=4)
    with pytest.raises(ValidationError, match=r"dtype must be float64 or float32 .*Got "):
        net.to_torch(dtype=dtype)


def test_float32_counts_both_copies_against_the_budget():
    net = TwoLayerNet((30, 30), width=64)
    with pytest.raises(MemoryBudgetError, match=r"to_torch\(dtype='float32'\) of 64 neurons x d = 900"):
        net.to_torch(max_bytes=64 * 900 * 12 - 1, dtype="float32")
    assert net.to_torch(max_bytes=64 * 900 * 12, dtype="float32").weight.dtype == torch.float32
