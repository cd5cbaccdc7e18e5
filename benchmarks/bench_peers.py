"""fisherkit beside its peers (issue 14): BackPACK, curvlinops, NNGeometry and ASDL on the
same weights and inputs, in one process, on one thread, with each row's roofline measured
in the same process, and every peer's numbers checked against fisherkit's.

    bash benchmarks/peers/make_env.sh                        # once: torch 2.13 (CPU) and the peers
    nice -n 10 .venv-peers/bin/python benchmarks/bench_peers.py   # about 15 minutes
    .venv-peers/bin/python benchmarks/bench_peers.py --smoke      # tiny sizes, one repeat: seconds

Writes ``benchmarks/results/peers.md`` (the table, with the machine, the date, the load
average and every version) and ``benchmarks/results/peers.png`` (the bar chart); ``--out
PREFIX`` writes ``PREFIX.md`` and ``PREFIX.png`` instead. A peer that is not installed is
skipped (its cells say so); without PyTorch only fisherkit and the rooflines run.

Rows (the settings of issue 14's table; every model is a tanh MLP with the categorical
head, W ~ N(0, 1/n_in), b ~ N(0, 0.1^2), standard normal inputs, uniform labels):

    diag   exact diagonal, 784-128-10, N = 1024, float64 and float32
    layer  exact layer blocks, 100-100-100-10, N = 64, float64 and float32
    unit   exact unit blocks, 784-128-10, N = 256, float32
    full   exact full matrix, 20-64-64-5, N = 512, float32
    psg    per-sample gradients, 784-128-10, N = 1024, float64, into a fresh array and out=
    fvp    10 Fisher-vector products, 784-128-10, N = 1024, float64 (V of shape (P, 10))
    mc     Monte Carlo diagonal, one label drawn per input, 784-128-10, N = 1024, float64

Peers and what they run (the loss is ``CrossEntropyLoss(reduction="mean")`` throughout):
BackPACK ``DiagGGNExact``, ``DiagGGNMC(mc_samples=1)``, ``BatchGrad``, and for layer blocks
and the full matrix ``SqrtGGNExact`` followed by the Gram of its factor (one ``S^T S`` in
torch per block: BackPACK documents the GGN as V V^T of that factor); curvlinops
``GGNLinearOperator @ V``; NNGeometry ``FIM`` / ``FIM_MonteCarlo`` with ``PMatDiag``,
``PMatBlockDiag``, ``PMatDense`` and, for per-sample gradients, the Jacobian of the
per-sample negative log-likelihood (``TorchHooksJacobianBackend.get_jacobian``); ASDL
(``asdfghjkl``) ``FISHER_EXACT`` / ``FISHER_MC`` with ``SHAPE_DIAG``, ``SHAPE_LAYER_WISE``,
``SHAPE_UNIT_WISE`` and ``SHAPE_FULL``. One-off setup (``extend``, building a linear
operator or a Fisher maker) is outside the timed call; each peer gets its own copy of the
torch module, so hooks never meet.

Roofline (same process, same moment): the BLAS calls and stores of the same shapes that the
row's arithmetic needs, timed back to back with preallocated operands. Shapes, with sizes
n_0..n_L, N inputs, C = n_L classes:
  forward        (N x n_{l-1}) @ (n_{l-1} x n_l) for every layer
  backprop(R)    (R x n_l) @ (n_l x n_{l-1}) for l = L..2; R = N C rows (exact), N (one draw);
                 for the exact diag and unit blocks of one hidden layer (784-128-10) instead
                 (N x C) @ (C x n_1): that layer's unit weights phi'^2 diag(W^T I(h) W) from the
                 head's covariance diag(p) - p p^T, without its N C backward rows
  diag           (n_l x N) @ (N x (n_{l-1}+1)): squared backprop rows against squared inputs
  layer blocks   SYRK of (N C) rows of length n_l (n_{l-1}+1), per layer
  unit blocks    n_l SYRKs of N rows of length n_{l-1}+1, per layer
  full           one SYRK of (N C) rows of length P
                 (the SYRKs write into buffers already touched: fisherkit's layer, unit and
                 full rows are also timed with out=, a result buffer reused across calls,
                 beside the fresh result, which also pays the page faults of its pages)
  FVP (k)        forward; tangents (N x n_{l-1}) @ (n_{l-1} x k n_l) and, for l >= 2,
                 (N k x n_{l-1}) @ (n_{l-1} x n_l); backprop(N k); weight products
                 (k n_l x N) @ (N x (n_{l-1}+1))
  per-sample     the N x P output's bytes, stored once with glibc's memset (streaming
  gradients      stores for fills this large) into a buffer already touched (out=), or
                 into a fresh allocation (page faults + stores); a nonzero byte, since some
                 machines store zero pages faster
GEMMs run through NumPy's matmul, SYRKs through SciPy's BLAS; the square-GEMM rates and the
bandwidths of ``_common`` (measure_gemm_rate, measure_bandwidth) are printed beside them.
A roofline is the same-shape work at the rate this machine reaches with those calls when
they run. fisherkit's own calls are timed interleaved with it (roofline, fisherkit,
roofline, ...): this VM's speed drifts by 10-20% over seconds, which landed in the ratio
when the two were timed apart. The roofline's time is the fastest of all its runs. Peers
are timed after it, so their ratios carry that drift (and a ratio a little below 1 is
noise, not a faster algorithm). Every implementation is timed --repeat times (3), or, when
one call is short, until its calls take about --min-time seconds (0.5, at most 50 calls):
on this VM the fastest of 3 calls of the exact diagonal (5-12 ms) was 1-28% slower than
the fastest of about 50 in the same minutes.

Agreement (before any timing, on the first call's result): a peer's result divided by its
scaling constant (docs/peers.rst, "Scaling conventions": 1 for everything here except
BackPACK's ``BatchGrad``, which is the gradient of the mean loss, 1/N) against fisherkit's,
as the max-norm relative difference ``max|peer - ref| / max|ref|`` over the whole result.
float64 rows: the reference is fisherkit's float64 result, bound 1e-12. float32 rows: the
reference is fisherkit in float64 on the same (float32) weights and inputs, and every float32
result, fisherkit's included, must be within 1e-4 of it (float32 rounding of sums over N C
terms; the measured differences are printed, typically 1e-7 to 1e-6). The Monte Carlo row
cannot agree entry by entry (each library draws its own labels), so it is checked in
distribution: for an unbiased one-draw estimate F^ of the exact diagonal F,
E ||F^ - F||^2 = sum_i Var F^_i, with the variance in closed form from
``fisher(..., estimator="score", with_stderr=True)``; the ratio of the two must lie in
[0.4, 2.5] ([0.2, 5] with --smoke, where P is small). fisherkit's own estimate over 300
seeds gave ratios from 0.60 to 1.61 (mean 0.98) at the full size and 0.37 to 3.0 (mean 1.00)
at the smoke size; a wrong constant or estimator is off by orders of magnitude. torch's
generator is seeded per row, so a run is reproducible.

Speed is never asserted; a check that fails makes the exit status 1 (after writing the
table), as does a peer that raises.
"""
from __future__ import annotations

