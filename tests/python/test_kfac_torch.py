"""fisherkit's KFAC against curvlinops' ``KFACLinearOperator`` and BackPACK's ``KFLR`` / ``KFAC``
on the same weights and inputs, up to the constants documented in docs/guide/kfac.rst.

Optional: every test skips cleanly when PyTorch or the peer is not importable (neither is a
dependency of fisherkit):

    pip install torch
    pip install --no-deps backpack-for-pytorch curvlinops-for-pytorch
    pip install einops unfoldNd opt-einsum tqdm einconv linear_operator

The constants: both peers' input factor is fisherkit's A_l (the mean of abar abar^T, bias
last); their output-gradient factor is c x fisherkit's G_l with c = 1 for
CrossEntropyLoss(reduction="mean"), N for "sum", 2/C for MSELoss(reduction="mean") (the
Gaussian head with sigma = 1), 2N for "sum"; for the empirical Fisher (curvlinops
``fisher_type="empirical"``) the MSE constants are squared gradients, 4/C and 4N.
"""
from __future__ import annotations

import numpy as np
import pytest

import fisherkit

torch = pytest.importorskip("torch")
nn = torch.nn
import test_scaling_peers as _peers  # noqa: E402

pytestmark = _peers.pytestmark  # the peers' own warnings, filtered as there
float64_default = _peers.float64_default  # float64 tensors throughout (an autouse fixture)

N, D, HIDDEN, C = 9, 4, 6, 3


def _problem():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(D, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, C)).double()
    X = torch.randn(N, D, dtype=torch.float64)
    return net, X, torch.randint(0, C, (N,)), torch.randn(N, C, dtype=torch.float64)


# (loss, reduction, fisherkit head, constant on G for the exact / type-2 Fisher, for the empirical one)
CASES = [
    ("ce", "mean", "categorical", 1.0, 1.0),
    ("ce", "sum", "categorical", float(N), float(N)),
    ("mse", "mean", "gaussian", 2.0 / C, 4.0 / C),
    ("mse", "sum", "gaussian", 2.0 * N, 4.0 * N),
]


def _loss(kind, reduction):
    return (nn.CrossEntropyLoss if kind == "ce" else nn.MSELoss)(reduction=reduction)


@pytest.mark.parametrize("kind,reduction,head,c_exact,c_emp", CASES)
@pytest.mark.parametrize("fisher_type", ["type-2", "empirical"])
def test_curvlinops_kfac(kind, reduction, head, c_exact, c_emp, fisher_type):
    curvlinops = pytest.importorskip("curvlinops")
    net, X, y_cls, y_reg = _problem()
    y = y_cls if kind == "ce" else y_reg
    params = list(net.parameters())
    model = fisherkit.MLP.from_torch(net, head=head)
    est = "exact" if fisher_type == "type-2" else "empirical"
    K = fisherkit.fisher(model, X.numpy(), y.numpy(), estimator=est, shape="kfac")
    c = c_exact if est == "exact" else c_emp
    P = model.n_params
    for separate in (False, True):
        op = curvlinops.KFACLinearOperator(net, _loss(kind, reduction), params, [(X, y)], fisher_type=fisher_type,
                                           separate_weight_and_bias=separate, check_deterministic=False)
        op.compute_kronecker_factors()
        for l, name in enumerate(["0", "2"]):
            A, G = K.factors[l]
            Ap = op._input_covariances[name].numpy()
            want_A = A if not separate else A[:-1, :-1]  # separate: the weights' factor has no bias entry
            np.testing.assert_allclose(Ap, want_A, rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(op._gradient_covariances[name].numpy(), c * G, rtol=1e-12, atol=1e-14)
        M = (op @ torch.eye(P)).numpy()
        if not separate:  # the same matrix in the same flat order
            np.testing.assert_allclose(M, c * K.to_dense(), rtol=1e-11, atol=1e-14)
        else:  # the weight-bias blocks dropped: fisherkit's KFAC with A's bias row and column cut
            cut = fisherkit.KFAC([(_cut_bias(A), G) for A, G in K.factors], model.sizes, N, est)
            np.testing.assert_allclose(M, c * cut.to_dense(), rtol=1e-11, atol=1e-14)
        v = np.random.default_rng(1).standard_normal(P)
        np.testing.assert_allclose((op @ torch.as_tensor(v)).numpy(), c * K.mv(v) if not separate else M @ v,
                                   rtol=1e-11, atol=1e-14)


def _cut_bias(A):
    B = A.copy()
    B[:-1, -1] = 0.0
    B[-1, :-1] = 0.0
    return B


@pytest.mark.parametrize("kind,reduction,head,c_exact,c_emp", CASES)
def test_backpack_kflr(kind, reduction, head, c_exact, c_emp):
    backpack = pytest.importorskip("backpack")
    from backpack.extensions import KFLR

    net, X, y_cls, y_reg = _problem()
    y = y_cls if kind == "ce" else y_reg
    model = fisherkit.MLP.from_torch(net, head=head)
    K = fisherkit.fisher(model, X.numpy(), shape="kfac")
    enet, lossf = backpack.extend(net), backpack.extend(_loss(kind, reduction))
    loss = lossf(enet(X), y)
    with backpack.backpack(KFLR()):
        loss.backward()
    for l, mod in enumerate([net[0], net[2]]):
        A, G = K.factors[l]
        Gw, Aw = (t.numpy() for t in mod.weight.kflr)  # BackPACK: [G, A] of the weight, [G] of the bias
        np.testing.assert_allclose(Gw, c_exact * G, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(Aw, A[:-1, :-1], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(mod.bias.kflr[0].numpy(), c_exact * G * A[-1, -1], rtol=1e-12, atol=1e-14)


def test_backpack_kfac_monte_carlo():
    """BackPACK's KFAC samples labels from the model (its own generator): its A is fisherkit's,
    its G converges to fisherkit's exact G (mean reduction: constant 1)."""
    backpack = pytest.importorskip("backpack")
    from backpack.extensions import KFAC

    net, X, y_cls, _ = _problem()
    model = fisherkit.MLP.from_torch(net, head="categorical")
    K = fisherkit.fisher(model, X.numpy(), shape="kfac")
    enet, lossf = backpack.extend(net), backpack.extend(nn.CrossEntropyLoss())
    torch.manual_seed(3)
    loss = lossf(enet(X), y_cls)
    with backpack.backpack(KFAC(mc_samples=4000)):
        loss.backward()
    for l, mod in enumerate([net[0], net[2]]):
        A, G = K.factors[l]
        Gw, Aw = (t.numpy() for t in mod.weight.kfac)
        np.testing.assert_allclose(Aw, A[:-1, :-1], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(Gw, G, atol=0.1 * np.abs(G).max())
