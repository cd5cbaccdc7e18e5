"""Cross-checks against PyTorch (torch.func) in float64, when torch is installed.

MLP.from_torch must reproduce the module's forward pass; fisherkit's per-sample gradients of
-log p(y | x), its mean gradient and its output Jacobian must equal what torch.func's
vmap(grad(...)) and jacrev compute on the same module, with torch's parameters flattened in
fisherkit's canonical order (per layer: weight row-major, then bias). The NLLs are written
with torch's own losses (cross_entropy, binary_cross_entropy_with_logits, PoissonNLLLoss)
plus the constants that make them normalised log-likelihoods.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional
from torch.func import functional_call, grad, jacrev, vmap  # noqa: E402

import fisherkit  # noqa: E402

HEADS = ["categorical", "gaussian", "bernoulli", "poisson"]
SIGMA = 0.7
# float64 against float64: both sides round differently (BLAS blocking, exp/log
# implementations) but only at the level of a few hundred eps for these small networks.
RTOL64 = 1e-11


def _archs():
    """(name, factory(seed) -> nn.Sequential in float64)."""
    def a(seed):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3), nn.ReLU(), nn.Linear(3, 4)).double()

    def b(seed):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(1, 11), nn.Sigmoid(), nn.Linear(11, 2)).double()

    def c(seed):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(3, 13), nn.Softplus(), nn.Linear(13, 2), nn.Identity(),
                             nn.Linear(2, 5), nn.ReLU(), nn.Linear(5, 3)).double()

    def d(seed):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(4, 2)).double()

    def e(seed):  # consecutive Linear layers with no activation between them
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 7), nn.Tanh(), nn.Linear(7, 2)).double()

    return {"tanh-relu": a, "sigmoid-1in": b, "softplus-identity-relu": c, "single": d, "linear-linear": e}


ARCHS = _archs()


def _params(module):
    return {k: v.detach() for k, v in module.named_parameters()}


def _flatten(tree: dict, module) -> torch.Tensor:
    """Stack per-sample gradient/Jacobian leaves (leading dims kept) in fisherkit's order:
    per Linear layer, weight row-major then bias."""
    parts = []
    for name, mod in module.named_children():
        if isinstance(mod, nn.Linear):
            W = tree[f"{name}.weight"]
            parts.append(W.reshape(*W.shape[:-2], -1))
            parts.append(tree[f"{name}.bias"])
    return torch.cat(parts, dim=-1)


def _nll(head: str, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """-log p(y | h) for one sample (h: (C,)), written with torch's losses."""
    if head == "categorical":
        return F.cross_entropy(h[None], y.long().reshape(1))
    if head == "gaussian":
        C = h.shape[-1]
        return 0.5 * torch.sum((y - h) ** 2) / SIGMA**2 + 0.5 * C * math.log(2 * math.pi * SIGMA**2)
    if head == "bernoulli":
        return F.binary_cross_entropy_with_logits(h, y, reduction="sum")
    if head == "poisson":
        loss = nn.PoissonNLLLoss(log_input=True, full=False, reduction="sum")(h, y)
        return loss + torch.lgamma(y + 1).sum()
    raise AssertionError(head)


def _labels(head: str, n: int, c: int, rng: np.random.Generator) -> np.ndarray:
    if head == "categorical":
        return rng.integers(0, c, n)
    if head == "bernoulli":
        return rng.integers(0, 2, (n, c)).astype(np.float64)
    if head == "poisson":
        return rng.poisson(2.0, (n, c)).astype(np.float64)
    return rng.standard_normal((n, c))


def _setup(arch: str, head: str, seed: int, n: int = 7):
    module = ARCHS[arch](seed)
    C = [m for m in module if isinstance(m, nn.Linear)][-1].out_features
    if head == "categorical" and C < 2:
        pytest.skip("categorical needs >= 2 outputs")
    m = fisherkit.MLP.from_torch(module, head, sigma=SIGMA)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, m.input_dim))
    y = _labels(head, n, C, rng)
    return module, m, X, y