import os

# One thread: OpenMP and the BLAS libraries read these once, when they load.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import importlib  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from importlib.metadata import PackageNotFoundError, version  # noqa: E402
from typing import Any, Callable, Sequence  # noqa: E402

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _common as C  # noqa: E402

import fisherkit  # noqa: E402

try:
    import torch  # noqa: E402
except ImportError:  # the peers need it; fisherkit and the rooflines do not
    torch = None

# What torch says about the peers' module hooks on every call; it says nothing about the
# numbers (each peer's result is checked) and would bury the log.
warnings.filterwarnings("ignore", message="Full backward hook is firing")
warnings.filterwarnings("ignore", message="Using a non-full backward hook")

F64_RTOL = 1e-12
F32_RTOL = 1e-4
MC_RANGE = (0.4, 2.5)
MC_RANGE_SMOKE = (0.2, 5.0)
FVP_K = 10
MAX_CALLS = 50  # timed calls of one implementation at most (see timed_calls)

# name shown, module, distribution (for the version)
PEERS = {
    "backpack": ("BackPACK", "backpack", "backpack-for-pytorch"),
    "curvlinops": ("curvlinops", "curvlinops", "curvlinops-for-pytorch"),
    "nngeometry": ("NNGeometry", "nngeometry", "nngeometry"),
    "asdl": ("ASDL", "asdl", "asdfghjkl"),
}
LIBRARIES = ["fisherkit", *PEERS]


# ----------------------------------------------------------------------------- rows
@dataclass(frozen=True)
class Row:
    key: str
    title: str
    sizes: tuple[int, ...]
    n: int
    dtype: str

    @property
    def label(self) -> str:
        arch = "-".join(str(s) for s in self.sizes)
        return f"{self.title} {arch} N={self.n}"


ROWS = [
    Row("diag", "exact diag", (784, 128, 10), 1024, "float64"),
    Row("diag", "exact diag", (784, 128, 10), 1024, "float32"),
    Row("layer", "layer blocks", (100, 100, 100, 10), 64, "float64"),
    Row("layer", "layer blocks", (100, 100, 100, 10), 64, "float32"),
    Row("unit", "unit blocks", (784, 128, 10), 256, "float32"),
    Row("full", "full", (20, 64, 64, 5), 512, "float32"),
    Row("psg", "per-sample gradients, fresh", (784, 128, 10), 1024, "float64"),
    Row("psg-out", "per-sample gradients, out=", (784, 128, 10), 1024, "float64"),
    Row("fvp", f"{FVP_K} Fisher-vector products", (784, 128, 10), 1024, "float64"),
    Row("mc", "MC diagonal, 1 draw", (784, 128, 10), 1024, "float64"),
]
# --smoke: odd sizes small enough for seconds, the same code paths
SMOKE = {"diag": ((13, 7, 3), 17), "layer": ((9, 8, 7, 3), 11), "unit": ((13, 7, 3), 9),
         "full": ((5, 6, 6, 3), 13), "psg": ((13, 7, 3), 17), "psg-out": ((13, 7, 3), 17),
         "fvp": ((13, 7, 3), 17), "mc": ((13, 7, 3), 257)}


def smoke_rows() -> list[Row]:
    return [Row(r.key, r.title, *SMOKE[r.key], r.dtype) for r in ROWS]


