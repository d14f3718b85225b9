"""TwoLayerNet.to_torch: a dense PyTorch module that computes the same outputs as predict."""

import io
import sys

import numpy as np
import pytest

from kronsgd import KroneckerData, KronSGD, MemoryBudgetError, TwoLayerNet

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


def test_missing_torch_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(ImportError, match=r"pip install torch==2\.13\.0"):
        TwoLayerNet((2, 3), width=4).to_torch()