@pytest.mark.parametrize("arch", list(ARCHS))
def test_from_torch_forward_matches(arch):
    module, m, X, _ = _setup(arch, "gaussian", 1)
    assert m.dtype == np.float64
    linears = [l for l in module if isinstance(l, nn.Linear)]
    assert m.sizes == [linears[0].in_features] + [l.out_features for l in linears]
    with torch.no_grad():
        want = module(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(m.forward(X), want, rtol=RTOL64, atol=RTOL64)
    np.testing.assert_array_equal(m.flat_params(), _flatten(_params(module), module).numpy())


def test_from_torch_copies_parameters():
    module = ARCHS["tanh-relu"](1)
    m = fisherkit.MLP.from_torch(module, "gaussian")
    theta = m.flat_params().copy()
    with torch.no_grad():
        module[0].weight.add_(1.0)
    np.testing.assert_array_equal(m.flat_params(), theta)
    m.set_flat_params(np.zeros(m.n_params))
    assert float(module[0].weight.detach().abs().sum()) > 0


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("arch", list(ARCHS))
def test_per_sample_grads_and_loglik_match_torch_func(arch, head):
    module, m, X, y = _setup(arch, head, 2)
    params = _params(module)

    def nll(p, x, t):
        return _nll(head, functional_call(module, p, (x,)), t)

    Xt, yt = torch.from_numpy(X), torch.from_numpy(np.asarray(y, dtype=np.float64))
    ll_t = -vmap(nll, in_dims=(None, 0, 0))(params, Xt, yt).numpy()
    np.testing.assert_allclose(m.log_likelihood(X, y), ll_t, rtol=RTOL64, atol=RTOL64)
    g_t = _flatten(vmap(grad(nll), in_dims=(None, 0, 0))(params, Xt, yt), module).numpy()
    G = m.per_sample_grads(X, y)
    assert G.shape == g_t.shape == (X.shape[0], m.n_params)
    np.testing.assert_allclose(G, g_t, rtol=RTOL64, atol=RTOL64 * (1 + np.abs(g_t).max()))
    # The mean gradient, as torch's autograd computes it on the batch-mean loss.
    loss, g = m.gradient(X, y)
    mean_nll = lambda p: vmap(nll, in_dims=(None, 0, 0))(p, Xt, yt).mean()  # noqa: E731
    np.testing.assert_allclose(g, _flatten(grad(mean_nll)(params), module).numpy(),
                               rtol=RTOL64, atol=RTOL64 * (1 + np.abs(g_t).max()))
    assert loss == pytest.approx(float(mean_nll(params)), rel=RTOL64, abs=RTOL64)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_output_jacobian_matches_jacrev(arch):
    module, m, X, _ = _setup(arch, "gaussian", 3, n=5)
    params = _params(module)

    def out(p, x):
        return functional_call(module, p, (x,))

    J_t = _flatten(vmap(jacrev(out), in_dims=(None, 0))(params, torch.from_numpy(X)), module).numpy()
    J = m.jacobian(X)
    assert J.shape == J_t.shape == (X.shape[0], m.output_dim, m.n_params)
    np.testing.assert_allclose(J, J_t, rtol=RTOL64, atol=RTOL64 * (1 + np.abs(J_t).max()))


def test_from_torch_keeps_the_module_dtype(dtype, eps, rng):
    torch.manual_seed(4)
    module = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).to(getattr(torch, np.dtype(dtype).name))
    m = fisherkit.MLP.from_torch(module)
    assert m.dtype == dtype and m.head == "categorical"
    X = rng.standard_normal((9, 6)).astype(dtype)
    with torch.no_grad():
        want = module.double()(torch.from_numpy(X.astype(np.float64))).numpy()
    # Rounding of two dot products of length <= 6 plus a tanh: ~20 eps; allow 64 eps.
    np.testing.assert_allclose(m.forward(X), want, rtol=0, atol=64 * eps * (1 + np.abs(want).max()))
    other = np.float64 if dtype == np.float32 else np.float32
    assert fisherkit.MLP.from_torch(module, dtype=other).dtype == other


def test_from_torch_linear_without_bias_and_bare_linear(rng):
    torch.manual_seed(5)
    module = nn.Sequential(nn.Linear(3, 4, bias=False), nn.ReLU(), nn.Linear(4, 2)).double()
    m = fisherkit.MLP.from_torch(module, "bernoulli")
    assert m.biases[0] is None  # no bias parameters: the parameter vector is torch's
    assert m.n_params == sum(p.numel() for p in module.parameters())
    X = rng.standard_normal((4, 3))
    with torch.no_grad():
        np.testing.assert_allclose(m.forward(X), module(torch.from_numpy(X)).numpy(), rtol=RTOL64, atol=RTOL64)
    lin = nn.Linear(3, 2).double()
    single = fisherkit.MLP.from_torch(lin, "gaussian")
    with torch.no_grad():
        np.testing.assert_allclose(single.forward(X), lin(torch.from_numpy(X)).numpy(), rtol=RTOL64, atol=RTOL64)


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2)), r"module 1 \(LayerNorm\)"),
        (lambda: nn.Sequential(nn.Conv1d(1, 1, 2)), r"module 0 \(Conv1d\)"),
        (lambda: nn.Sequential(nn.Linear(3, 4), nn.Sequential(nn.Tanh(), nn.Tanh()), nn.Linear(4, 2)),
         r"module 1\.1: two activations"),
        (lambda: nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.ReLU(), nn.Linear(4, 2)), r"module 2: two activations"),
        (lambda: nn.Sequential(nn.Linear(3, 4), nn.Softplus(beta=2.0), nn.Linear(4, 2)), r"module 1: only Softplus\(beta=1\)"),
        (lambda: nn.Sequential(nn.Linear(3, 4), nn.Tanh()), r"last module must be Linear"),
        (lambda: nn.Sequential(nn.Tanh()), r"module 0 \(Tanh\): an activation before the first Linear"),
        (lambda: nn.Sequential(), r"no Linear"),
        (lambda: nn.Sequential(nn.Linear(3, 4), nn.Linear(5, 2)), r"do not chain"),
    ],
)
def test_from_torch_rejects_unsupported_modules(build, match):
    with pytest.raises(ValueError, match=match):
        fisherkit.MLP.from_torch(build())


def test_from_torch_rejects_bad_head_and_sigma():
    module = nn.Sequential(nn.Linear(3, 1))
    with pytest.raises(ValueError, match="categorical head needs at least 2 outputs"):
        fisherkit.MLP.from_torch(module, "categorical")
    with pytest.raises(ValueError, match="unknown head"):
        fisherkit.MLP.from_torch(module, "laplace")
    with pytest.raises(ValueError, match="'sigma'"):
        fisherkit.MLP.from_torch(module, "gaussian", sigma=0.0)