# ----------------------------------------------------------------------------- one problem
@dataclass
class Problem:
    """The weights and inputs every implementation of a row gets."""

    row: Row
    model: fisherkit.MLP
    X: np.ndarray
    y: np.ndarray

    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def classes(self) -> int:
        return self.row.sizes[-1]

    def model64(self) -> fisherkit.MLP:
        """The same numbers in float64 (the float32 rows' reference)."""
        return fisherkit.MLP(self.model.layers, "tanh", "categorical", dtype=np.float64)

    def torch_net(self) -> Any:
        """A fresh torch module with this model's weights, in the row's dtype."""
        nn = torch.nn
        mods: list[Any] = []
        for i, (W, b) in enumerate(self.model.layers):
            lin = nn.Linear(W.shape[1], W.shape[0], dtype=getattr(torch, self.row.dtype))
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(np.asarray(W)))
                lin.bias.copy_(torch.from_numpy(np.asarray(b)))
            mods.append(lin)
            if i < self.model.n_layers - 1:
                mods.append(nn.Tanh())
        return nn.Sequential(*mods)

    def Xt(self) -> Any:
        return torch.from_numpy(self.X)

    def yt(self) -> Any:
        return torch.from_numpy(self.y)


def make_problem(row: Row, seed: int = 0) -> Problem:
    model = fisherkit.MLP.init(list(row.sizes), "tanh", "categorical", seed=seed, dtype=row.dtype,
                               bias_std=0.1)
    rng = np.random.default_rng(seed + 1)
    X = rng.standard_normal((row.n, row.sizes[0])).astype(row.dtype)
    y = rng.integers(0, row.sizes[-1], row.n).astype(np.int64)
    return Problem(row, model, X, y)


# ----------------------------------------------------------------------------- roofline
def roofline(row: Row) -> C.Roofline:
    s, n, C_ = row.sizes, row.n, row.sizes[-1]
    P = sum(o * (i + 1) for i, o in C.layer_shapes(s))
    rf = C.Roofline(row.dtype)
    if row.key in ("psg", "psg-out"):
        rf.stores(n * P * rf.dtype.itemsize, fresh=row.key == "psg")
        return rf
    rf.forward(s, n)
    if row.key == "fvp":
        for l, (n_in, n_out) in enumerate(C.layer_shapes(s)):
            rf.gemm(n, n_in, FVP_K * n_out)
            if l > 0:
                rf.gemm(n * FVP_K, n_in, n_out)
        rf.backprop(s, n * FVP_K)
        for n_in, n_out in C.layer_shapes(s):
            rf.gemm(FVP_K * n_out, n, n_in + 1)
        return rf
    if row.key in ("diag", "unit") and len(s) == 3:
        rf.gemm(n, C_, s[1])  # one hidden layer: its unit weights from the head's covariance
    else:
        rf.backprop(s, n if row.key == "mc" else n * C_)
    for n_in, n_out in C.layer_shapes(s):
        if row.key in ("diag", "mc"):
            rf.gemm(n_out, n, n_in + 1)
        elif row.key == "layer":
            rf.syrk(n_out * (n_in + 1), n * C_)
        elif row.key == "unit":
            rf.syrk(n_in + 1, n, count=n_out)
    if row.key == "full":
        rf.syrk(P, n * C_)
    return rf


# ----------------------------------------------------------------------------- implementations
@dataclass
class Entry:
    """One implementation of a row: `run` is what is timed, `extract` turns its result into
    a list of arrays in fisherkit's layout (outside the timing), divided by `constant`."""

    library: str
    name: str
    run: Callable[[], Any]
    extract: Callable[[Any], list[np.ndarray]]
    constant: float = 1.0
    extra: bool = False  # shown in the detailed table only (not a cell of the summary or a bar)
    into_buffer: bool = False  # the main entry's call into a reused result buffer (out=), cited in its cell


def _np(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)


def _linears(net: Any) -> list[Any]:
    return [m for m in net if isinstance(m, torch.nn.Linear)]


def _flat(tensors: Sequence[Any]) -> list[np.ndarray]:
    return [np.concatenate([_np(t).reshape(-1) for t in tensors])]


# fisherkit ------------------------------------------------------------------
def fisherkit_entries(p: Problem) -> list[Entry]:
    m, X, y, key = p.model, p.X, p.y, p.row.key
    if key in ("diag", "layer", "unit", "full"):
        shape = key

        def parts(F: Any) -> list[np.ndarray]:
            return [np.asarray(b) for b in F.blocks] if shape != "diag" else [np.asarray(F.values)]

        entries = [Entry("fisherkit", f"fisher(shape={shape!r})", lambda: fisherkit.fisher(m, X, shape=shape), parts)]
        if shape != "diag":  # a large result: also into a buffer reused across calls (no page faults)
            buf = np.ones(m.layout.size(shape), m.dtype)
            entries.append(Entry("fisherkit", f"fisher(shape={shape!r}, out=)",
                                 lambda: fisherkit.fisher(m, X, shape=shape, out=buf), parts, extra=True,
                                 into_buffer=True))
        return entries
    if key == "mc":
        return [Entry("fisherkit", "fisher(estimator='score', samples=1)",
                      lambda: fisherkit.fisher(m, X, estimator="score", shape="diag", samples=1, seed=1),
                      lambda F: [np.asarray(F.values)])]
    if key == "psg":
        return [Entry("fisherkit", "per_sample_grads", lambda: m.per_sample_grads(X, y), lambda G: [G])]
    if key == "psg-out":
        # touched once, before the first call (the point of out=; np.zeros would leave the
        # pages to that call, whose page faults then made it look slow enough for 3 runs)
        G = np.ones((p.n, m.n_params), m.dtype)
        return [Entry("fisherkit", "per_sample_grads(out=)", lambda: m.per_sample_grads(X, y, out=G),
                      lambda G: [G])]
    if key == "fvp":
        V = fvp_directions(p)
        return [Entry("fisherkit", f"fisher_vector_product, V ({m.n_params}, {FVP_K})",
                      lambda: fisherkit.fisher_vector_product(m, X, V), lambda R: [R]),
                Entry("fisherkit", "fisher_vector_product, one vector (k = 1, for scale)",
                      lambda: fisherkit.fisher_vector_product(m, X, V[:, 0]), lambda r: [r], extra=True)]
    raise KeyError(key)


