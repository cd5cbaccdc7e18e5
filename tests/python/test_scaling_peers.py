"""The scaling table of docs/peers.rst, checked against the peer libraries themselves.

Each test builds one small float64 PyTorch MLP, converts it with ``MLP.from_torch`` (the
same parameters in the same flat order) and checks that a peer's quantity equals a
stated constant times fisherkit's. Optional: every test skips cleanly when PyTorch or
the peer library is not importable (none of them is a dependency of fisherkit):

    pip install torch
    pip install --no-deps backpack-for-pytorch curvlinops-for-pytorch nngeometry asdfghjkl
    pip install einops unfoldNd opt-einsum tqdm einconv linear_operator

N inputs, C outputs; the constants are those of the table "Scaling conventions".
"""
from __future__ import annotations

import numpy as np
import pytest

import fisherkit

torch = pytest.importorskip("torch")
nn = torch.nn

N, D, HIDDEN, C = 7, 4, 6, 10

# The peers emit warnings from their own code or from torch hooks; they say nothing about
# fisherkit, and pytest's configuration turns warnings into errors.
pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]


@pytest.fixture(autouse=True)
def float64_default():
    """float64 tensors throughout (NNGeometry allocates with the default dtype); restored after."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _problem():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(D, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, C)).double()
    X = torch.randn(N, D, dtype=torch.float64)
    y_reg = torch.randn(N, C, dtype=torch.float64)
    y_cls = torch.randint(0, C, (N,))
    return net, X, y_reg, y_cls


def _fisherkit_side(net, X, y_reg, y_cls, *, sigma: float = 1.0):
    """fisherkit's exact and empirical Fishers (full) and per-sample gradients, per head."""
    Xn = X.numpy()
    out = {}
    for head, y in (("gaussian", y_reg.numpy()), ("categorical", y_cls.numpy())):
        m = fisherkit.MLP.from_torch(net, head=head, sigma=sigma)
        out[head] = {
            "exact": np.asarray(fisherkit.fisher(m, Xn, estimator="exact", shape="full").to_dense()),
            "empirical": np.asarray(fisherkit.fisher(m, Xn, y, estimator="empirical", shape="full").to_dense()),
            "grads": np.asarray(m.per_sample_grads(Xn, y)),
        }
    return out


# (loss name, torch loss, head, constant for exact/GGN, constant for empirical/EF,
#  constant for per-sample gradients)
ROWS = [
    ("MSELoss(mean)", lambda: nn.MSELoss(reduction="mean"), "gaussian", 2 / C, 4 / C, 2 / (N * C)),
    ("MSELoss(sum)", lambda: nn.MSELoss(reduction="sum"), "gaussian", 2 * N, 4 * N, 2.0),
    ("CrossEntropyLoss(mean)", lambda: nn.CrossEntropyLoss(reduction="mean"), "categorical", 1.0, 1.0, 1 / N),
    ("CrossEntropyLoss(sum)", lambda: nn.CrossEntropyLoss(reduction="sum"), "categorical", float(N), float(N), 1.0),
]
IDS = [r[0] for r in ROWS]


def _labels(head, y_reg, y_cls):
    return y_reg if head == "gaussian" else y_cls


def _assert_multiple(peer, ours, constant, rtol=1e-10):
    peer = np.asarray(peer, dtype=np.float64)
    ours = np.asarray(ours, dtype=np.float64)
    assert np.abs(ours).max() > 0
    np.testing.assert_allclose(peer, constant * ours, rtol=rtol, atol=rtol * np.abs(constant * ours).max())


# ------------------------------------------------------------------ curvlinops
def _dense(op, P):
    return (op @ torch.eye(P, dtype=torch.float64)).detach().numpy()


@pytest.mark.parametrize("row", ROWS, ids=IDS)
@pytest.mark.parametrize("batches", [1, 3], ids=["one-batch", "three-batches"])
def test_curvlinops_ggn_and_ef(row, batches):
    curvlinops = pytest.importorskip("curvlinops")
    _, make_loss, head, c_ggn, c_ef, _ = row
    net, X, y_reg, y_cls = _problem()
    ours = _fisherkit_side(net, X, y_reg, y_cls)[head]
    Y = _labels(head, y_reg, y_cls)
    data = [(X[i], Y[i]) for i in np.array_split(np.arange(N), batches)]
    params = list(net.parameters())
    P = sum(p.numel() for p in params)
    ggn = curvlinops.GGNLinearOperator(net, make_loss(), params, data, check_deterministic=False)
    ef = curvlinops.EFLinearOperator(net, make_loss(), params, data, check_deterministic=False)
    _assert_multiple(_dense(ggn, P), ours["exact"], c_ggn)
    _assert_multiple(_dense(ef, P), ours["empirical"], c_ef)


@pytest.mark.parametrize("row", [ROWS[0], ROWS[2]], ids=[IDS[0], IDS[2]])
def test_curvlinops_monte_carlo_fisher_has_the_ggn_constant(row):
    curvlinops = pytest.importorskip("curvlinops")
    _, make_loss, head, c_ggn, _, _ = row
    net, X, y_reg, y_cls = _problem()
    m = fisherkit.MLP.from_torch(net, head=head)
    params = list(net.parameters())
    v = torch.from_numpy(np.random.default_rng(3).standard_normal(m.n_params))
    op = curvlinops.FisherMCLinearOperator(net, make_loss(), params, [(X, _labels(head, y_reg, y_cls))],
                                           check_deterministic=False, mc_samples=2000)
    Fv = np.asarray(fisherkit.fisher_vector_product(m, X.numpy(), v.numpy()))
    ratio = float((op @ v).detach().numpy() @ Fv) / float(Fv @ Fv)
    assert ratio == pytest.approx(c_ggn, rel=0.05)  # 2000 draws: about 1% Monte Carlo error


