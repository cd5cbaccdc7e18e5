"""Optional cross-check of the Fisher estimators against torch.func (skips without torch)."""
from __future__ import annotations

import numpy as np
import pytest

import fisherkit

torch = pytest.importorskip("torch")
from torch.func import functional_call, jacrev, vmap  # noqa: E402


def _torch_model(sizes, act):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b, dtype=torch.float64))
        if i < len(sizes) - 2:
            layers.append({"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid}[act]())
    torch.manual_seed(0)
    net = torch.nn.Sequential(*layers)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.7)
    return net


def _flat_params(net):
    # fisherkit's canonical order: per layer W row-major, then b (= torch's parameter order)
    return {k: v.detach() for k, v in net.named_parameters()}


@pytest.mark.parametrize("act", ["tanh", "sigmoid"])
def test_exact_and_hessian_fisher_match_torch_func(act):
    sizes = [3, 5, 4, 3]
    net = _torch_model(sizes, act)
    model = fisherkit.MLP.from_torch(net, head="categorical")
    X = np.random.default_rng(0).standard_normal((6, 3))
    params = _flat_params(net)
    names = list(params)

    def h_of(p, x):
        return functional_call(net, p, (x,))

    Xt = torch.from_numpy(X)
    jac = vmap(jacrev(h_of), in_dims=(None, 0))(params, Xt)  # dict name -> (N, C, *shape)
    J = torch.cat([jac[n].reshape(len(X), sizes[-1], -1) for n in names], dim=2).numpy()
    p = torch.softmax(h_of(params, Xt), dim=1).numpy()
    Icov = np.stack([np.diag(pi) - np.outer(pi, pi) for pi in p])
    F_ref = np.einsum("nap,nab,nbq->pq", J, Icov, J) / len(X)
    np.testing.assert_allclose(fisherkit.fisher(model, X, shape="full").to_dense(), F_ref, rtol=1e-10, atol=1e-13)

    # Hessian estimator on the library's own draws: mean of -hess log p(y|x), reverse-over-reverse
    S, seed = 2, 5
    draws = fisherkit.heads.sample("categorical", model.forward(X), samples=S, seed=seed)
    flat0 = torch.cat([params[n].reshape(-1) for n in names])
    shapes = [params[n].shape for n in names]

    def nll_flat(theta, x, y):
        chunks, off = {}, 0
        for n, s in zip(names, shapes):
            k = int(np.prod(s))
            chunks[n] = theta[off:off + k].reshape(s)
            off += k
        return torch.nn.functional.cross_entropy(functional_call(net, chunks, (x[None],)), y[None])

    total = np.zeros((flat0.numel(), flat0.numel()))
    for n in range(len(X)):
        for s in range(S):
            total += jacrev(jacrev(nll_flat))(flat0, Xt[n], torch.tensor(int(draws[n, s]))).numpy()
    ref = total / (len(X) * S)
    got = fisherkit.fisher(model, X, estimator="hessian", shape="full", samples=S, seed=seed).to_dense()
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)