def fvp_directions(p: Problem) -> np.ndarray:
    return np.random.default_rng(5).standard_normal((p.model.n_params, FVP_K)).astype(p.row.dtype)


# BackPACK ------------------------------------------------------------------
def backpack_entries(p: Problem) -> list[Entry]:
    from backpack import backpack, extend
    from backpack.extensions import BatchGrad, DiagGGNExact, DiagGGNMC, SqrtGGNExact

    net = extend(p.torch_net())
    loss_fn = extend(torch.nn.CrossEntropyLoss())
    X, y, key, N, C_ = p.Xt(), p.yt(), p.row.key, p.n, p.classes
    params = list(net.parameters())

    def backward(ext: Any) -> None:
        net.zero_grad(set_to_none=True)
        loss = loss_fn(net(X), y)
        with backpack(ext):
            loss.backward()

    if key in ("diag", "mc"):
        ext, attr = (DiagGGNExact, "diag_ggn_exact") if key == "diag" else (lambda: DiagGGNMC(mc_samples=1), "diag_ggn_mc")

        def run_diag() -> list[Any]:
            backward(ext())
            return [getattr(q, attr) for q in params]

        return [Entry("backpack", "DiagGGNExact" if key == "diag" else "DiagGGNMC(mc_samples=1)", run_diag, _flat)]
    if key in ("layer", "full"):
        def run_gram() -> list[Any]:
            backward(SqrtGGNExact())
            factors = [[q.sqrt_ggn_exact.reshape(C_ * N, -1) for q in lin.parameters()] for lin in _linears(net)]
            if key == "full":
                S = torch.cat([f for fs in factors for f in fs], dim=1)
                return [S.T @ S]
            return [S.T @ S for S in (torch.cat(fs, dim=1) for fs in factors)]

        return [Entry("backpack", "SqrtGGNExact, then S^T S per block", run_gram, lambda Gs: [_np(G) for G in Gs])]
    if key in ("psg", "psg-out"):
        def run_batch() -> list[Any]:
            backward(BatchGrad())
            return [q.grad_batch for q in params]

        return [Entry("backpack", "BatchGrad", run_batch,
                      lambda gs: [np.concatenate([_np(g).reshape(N, -1) for g in gs], axis=1)], constant=1.0 / N)]
    return []


# curvlinops ----------------------------------------------------------------
def curvlinops_entries(p: Problem) -> list[Entry]:
    if p.row.key != "fvp":
        return []
    from curvlinops import GGNLinearOperator

    net = p.torch_net()
    op = GGNLinearOperator(net, torch.nn.CrossEntropyLoss(), list(net.parameters()), [(p.Xt(), p.yt())],
                           check_deterministic=False)
    V = torch.from_numpy(fvp_directions(p))
    return [Entry("curvlinops", f"GGNLinearOperator @ V (P, {FVP_K})", lambda: op @ V, lambda R: [_np(R)])]


# NNGeometry ----------------------------------------------------------------
def nngeometry_entries(p: Problem) -> list[Entry]:
    from nngeometry.backend import TorchHooksJacobianBackend
    from nngeometry.metrics import FIM, FIM_MonteCarlo
    from nngeometry.object import PMatBlockDiag, PMatDense, PMatDiag
    from torch.utils.data import DataLoader, TensorDataset

    net = p.torch_net()
    loader = DataLoader(TensorDataset(p.Xt(), p.yt()), batch_size=p.n)
    key = p.row.key
    rep = {"diag": PMatDiag, "mc": PMatDiag, "layer": PMatBlockDiag, "full": PMatDense}
    if key in rep:
        if key == "mc":
            def run() -> Any:
                return FIM_MonteCarlo(net, loader, PMatDiag, variant="classif_logits", trials=1, device="cpu")
        else:
            def run() -> Any:
                return FIM(model=net, loader=loader, representation=rep[key], variant="classif_logits", device="cpu")

        def extract(F: Any) -> list[np.ndarray]:
            if key == "layer":
                return [_np(F.data[k]) for k in F.generator.layer_collection.layers]
            return [_np(F.data)]

        name = {"diag": "FIM, PMatDiag", "mc": "FIM_MonteCarlo(trials=1), PMatDiag",
                "layer": "FIM, PMatBlockDiag", "full": "FIM, PMatDense"}[key]
        return [Entry("nngeometry", name, run, extract)]
    if key in ("psg", "psg-out"):
        def nll(X: Any, y: Any) -> Any:  # per-sample -log p(y_n | x_n), shape (N, 1)
            return -torch.log_softmax(net(X), dim=1).gather(1, y[:, None])

        backend = TorchHooksJacobianBackend(net, function=nll)
        return [Entry("nngeometry", "Jacobian of the per-sample NLL", lambda: backend.get_jacobian(loader),
                      lambda J: [_np(J[0])])]
    return []