def test_curvlinops_mse_mean_ggn_is_fisherkit_gaussian_with_sigma_sqrt_c_over_2():
    curvlinops = pytest.importorskip("curvlinops")
    net, X, y_reg, y_cls = _problem()
    ours = _fisherkit_side(net, X, y_reg, y_cls, sigma=float(np.sqrt(C / 2)))["gaussian"]
    params = list(net.parameters())
    ggn = curvlinops.GGNLinearOperator(net, nn.MSELoss(), params, [(X, y_reg)], check_deterministic=False)
    _assert_multiple(_dense(ggn, sum(p.numel() for p in params)), ours["exact"], 1.0)


# ------------------------------------------------------------------ BackPACK
@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_backpack_diag_ggn_batch_grad_and_sum_grad_squared(row):
    pytest.importorskip("backpack")
    from backpack import backpack, extend
    from backpack.extensions import BatchGrad, DiagGGNExact, DiagGGNMC, SumGradSquared

    _, make_loss, head, c_ggn, c_ef, c_grad = row
    net, X, y_reg, y_cls = _problem()
    ours = _fisherkit_side(net, X, y_reg, y_cls)[head]
    model = extend(net)
    loss = extend(make_loss())(model(X), _labels(head, y_reg, y_cls))
    with backpack(DiagGGNExact(), DiagGGNMC(mc_samples=20000), BatchGrad(), SumGradSquared()):
        loss.backward()
    params = list(model.parameters())
    diag_ggn = torch.cat([p.diag_ggn_exact.reshape(-1) for p in params]).detach().numpy()
    diag_mc = torch.cat([p.diag_ggn_mc.reshape(-1) for p in params]).detach().numpy()
    batch_grad = torch.cat([p.grad_batch.reshape(N, -1) for p in params], dim=1).detach().numpy()
    sgs = torch.cat([p.sum_grad_squared.reshape(-1) for p in params]).detach().numpy()
    _assert_multiple(diag_ggn, np.diag(ours["exact"]), c_ggn)
    _assert_multiple(batch_grad, ours["grads"], c_grad)
    # sum over samples of squared per-sample gradients = N c_grad^2 times the empirical diagonal
    _assert_multiple(sgs, np.diag(ours["empirical"]), N * c_grad**2)
    mc_ratio = float(diag_mc @ np.diag(ours["exact"])) / float(np.diag(ours["exact"]) @ np.diag(ours["exact"]))
    assert mc_ratio == pytest.approx(c_ggn, rel=0.02)  # 20000 draws


# ------------------------------------------------------------------ NNGeometry
@pytest.mark.parametrize("variant,head", [("regression", "gaussian"), ("classif_logits", "categorical")])
def test_nngeometry_fim_equals_fisherkit_exact(variant, head):
    pytest.importorskip("nngeometry")
    from nngeometry.metrics import FIM
    from nngeometry.object import PMatDense
    from torch.utils.data import DataLoader, TensorDataset

    net, X, y_reg, y_cls = _problem()
    ours = _fisherkit_side(net, X, y_reg, y_cls)[head]
    loader = DataLoader(TensorDataset(X, _labels(head, y_reg, y_cls)), batch_size=3)
    fim = FIM(model=net, loader=loader, representation=PMatDense, variant=variant, device="cpu")
    _assert_multiple(fim.to_torch().detach().numpy(), ours["exact"], 1.0)


# ------------------------------------------------------------------ ASDL
@pytest.mark.parametrize("kind,loss,head,constant", [
    ("exact", "mse", "gaussian", 1.0),
    ("exact", "cross_entropy", "categorical", 1.0),
    ("empirical", "mse", "gaussian", 4.0),
    ("empirical", "cross_entropy", "categorical", 1.0),
])
def test_asdl_full_fisher(kind, loss, head, constant):
    asdl = pytest.importorskip("asdl")
    if not hasattr(asdl, "get_fisher_maker"):
        pytest.skip("the installed 'asdl' is not ASDL (pip install asdfghjkl)")
    import torch.nn.functional as F

    net, X, y_reg, y_cls = _problem()
    ours = _fisherkit_side(net, X, y_reg, y_cls)[head]
    config = asdl.FisherConfig(
        fisher_type=asdl.FISHER_EXACT if kind == "exact" else asdl.FISHER_EMP,
        fisher_shapes=[asdl.SHAPE_FULL],
        loss_type=asdl.LOSS_MSE if loss == "mse" else asdl.LOSS_CROSS_ENTROPY,
        data_size=N,
    )
    maker = asdl.get_fisher_maker(net, config)
    dummy = maker.setup_model_call(net, X)
    maker.setup_loss_call(F.mse_loss if loss == "mse" else F.cross_entropy, dummy, _labels(head, y_reg, y_cls))
    maker.forward_and_backward()
    _assert_multiple(net.fisher.data.detach().numpy(), ours[kind], constant)
