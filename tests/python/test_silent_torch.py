"""Nothing silent (issue 12), the PyTorch side: from_torch and to_torch keep torch's
parameter vector, accept what torch MLPs contain and refuse the rest by name. Skipped
without PyTorch (in a separate module so that test_silent.py runs without it)."""
from __future__ import annotations

import numpy as np
import pytest

import fisherkit

torch = pytest.importorskip("torch")
nn = torch.nn


def test_from_torch_bias_free_has_torchs_parameter_vector(rng):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6, bias=False), nn.Tanh(), nn.Linear(6, 3, bias=False)).double()
    m = fisherkit.MLP.from_torch(net)
    assert m.n_params == sum(p.numel() for p in net.parameters()) == 42
    theta = torch.cat([p.detach().reshape(-1) for p in net.parameters()]).numpy()
    np.testing.assert_array_equal(m.flat_params(), theta)
    X = rng.standard_normal((5, 4))
    y = rng.integers(0, 3, 5)
    from torch.func import functional_call, grad, vmap

    names = [k for k, _ in net.named_parameters()]

    def loss(params, x, t):
        out = functional_call(net, dict(zip(names, params)), (x[None],))
        return nn.functional.cross_entropy(out, t[None])

    G = vmap(grad(loss), in_dims=(None, 0, 0))(tuple(net.parameters()), torch.from_numpy(X), torch.from_numpy(y))
    want = torch.cat([g.reshape(5, -1) for g in G], dim=1).detach().numpy()
    np.testing.assert_allclose(m.per_sample_grads(X, y), want, rtol=1e-12, atol=1e-14)
    assert fisherkit.fisher(m, X, shape="full").to_dense().shape == (42, 42)


class _Wrapper(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(6, 5), nn.GELU(), nn.Dropout(0.2),
                                 nn.Sequential(nn.Linear(5, 4), nn.SiLU(), nn.Identity()), nn.Linear(4, 3))

    def forward(self, x):
        return self.net(x)


def test_from_torch_accepts_what_torch_mlps_contain(rng):
    torch.manual_seed(1)
    net = _Wrapper().double().eval()
    for p in net.parameters():
        assert p.requires_grad
    m = fisherkit.MLP.from_torch(net)
    assert m.activations == ["gelu", "silu"] and m.sizes == [6, 5, 4, 3]
    X = rng.standard_normal((7, 2, 3))
    with torch.no_grad():
        want = net(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(m.forward(X.reshape(7, 6)), want, rtol=1e-12, atol=1e-13)


def test_from_torch_bfloat16_needs_a_dtype():
    net = nn.Sequential(nn.Linear(3, 2)).to(torch.bfloat16)
    with pytest.raises(TypeError, match=r"module 0 \(Linear\) weight is bfloat16.*dtype=numpy.float32"):
        fisherkit.MLP.from_torch(net, "gaussian")
    m = fisherkit.MLP.from_torch(net, "gaussian", dtype=np.float32)
    np.testing.assert_array_equal(m.weights[0], net[0].weight.float().detach().numpy())


@pytest.mark.parametrize("build, match", [
    (lambda: nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2)), r"module 1 \(LayerNorm\)"),
    (lambda: nn.Sequential(nn.Linear(3, 4), nn.Sequential(nn.Tanh(), nn.BatchNorm1d(4)), nn.Linear(4, 2)),
     r"module 1\.1 \(BatchNorm1d\)"),
    (lambda: nn.Sequential(nn.Linear(3, 4), nn.GELU(approximate="tanh"), nn.Linear(4, 2)), r"module 1: only the exact"),
    (lambda: nn.Sequential(nn.Linear(3, 4), nn.Flatten(), nn.Linear(4, 2)), r"module 1 \(Flatten\)"),
])
def test_from_torch_refuses_others_naming_module_and_position(build, match):
    with pytest.raises(ValueError, match=match):
        fisherkit.MLP.from_torch(build())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_to_torch_round_trip(dtype, rng):
    m = fisherkit.MLP.init([4, 6, 5, 3], ["gelu", "silu"], seed=2, dtype=dtype, bias=[True, False, True])
    net = m.to_torch()
    assert isinstance(net, nn.Sequential) and net[2].bias is None
    X = rng.standard_normal((5, 4)).astype(dtype)
    with torch.no_grad():
        want = net(torch.from_numpy(X)).numpy()
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(m.forward(X), want, rtol=tol, atol=tol)
    back = fisherkit.MLP.from_torch(net)
    assert back.dtype == dtype and back.activations == m.activations
    np.testing.assert_array_equal(back.flat_params(), m.flat_params())
    with pytest.raises(ValueError, match="activation 'erf' of layer 0 has no torch.nn module"):
        fisherkit.MLP.init([2, 3, 1], "erf", "gaussian").to_torch()