# ASDL ----------------------------------------------------------------------
def asdl_entries(p: Problem) -> list[Entry]:
    import asdl
    import torch.nn.functional as F

    key = p.row.key
    shape = {"diag": asdl.SHAPE_DIAG, "mc": asdl.SHAPE_DIAG, "layer": asdl.SHAPE_LAYER_WISE,
             "unit": asdl.SHAPE_UNIT_WISE, "full": asdl.SHAPE_FULL}.get(key)
    if shape is None:
        return []
    net = p.torch_net()
    config = asdl.FisherConfig(fisher_type=asdl.FISHER_MC if key == "mc" else asdl.FISHER_EXACT,
                               fisher_shapes=[shape], loss_type=asdl.LOSS_CROSS_ENTROPY, data_size=p.n,
                               n_mc_samples=1)
    maker = asdl.get_fisher_maker(net, config)
    X, y = p.Xt(), p.yt()

    def run() -> Any:
        dummy = maker.setup_model_call(net, X)
        maker.setup_loss_call(F.cross_entropy, dummy, y)
        maker.forward_and_backward()
        return net

    def extract(model: Any) -> list[np.ndarray]:
        lins = _linears(model)
        if key == "full":
            return [_np(model.fisher.data)]
        if key == "layer":
            return [_np(m.fisher.data) for m in lins]
        if key == "unit":
            return [_np(m.fisher.unit.data) for m in lins]
        return _flat([t for m in lins for t in (m.fisher.diag.weight, m.fisher.diag.bias)])

    name = {"diag": "FISHER_EXACT, SHAPE_DIAG", "mc": "FISHER_MC(1), SHAPE_DIAG",
            "layer": "FISHER_EXACT, SHAPE_LAYER_WISE", "unit": "FISHER_EXACT, SHAPE_UNIT_WISE",
            "full": "FISHER_EXACT, SHAPE_FULL"}[key]
    return [Entry("asdl", name, run, extract)]


PEER_ENTRIES = {"backpack": backpack_entries, "curvlinops": curvlinops_entries,
                "nngeometry": nngeometry_entries, "asdl": asdl_entries}


def peer_status(lib: str) -> tuple[bool, str]:
    """(importable, version or why not)."""
    if torch is None:
        return False, "PyTorch not installed"
    _, mod, dist = PEERS[lib]
    try:
        module = importlib.import_module(mod)
    except Exception as exc:  # noqa: BLE001 - any failure to import means: skip this peer
        return False, f"not installed ({type(exc).__name__})"
    if lib == "asdl" and not hasattr(module, "get_fisher_maker"):
        return False, "the installed 'asdl' is not ASDL (pip install --no-deps asdfghjkl)"
    try:
        return True, version(dist)
    except PackageNotFoundError:
        return True, str(getattr(module, "__version__", "?"))


# ----------------------------------------------------------------------------- references and checks
@dataclass
class Reference:
    arrays: list[np.ndarray]
    var_sum: float = 0.0  # Monte Carlo row: sum of the closed-form variances of a one-draw estimate


def reference(p: Problem) -> Reference:
    """fisherkit in float64 on the row's weights and inputs."""
    m = p.model64()
    X = p.X.astype(np.float64)
    key = p.row.key
    if key in ("layer", "unit", "full"):
        return Reference([np.asarray(b) for b in fisherkit.fisher(m, X, shape=key).blocks])
    if key == "diag":
        return Reference([fisherkit.fisher(m, X, shape="diag").values])
    if key == "mc":
        _, se = fisherkit.fisher(m, X, estimator="score", shape="diag", samples=1, with_stderr=True, seed=0)
        return Reference([fisherkit.fisher(m, X, shape="diag").values], float(np.sum(se.values ** 2)))
    if key in ("psg", "psg-out"):
        return Reference([m.per_sample_grads(X, p.y)])
    if key == "fvp":
        return Reference([fisherkit.fisher_vector_product(m, X, fvp_directions(p).astype(np.float64))])
    raise KeyError(key)


def agreement(p: Problem, ref: Reference, arrays: list[np.ndarray], smoke: bool) -> tuple[float, bool, str]:
    """(statistic, within its bound, how it reads)."""
    if len(arrays) != len(ref.arrays) and not (p.row.key == "fvp" and arrays[0].ndim == 1):
        return float("nan"), False, f"{len(arrays)} blocks, expected {len(ref.arrays)}"
    if p.row.key == "fvp" and arrays[0].ndim == 1:  # the one-vector product: column 0
        ref = Reference([ref.arrays[0][:, 0]])
    for a, r in zip(arrays, ref.arrays):
        if a.shape != r.shape:
            return float("nan"), False, f"shape {a.shape}, expected {r.shape}"
    if p.row.key == "mc":
        lo, hi = MC_RANGE_SMOKE if smoke else MC_RANGE
        ratio = float(np.sum((arrays[0].astype(np.float64) - ref.arrays[0]) ** 2)) / ref.var_sum
        return ratio, lo <= ratio <= hi, f"err^2/var {ratio:.2f} (in [{lo:g}, {hi:g}])"
    scale = max(float(np.max(np.abs(r))) for r in ref.arrays)
    diff = max(float(np.max(np.abs(a.astype(np.float64) - r))) for a, r in zip(arrays, ref.arrays)) / scale
    bound = F64_RTOL if p.row.dtype == "float64" else F32_RTOL
    return diff, diff <= bound, f"{diff:.1e} (<= {bound:g})"


# ----------------------------------------------------------------------------- measuring
@dataclass
class Result:
    row: Row
    library: str
    name: str
    time: C.Timing | None = None
    runs: int = 0
    check: str = ""
    ok: bool = True
    note: str = ""
    extra: bool = False
    into_buffer: bool = False


@dataclass
class RowResult:
    row: Row
    roofline: C.Timing
    roofline_what: str
    results: list[Result] = field(default_factory=list)

    def fisherkit(self) -> Result | None:
        return self.main("fisherkit")

    def main(self, library: str) -> Result | None:
        """The library's result shown in the summary and the chart."""
        return next((r for r in self.results if r.library == library and not r.extra), None)


def timed_calls(first: float, repeat: int, slow: float, min_time: float) -> int:
    """How many calls to time after a first call of `first` seconds: one when it took longer
    than `slow`; else `repeat`, or more (at most MAX_CALLS) until they take about `min_time`
    seconds in all, so that the fastest of a few-millisecond call is not the fastest of 3
    samples of a machine whose speed drifts."""
    if first >= slow:
        return 1
    return max(repeat, min(MAX_CALLS, int(min_time / max(first, 1e-9))))


def measure_entry(p: Problem, entry: Entry, ref: Reference, repeat: int, slow: float, smoke: bool,
                  rf: Callable[[], Any] | None = None, rf_times: list[float] | None = None,
                  min_time: float = 0.0) -> Result:
    """Check `entry` against `ref` on its first call, then time it (timed_calls runs),
    interleaved with the roofline `rf` when given (its times go to rf_times)."""
    res = Result(p.row, entry.library, entry.name, extra=entry.extra, into_buffer=entry.into_buffer)
    try:
        t0 = time.perf_counter()
        raw = entry.run()
        first = time.perf_counter() - t0
        arrays = entry.extract(raw)
        if entry.constant != 1:
            arrays = [a / entry.constant for a in arrays]
        del raw
        _, res.ok, res.check = agreement(p, ref, arrays, smoke)
        del arrays
        n = timed_calls(first, repeat, slow, min_time)  # the first call was the warm-up
        res.time = C.best_of(entry.run, n, warmup=0) if rf is None else C.interleaved(entry.run, rf, n, rf_times)
        res.runs = n
    except Exception as exc:  # noqa: BLE001 - report the failure in the table and go on
        res.ok = False
        res.note = f"raised {type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
    return res


def measure_row(row: Row, libraries: Sequence[str], status: dict[str, tuple[bool, str]], repeat: int,
                slow: float, smoke: bool, log: Callable[[str], None], min_time: float = 0.0) -> RowResult:
    p = make_problem(row)
    rf = roofline(row)
    rf_times = C.best_of(rf, repeat, warmup=1).times
    out = RowResult(row, C.Timing(min(rf_times), float(np.median(rf_times)), rf_times), rf.describe())
    log(f"{row.label} {row.dtype}: roofline {out.roofline}  [{out.roofline_what}]")
    ref = reference(p)
    old_dtype = torch.get_default_dtype() if torch is not None else None
    try:
        if torch is not None:  # NNGeometry allocates in the default dtype
            torch.set_default_dtype(getattr(torch, row.dtype))
            torch.manual_seed(0)  # the peers' Monte Carlo draws
        for lib in libraries:
            if lib != "fisherkit" and not status[lib][0]:
                continue
            try:
                entries = fisherkit_entries(p) if lib == "fisherkit" else PEER_ENTRIES[lib](p)
            except Exception as exc:  # noqa: BLE001 - a peer whose setup fails is reported, not fatal
                res = Result(row, lib, "setup", ok=False, note=f"setup raised {type(exc).__name__}: {exc}")
                out.results.append(res)
                log(f"  {PEERS[lib][0]}: {res.note}")
                continue
            for e in entries:
                mine = lib == "fisherkit"
                res = measure_entry(p, e, ref, repeat, slow, smoke, rf if mine else None, rf_times if mine else None,
                                    min_time)
                out.results.append(res)
                log(f"  {display(lib)} {e.name}: {res.time or '-'}  check {res.check or '-'}"
                    f"{'' if res.ok else '  FAILED'} {res.note}")
            del entries
    finally:
        if old_dtype is not None:
            torch.set_default_dtype(old_dtype)
    out.roofline = C.Timing(min(rf_times), float(np.median(rf_times)), rf_times)
    if len(rf_times) > repeat:
        log(f"  roofline over all {len(rf_times)} runs: {out.roofline}")
    return out


def display(lib: str) -> str:
    return "fisherkit" if lib == "fisherkit" else PEERS[lib][0]


# ----------------------------------------------------------------------------- the page and the chart
def machine_lines(status: dict[str, tuple[bool, str]], rates: dict[str, Any], load: tuple[tuple[float, ...], ...],
                  started: datetime.datetime, wall: float, argv: Sequence[str]) -> list[str]:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "?")
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "?"
    info = fisherkit.info()
    vers = [f"fisherkit {fisherkit.__version__} ({info['blas']}; checkout {commit})",
            f"Python {platform.python_version()}", f"NumPy {np.__version__}"]
    import scipy

    vers.append(f"SciPy {scipy.__version__}")
    vers.append(f"PyTorch {torch.__version__}" if torch is not None else "PyTorch not installed")
    vers += [f"{PEERS[k][0]} {v}" if ok else f"{PEERS[k][0]}: {v}" for k, (ok, v) in status.items()]
    g64, g32, bw = rates["gemm64"], rates["gemm32"], rates["bw"]
    return [
        f"- Machine: {cpu}, {os.cpu_count()} logical CPUs ({platform.machine()}, {platform.system()}); "
        "one thread for every library (torch.set_num_threads(1), fisherkit.set_num_threads(1), "
        "threadpoolctl for NumPy's and SciPy's BLAS, OMP/OPENBLAS/MKL_NUM_THREADS=1).",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC; {wall / 60:.1f} minutes; load average (1, 5, 15 min) "
        f"{' / '.join(f'{a:.2f}' for a in load[0])} at the start, {' / '.join(f'{a:.2f}' for a in load[1])} at the end.",
        f"- Versions: {', '.join(vers)}.",
        f"- Measured here, now: square GEMM (n = 1024) {C.gemm_rate(g64):.1f} GFLOP/s float64, "
        f"{C.gemm_rate(g32):.1f} float32 (NumPy {g64['numpy']:.1f} / {g32['numpy']:.1f}); memory "
        f"copy {bw['copy']:.1f} GB/s (read + write), fill {bw['fill']:.1f} GB/s, fresh allocation "
        f"{bw['fresh']:.1f} GB/s.",
        f"- Command: `{' '.join(['python', *argv])}`.",
    ]


def cell(res: Result | None, rr: RowResult) -> str:
    if res is None:
        return ""
    if res.time is None:
        return "error"
    fk = rr.fisherkit()
    rel = "" if res.library == "fisherkit" or fk is None else f", {res.time.min / fk.time.min:.1f}x fisherkit"
    flag = "" if res.ok else " **check failed**"
    text = f"{C.fmt_time(res.time.min)} ({res.time.min / rr.roofline.min:.2f}x roofline{rel}){flag}"
    into = next((r for r in rr.results if r.library == res.library and r.into_buffer), None)
    if into is not None and into.time is not None:  # the same call into a reused result buffer
        text += f"; out= {C.fmt_time(into.time.min)} ({into.time.min / rr.roofline.min:.2f}x)"
    return text


def write_markdown(path: str, rows: list[RowResult], head: list[str], smoke: bool,
                   status: dict[str, tuple[bool, str]]) -> None:
    libs = ["fisherkit", *[k for k in PEERS]]
    lines = ["# fisherkit and its peers: one thread, one process, the same weights and inputs", ""]
    if smoke:
        lines += ["**Smoke run (tiny sizes, one repeat): these times mean nothing.**", ""]
    lines += ["Written by `benchmarks/bench_peers.py` (how every number is made: its docstring). "
              "Each cell: the fastest of the timed calls, its ratio to the row's roofline (the BLAS "
              "calls or stores of the same shapes, timed in the same process) and, for a peer, to "
              "fisherkit. Empty: the peer does not provide the quantity; a peer not installed is "
              "listed under Versions.", ""]
    lines += head + [""]
    lines += ["| row | dtype | roofline | " + " | ".join(display(k) for k in libs) + " |",
              "|---|---|---|" + "---|" * len(libs)]
    for rr in rows:
        lines.append(f"| {rr.row.label} | {rr.row.dtype} | {C.fmt_time(rr.roofline.min)} | "
                     + " | ".join(cell(rr.main(k), rr) for k in libs) + " |")
    lines += ["", "## Every measurement", "",
              "Agreement: max-norm relative difference from fisherkit in float64 on the same "
              "weights (bound 1e-12 in float64 rows, 1e-4 in float32 rows, where fisherkit's own "
              "float32 result is checked too); the Monte Carlo row: squared error from the exact "
              "diagonal over its closed-form expectation.", "",
              "| row | dtype | library | call | time (min) | median | runs | / roofline | / fisherkit | agreement |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for rr in rows:
        fk = rr.fisherkit()
        lines.append(f"| {rr.row.label} | {rr.row.dtype} | roofline | {rr.roofline_what} | "
                     f"{C.fmt_time(rr.roofline.min)} | {C.fmt_time(rr.roofline.median)} | {len(rr.roofline.times)} | 1 | | |")
        for r in rr.results:
            if r.time is None:
                lines.append(f"| {rr.row.label} | {rr.row.dtype} | {display(r.library)} | {r.name} | "
                             f"{r.note} | | | | | **failed** |")
                continue
            vs_fk = f"{r.time.min / fk.time.min:.2f}" if fk is not None else ""
            check = r.check + ("" if r.ok else " **failed**")
            lines.append(f"| {rr.row.label} | {rr.row.dtype} | {display(r.library)} | {r.name} | "
                         f"{C.fmt_time(r.time.min)} | {C.fmt_time(r.time.median)} | {r.runs} | "
                         f"{r.time.min / rr.roofline.min:.2f} | {vs_fk} | {check} |")
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    os.replace(tmp, path)


def write_chart(path: str, rows: list[RowResult], title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("# matplotlib is not installed: no chart", file=sys.stderr)
        return False
    libs = LIBRARIES
    colours = {"fisherkit": "#1f77b4", "backpack": "#ff7f0e", "curvlinops": "#2ca02c",
               "nngeometry": "#9467bd", "asdl": "#8c564b"}
    height = 0.8 / len(libs)
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(rows) * 2 + 1.5))
    labels = []
    for i, rr in enumerate(rows):
        labels.append(f"{rr.row.label}\n{rr.row.dtype}, roofline {C.fmt_time(rr.roofline.min)}")
        for j, lib in enumerate(libs):
            res = rr.main(lib)
            if res is None or res.time is None:
                continue
            ratio = res.time.min / rr.roofline.min
            y = i + (j - (len(libs) - 1) / 2) * height
            ax.barh(y, ratio, height=height * 0.95, color=colours[lib])
            ax.text(ratio * 1.05, y, f"{ratio:.1f}" if ratio < 100 else f"{ratio:.0f}", va="center", fontsize=7)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ratios = [r.time.min / rr.roofline.min for rr in rows for r in rr.results if r.time]
    ax.set_xlim(min([0.8, *ratios]) * 0.9, max([1.0, *ratios]) * 2.0)  # room for the labels
    ax.axvline(1.0, color="black", lw=0.8)
    ax.set_xlabel("time / roofline (same-shape BLAS calls or stores, same process); log scale")
    ax.set_title(title, fontsize=10)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[k]) for k in libs]
    fig.legend(handles, [display(k) for k in libs], loc="lower center", ncol=len(libs), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.03, 1, 1))  # the legend below the axis, clear of the bars
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return True


# ----------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat: checks that the script runs")
    ap.add_argument("--repeat", type=int, default=None, help="timed calls per implementation (default 3; 1 with --smoke)")
    ap.add_argument("--slow", type=float, default=20.0,
                    help="an implementation whose first call takes longer than this many seconds is timed once more only")
    ap.add_argument("--min-time", type=float, default=0.5,
                    help="a faster implementation is timed more than --repeat times, until its calls take about "
                         f"this many seconds (at most {MAX_CALLS} calls; 0 with --smoke)")
    ap.add_argument("--rows", default="", help="comma-separated row keys to run (diag,layer,unit,full,psg,psg-out,fvp,mc)")
    ap.add_argument("--peers", default=",".join(PEERS), help="comma-separated peers to run (default: all installed)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "peers"),
                    help="output prefix: PREFIX.md and PREFIX.png")
    args = ap.parse_args(argv)
    repeat = args.repeat or (1 if args.smoke else 3)
    rows = smoke_rows() if args.smoke else list(ROWS)
    if args.rows:
        keys = {k.strip() for k in args.rows.split(",") if k.strip()}
        unknown = keys - {r.key for r in ROWS}
        if unknown:
            ap.error(f"--rows: unknown row keys {sorted(unknown)}")
        rows = [r for r in rows if r.key in keys]
    wanted = [k.strip() for k in args.peers.split(",") if k.strip()]
    if set(wanted) - set(PEERS):
        ap.error(f"--peers: unknown {sorted(set(wanted) - set(PEERS))}; expected some of {list(PEERS)}")
    status = {k: peer_status(k) if k in wanted else (False, "not requested (--peers)") for k in PEERS}
    started = datetime.datetime.now(datetime.timezone.utc)
    load0 = os.getloadavg()
    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(msg, flush=True)

    log(f"# bench_peers: load average {load0}; peers: "
        + ", ".join(f"{PEERS[k][0]} {'ok ' + v if ok else '(' + v + ')'}" for k, (ok, v) in status.items()))
    if torch is not None:
        torch.set_num_threads(1)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set once in this process
            pass
    results: list[RowResult] = []
    with C.threads(1):
        rates = {"gemm64": C.measure_gemm_rate(np.float64, 256 if args.smoke else 1024),
                 "gemm32": C.measure_gemm_rate(np.float32, 256 if args.smoke else 1024),
                 "bw": C.measure_bandwidth(16 << 20 if args.smoke else 256 << 20)}
        for row in rows:
            results.append(measure_row(row, LIBRARIES, status, repeat, args.slow, args.smoke, log,
                                       0.0 if args.smoke else args.min_time))
    wall = time.perf_counter() - t_start
    head = machine_lines(status, rates, (load0, os.getloadavg()), started, wall,
                         [os.path.relpath(__file__), *(argv if argv is not None else sys.argv[1:])])
    os.makedirs(os.path.dirname(os.path.abspath(args.out)) or ".", exist_ok=True)
    write_markdown(args.out + ".md", results, head, args.smoke, status)
    title = (f"fisherkit and its peers, one thread ({started:%Y-%m-%d}, load average {load0[0]:.1f} at the start)"
             + (" - smoke run" if args.smoke else ""))
    chart = write_chart(args.out + ".png", results, title)
    log(f"# wrote {args.out}.md" + (f" and {args.out}.png" if chart else ""))
    failed = [r for rr in results for r in rr.results if not r.ok]
    for r in failed:
        log(f"# FAILED: {r.row.label} {r.row.dtype} {display(r.library)} {r.name}: {r.check} {r.note}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
