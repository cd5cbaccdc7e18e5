"""The computations of ``fisherkit report``, one function per section of the page.

Each section gets a number of seconds, picks how many inputs it can afford (a timed pilot
on a few inputs, scaled; see ``_report_plan``), computes with the public fisherkit API, and
writes its numbers into ``ctx.arrays`` under the keys of ``_report_keys.KEYS``. What does
not fit in its time, its memory or the model's size is recorded in ``ctx.skipped`` with the
reason, and the page says so. Sections never catch KeyboardInterrupt.

Inputs beyond the first section's pass are a random subset of the rows (the first n of one
permutation, so a smaller subset is inside a larger one), read in sorted order from the
data (which may be memory-mapped).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from . import heads as _heads
from ._data import row_chunks
from ._report_plan import (BYTES_PER_SECOND, SAFETY, eigh_flops, kfac_error_flops, largest_fitting, timed,
                           unit_solve_flops)
from ._validate import available_memory, format_bytes
from .fisher import fisher
from .kfac import kfac_error
from .model import MLP
from .operators import fisher_operator
from .variance import recommend, samples_needed, variance, variance_bounds
from .structure import CLASSES, block_structure
from .natgrad import curvature, natural_gradient

PILOT_ROWS = 64        # inputs of a timing pilot
TOP_K = 20             # eigenvalues reported
DENSE_LIMIT = 3000     # parameters up to which the P x P Fisher is formed (spectrum, structure, reference step)
LANCZOS_MATVECS = 300  # Fisher-vector products Lanczos is allowed (predicted cost uses all of them)
PROBES = 16            # Hutchinson probes for tr(F^2) when the spectrum comes from Lanczos
STRUCTURE_PAIRS = 256  # sampled pairs per class when the dense Fisher does not fit
SUBSET_BYTES = 256 << 20  # inputs held in memory at once by the subset sections
ROW_CAPS = {"spectrum": 4096, "estimators": 4096, "structure": 2048, "preconditioners": 4096}

# The natural-gradient methods compared in section 5, in the order of the page. A method
# added to fisherkit.natgrad.natural_gradient is compared by adding it here (and, if its
# cost is not linear in the inputs, a flop model in _preconditioner_fixed_cost).
PRECONDITIONERS = ("diag", "quasi-diagonal", "unit", "unit-meanfield", "unit-correlated", "kfac")
# Dampings of section 5, relative to the mean exact F_ii: how close two steps are depends on
# it (a large damping pulls every step towards the plain gradient), so the page shows four.
DAMPINGS = (1e-3, 1e-2, 1e-1, 1.0)


@dataclass
class Context:
    """What every section reads (model, data, settings) and writes (arrays, notes, skips)."""

    model: MLP
    X: Any
    y: Any
    estimators: tuple[str, ...]
    samples: int
    seed: int
    rate: float
    arrays: dict[str, Any] = field(default_factory=dict)
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.n = int(self.X.shape[0])
        self.order = np.random.default_rng(self.seed).permutation(self.n)
        self.row_bytes = int(self.X.shape[1]) * 8
        self.max_rows = max(1, SUBSET_BYTES // self.row_bytes)
        self._cache: dict[int, tuple[np.ndarray, Any]] = {}
        self._deadline: float | None = None

    # ------------------------------------------------------------------ rows of the data
    def _convert(self, Xb: Any, yb: Any) -> tuple[np.ndarray, Any]:
        m = self.model
        Xc = np.ascontiguousarray(np.asarray(Xb), dtype=m.dtype)
        if yb is None:
            return Xc, None
        yb = np.asarray(yb)
        if m.head == "categorical":
            return Xc, yb.reshape(-1).astype(np.int64)
        return Xc, np.ascontiguousarray(yb.reshape(yb.shape[0], -1), dtype=m.dtype)

    def rows(self, n: int) -> tuple[np.ndarray, Any]:
        """The first n inputs of the permutation (sorted), in memory, with their labels."""
        n = min(int(n), self.n)
        if n not in self._cache:
            idx = np.sort(self.order[:n]) if n < self.n else slice(None)
            self._cache = {n: self._convert(self.X[idx], None if self.y is None else self.y[idx])}
        return self._cache[n]

    def chunks(self, n: int) -> Iterator[tuple[np.ndarray, Any]]:
        """The same n inputs as :meth:`rows`, a memory-sized chunk at a time (every row in
        file order when n is the whole data set)."""
        if n >= self.n:
            for sl in row_chunks(self.n, self.row_bytes, SUBSET_BYTES // 4):
                yield self._convert(self.X[sl], None if self.y is None else self.y[sl])
            return
        idx = np.sort(self.order[:n])
        step = max(1, SUBSET_BYTES // 4 // self.row_bytes)
        for lo in range(0, n, step):
            part = idx[lo:lo + step]
            yield self._convert(self.X[part], None if self.y is None else self.y[part])

    def labels_for(self, X: np.ndarray, y: Any) -> tuple[Any, str]:
        """The data's labels, or one label per input drawn from the model when there are none."""
        if y is not None:
            return y, "the data's labels"
        m = self.model
        draw = _heads.sample(m.head, m.forward(X), seed=self.seed, sigma=m.sigma)
        return (draw.reshape(-1) if m.head == "categorical" else draw[:, 0, :]), \
            "labels drawn from the model (the data has none)"

    # ------------------------------------------------------------------ bookkeeping
    def skip(self, section: str, what: str, reason: str) -> None:
        self.skipped.append({"section": section, "what": what, "reason": reason})

    def note(self, section: str, **facts: Any) -> None:
        self.sections.setdefault(section, {}).update(facts)

    def layer_slices(self) -> list[slice]:
        lay = self.model.layout  # layers without bias have no bias parameters
        return [lay.layer_slice(l) for l in range(lay.n_layers)]

    def per_layer(self, values: np.ndarray, reduce: Callable[[np.ndarray], float]) -> np.ndarray:
        return np.array([reduce(values[s]) for s in self.layer_slices()], dtype=np.float64)

    def affordable(self, section: str, what: str, predicted: float, seconds: float) -> bool:
        """Whether a step predicted (by flop and byte counts) to take `predicted` seconds fits
        in `seconds`; records the skip when it does not. Run before a pilot that is itself
        costly, so that not even the pilot overruns."""
        if predicted <= seconds:
            return True
        self.skip(section, what, f"predicted to take about {predicted:.1f} s; {max(seconds, 0.0):.1f} s of the "
                                 "time limit were left for it")
        return False

    def grow(self, fn: Callable[[int], Any], n0: int, cap: int, seconds: float,
             fixed: Callable[[int], float] | None = None) -> tuple[Any, int]:
        """fn(n0), then fn on up to 4 times as many inputs, again and again, while the next
        run is predicted to fit in what is left of `seconds`: the last run's time less its
        fixed(n) part (a flop model of what does not scale with the inputs), scaled linearly,
        plus fixed(next n). Returns the last finished result and its n.

        The first run always happens (check :meth:`affordable` before when it may be
        costly). A later run that overruns `seconds` is abandoned at its next
        :meth:`tick` and the previous result kept, so a wrong prediction costs at most
        one step of fn beyond the time."""
        t_start = time.perf_counter()
        fx = fixed or (lambda k: 0.0)
        n = max(1, min(n0, cap))
        res, t = timed(lambda: fn(n))
        while n < cap:
            left = seconds - (time.perf_counter() - t_start)
            per_row = max(t - fx(n), 0.5 * t) / n

            def predict(k: int) -> float:
                return per_row * k + fx(k)

            nxt = largest_fitting(predict, left, n + 1, min(cap, 4 * n))
            if nxt is None:
                break
            self._deadline = t_start + seconds
            try:
                res, t = timed(lambda: fn(nxt))
            except OutOfTime:
                break
            finally:
                self._deadline = None
            n = nxt
        return res, n

    def tick(self) -> None:
        """Raise :class:`OutOfTime` when a run started by :meth:`grow` (after its first) has
        passed its deadline; sections call it between their steps."""
        if self._deadline is not None and time.perf_counter() > self._deadline:
            raise OutOfTime


class OutOfTime(Exception):
    """A step ran past the time its section was given."""


def _pilot_rows(ctx: Context) -> int:
    return min(ctx.n, PILOT_ROWS)


def _secs(rate: float, flops: float) -> float:
    return SAFETY * flops / rate


def _dense_flops(m: MLP, n: int) -> float:
    """Forming the dense P x P Fisher from n inputs (C Jacobian rows each)."""
    return 2.0 * n * m.output_dim * float(m.n_params) ** 2


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return float(a @ b) / (na * nb) if na > 0 and nb > 0 else float("nan")


# ============================================================================ 1. Fisher
def fisher_section(ctx: Context, seconds: float) -> None:
    """Exact diagonal (and loss, accuracy) over as many inputs as fit, then the exact unit
    blocks and their eigenvalues."""
    t_start = time.perf_counter()
    m = ctx.model
    n0 = _pilot_rows(ctx)

    def diag_pass(n: int) -> tuple[Any, float, float, int]:
        acc, nll, hits = None, 0.0, 0.0
        for Xc, yc in ctx.chunks(n):
            ctx.tick()
            D = fisher(m, Xc, estimator="exact", shape="diag")
            acc = D if acc is None else acc.merge(D)
            if yc is not None:
                nll -= float(np.sum(m.log_likelihood(Xc, yc), dtype=np.float64))
                if m.head == "categorical":
                    hits += float((np.argmax(m.forward(Xc), axis=1) == yc).sum())
        return acc, nll, hits, n

    (D, nll, hits, n), _ = ctx.grow(diag_pass, n0, ctx.n, 0.3 * seconds)
    diag = np.asarray(D.values, dtype=np.float64)
    a = ctx.arrays
    a["fisher/n_inputs"] = np.array(n)
    a["fisher/diag"] = diag
    a["fisher/trace"] = np.array(diag.sum())
    a["fisher/layer_trace"] = ctx.per_layer(diag, np.sum)
    a["fisher/layer_share"] = a["fisher/layer_trace"] / diag.sum() if diag.sum() > 0 else \
        np.full(m.n_layers, np.nan)
    a["fisher/layer_param_share"] = a["model/layer_params"] / m.n_params
    a["fisher/layer_mean"] = ctx.per_layer(diag, np.mean)
    a["fisher/layer_zero"] = ctx.per_layer(diag, lambda v: float((v <= 0).sum()))
    pos = diag[diag > 0]
    lo, hi = (np.log10(pos.min()), np.log10(pos.max())) if pos.size else (-1.0, 0.0)
    edges = np.linspace(lo, hi + 1e-9 * max(1.0, abs(hi)), 41)
    a["fisher/hist_edges"] = edges
    a["fisher/hist_counts"] = np.array(
        [np.histogram(np.log10(v[v > 0]), bins=edges)[0] for v in (diag[s] for s in ctx.layer_slices())])
    if ctx.y is not None:
        a["overview/n_inputs"] = np.array(n)
        a["overview/loss"] = np.array(nll / n)
        if m.head == "categorical":
            a["overview/accuracy"] = np.array(hits / n)
    ctx.note("fisher", n_inputs=n, of=ctx.n)
    _unit_blocks(ctx, seconds - (time.perf_counter() - t_start))


def _unit_blocks(ctx: Context, seconds: float) -> None:
    m = ctx.model
    geo = [(m.sizes[l + 1], m.layout.unit_width[l]) for l in range(m.n_layers)]  # (units, block size)
    nbytes = sum(u * k * k for u, k in geo) * m.dtype.itemsize
    if 3 * nbytes > available_memory() // 2:
        ctx.skip("fisher", "unit blocks", f"they take {format_bytes(nbytes)} (three copies while summing); "
                                          f"{format_bytes(available_memory())} of memory is available")
        return
    n0 = _pilot_rows(ctx)
    eig = _secs(ctx.rate, sum(u * eigh_flops(k) for u, k in geo))
    pilot_cost = 3 * nbytes / BYTES_PER_SECOND + _secs(ctx.rate, 2.0 * n0 * m.output_dim
                                                       * sum(u * k * k for u, k in geo))
    if not ctx.affordable("fisher", "unit blocks and their eigenvalues", pilot_cost + eig, seconds):
        return

    def unit_pass(n: int) -> Any:
        acc = None
        for Xc, _ in ctx.chunks(n):
            ctx.tick()
            U = fisher(m, Xc, estimator="exact", shape="unit")
            acc = U if acc is None else acc.merge(U)
        return acc

    t_start = time.perf_counter()
    U, n = ctx.grow(unit_pass, n0, ctx.n, seconds - eig)
    if not ctx.affordable("fisher", "unit-block eigenvalues", eig, seconds - (time.perf_counter() - t_start)):
        return
    ev = [np.asarray(e, dtype=np.float64) for e in U.eigvalsh()]  # per layer (units, k), ascending
    top = np.concatenate([e[:, -1] for e in ev])
    bottom = np.concatenate([e[:, 0] for e in ev])
    tr = np.concatenate([e.sum(axis=1) for e in ev])
    layer = np.concatenate([np.full(e.shape[0], l + 1) for l, e in enumerate(ev)])
    with np.errstate(divide="ignore", invalid="ignore"):
        cond = np.where(top > 0, np.log10(top / np.maximum(bottom, 1e-12 * top)), np.nan)
        share = np.where(tr > 0, top / tr, np.nan)
    a = ctx.arrays
    a["unit/n_inputs"] = np.array(n)
    a["unit/layer"] = layer
    a["unit/eig_max"], a["unit/eig_min"], a["unit/trace"] = top, bottom, tr
    a["unit/log10_cond"], a["unit/top_share"] = cond, share
    per = [layer == l + 1 for l in range(m.n_layers)]
    a["unit/layer_median_log10_cond"] = np.array([_nan_stat(np.nanmedian, cond[s]) for s in per])
    a["unit/layer_mean_top_share"] = np.array([_nan_stat(np.nanmean, share[s]) for s in per])
    a["unit/eigenvalues"] = np.sort(np.concatenate([e.ravel() for e in ev]))[::-1].copy()
    ctx.note("unit", n_inputs=n, of=ctx.n)


def _nan_stat(fn: Callable[[np.ndarray], Any], v: np.ndarray) -> float:
    return float(fn(v)) if np.isfinite(v).any() else float("nan")


# ============================================================================ 2. spectrum
def spectrum_section(ctx: Context, seconds: float) -> None:
    """Top eigenvalues, trace and effective dimension: every eigenvalue of the dense Fisher
    for small models, else Lanczos (scipy eigsh) on Fisher-vector products."""
    m = ctx.model
    P = m.n_params
    cap = min(ctx.n, ctx.max_rows, ROW_CAPS["spectrum"])
    n0 = min(_pilot_rows(ctx), cap)
    a = ctx.arrays
    if P <= DENSE_LIMIT:
        if not ctx.affordable("spectrum", "dense eigenvalues", _secs(ctx.rate, _dense_flops(m, n0) + eigh_flops(P)),
                              seconds):
            return
        F, n = ctx.grow(lambda k: fisher(m, ctx.rows(k)[0], estimator="exact", shape="full"), n0, cap,
                        seconds - _secs(ctx.rate, eigh_flops(P)))
        ev = np.sort(np.linalg.eigvalsh(np.asarray(F.to_dense(), dtype=np.float64)))[::-1].copy()
        k = min(TOP_K, P)
        a["spectrum/eigenvalues"] = ev
        top, trace, frob2, se, probes, matvecs = ev[:k], float(ev.sum()), float((ev * ev).sum()), 0.0, 0, 0
        exact = 1
    else:
        res = _lanczos(ctx, seconds, cap, n0)
        if res is None:
            return
        n, top, trace, frob2, se, probes, matvecs = res
        exact = 0
    a["spectrum/n_inputs"] = np.array(n)
    a["spectrum/exact"] = np.array(exact)
    a["spectrum/top"] = top
    a["spectrum/trace"] = np.array(trace)
    a["spectrum/top_share"] = np.array(top.sum() / trace if trace > 0 else np.nan)
    a["spectrum/frob2"], a["spectrum/frob2_se"] = np.array(frob2), np.array(se)
    a["spectrum/probes"], a["spectrum/matvecs"] = np.array(probes), np.array(matvecs)
    ed = trace * trace / frob2 if frob2 > 0 else float("nan")
    a["spectrum/effective_dim"] = np.array(ed)
    a["spectrum/effective_dim_se"] = np.array(ed * se / frob2 if frob2 > 0 else np.nan)
    k = top.size
    if "unit/eigenvalues" in a:
        a["spectrum/unit_top"] = a["unit/eigenvalues"][:k].copy()
    if "fisher/diag" in a:
        a["spectrum/diag_top"] = np.sort(a["fisher/diag"])[::-1][:k].copy()
    ctx.note("spectrum", n_inputs=n, of=ctx.n, method="dense eigvalsh" if exact else "Lanczos (scipy eigsh)")


def _lanczos(ctx: Context, seconds: float, cap: int, n0: int) -> tuple[Any, ...] | None:
    try:
        import scipy.sparse.linalg as spla
    except ImportError:
        ctx.skip("spectrum", "Lanczos eigenvalues", 'the model has more than '
                 f'{DENSE_LIMIT} parameters, so the spectrum needs SciPy: pip install "fisherkit[scipy]"')
        return None

    t_start = time.perf_counter()
    m = ctx.model
    P = m.n_params
    rng = np.random.default_rng(ctx.seed)
    M = LANCZOS_MATVECS + PROBES
    v = rng.standard_normal(P)
    # grow a single product until one takes what the whole computation may spend on each
    (_, t1), n = ctx.grow(lambda k: timed(lambda: fisher_operator(m, ctx.rows(k)[0]).matvec(v)), n0, cap,
                          seconds / (M + 2))
    if not ctx.affordable("spectrum", "Lanczos eigenvalues", t1 * M, seconds - (time.perf_counter() - t_start)):
        return None
    Xs, _ = ctx.rows(n)
    op = fisher_operator(m, Xs)
    deadline = t_start + seconds
    count = [0]

    def product(V: np.ndarray) -> np.ndarray:
        if time.perf_counter() > deadline:
            raise OutOfTime
        count[0] += 1 if V.ndim == 1 else V.shape[1]
        return np.asarray(op.matmat(V.reshape(P, -1)), dtype=np.float64).reshape(V.shape)

    op64 = spla.LinearOperator((P, P), matvec=product, matmat=product, rmatvec=product, dtype=np.float64)
    k = min(TOP_K, P - 1)
    ncv = min(P, 2 * k + 10)
    try:
        try:
            vals, vecs = spla.eigsh(op64, k=k, which="LA", tol=1e-5, ncv=ncv, v0=rng.standard_normal(P),
                                    maxiter=max(3, LANCZOS_MATVECS // (ncv - k)))
        except spla.ArpackNoConvergence as exc:
            vals, vecs = exc.eigenvalues, exc.eigenvectors
            ctx.skip("spectrum", f"{k - len(vals)} of the top {k} eigenvalues",
                     f"Lanczos converged on {len(vals)} within {LANCZOS_MATVECS} products")
            if len(vals) == 0:
                return None
        o = np.argsort(vals)[::-1]
        vals, vecs = vals[o], vecs[:, o]
        Z = rng.choice([-1.0, 1.0], size=(P, PROBES))
        R = product(Z) - vecs @ (vals[:, None] * (vecs.T @ Z))  # (F - V L V^T) Z
    except OutOfTime:
        ctx.skip("spectrum", "Lanczos eigenvalues", f"{count[0]} Fisher-vector products on {n} inputs "
                 f"took the {seconds:.1f} s left for the spectrum without converging")
        return None
    est = (R * R).sum(axis=0)  # z^T R^2 z per probe, unbiased for tr(R^2)
    frob2 = float((vals ** 2).sum() + est.mean())
    se = float(est.std(ddof=1) / np.sqrt(PROBES))
    trace = float(fisher(m, Xs, estimator="exact", shape="diag").trace())
    return n, vals.astype(np.float64), trace, frob2, se, PROBES, count[0]


# ============================================================================ 3. estimators
def estimators_section(ctx: Context, seconds: float) -> None:
    """Closed-form standard deviations of the sampled estimators, their bounds, where each
    wins and the optimal mix, and the draws needed for 10% relative error at 95%."""

    m = ctx.model
    S = ctx.samples
    cap = min(ctx.n, ctx.max_rows, ROW_CAPS["estimators"])
    n0 = min(_pilot_rows(ctx), cap)

    def run(n: int) -> dict[str, Any]:
        X, _ = ctx.rows(n)
        out: dict[str, Any] = {}
        F = np.asarray(fisher(m, X, estimator="exact", shape="diag").values, dtype=np.float64)
        out["variance/layer_mean_fisher"] = ctx.per_layer(F, np.mean)
        for e in ctx.estimators:
            ctx.tick()
            V = np.asarray(variance(m, X, estimator=e, shape="diag", samples=S).values, dtype=np.float64)
            ctx.tick()
            lo, hi = (np.asarray(b.values, dtype=np.float64) for b in variance_bounds(m, X, e, samples=S))
            ctx.tick()
            need = np.asarray(samples_needed(m, X, 0.1, 0.95, e, per_parameter=True), dtype=np.float64)
            sd = np.sqrt(np.maximum(V, 0.0))
            out[f"variance/{e}/sd"] = sd
            out[f"variance/{e}/layer_mean_sd"] = ctx.per_layer(sd, np.mean)
            out[f"variance/{e}/layer_mean_sd_upper"] = ctx.per_layer(np.sqrt(np.maximum(hi, 0.0)), np.mean)
            out[f"variance/{e}/layer_mean_sd_lower"] = ctx.per_layer(np.sqrt(np.maximum(lo, 0.0)), np.mean)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(V > 0, np.log(np.maximum(hi, V) / np.where(V > 0, V, 1.0)), np.nan)
                rel = np.where(F > 0, sd / np.where(F > 0, F, 1.0), np.nan)
            out[f"variance/{e}/layer_log_ratio"] = ctx.per_layer(ratio, lambda v: _nan_stat(np.nanmedian, v))
            out[f"variance/{e}/layer_rel_error"] = ctx.per_layer(rel, lambda v: _nan_stat(np.nanmedian, v))
            out[f"variance/{e}/layer_samples_needed"] = ctx.per_layer(need, np.max)
            out[f"variance/{e}/samples_needed"] = np.array(need.max())
        if set(ctx.estimators) >= {"score", "hessian"}:
            ctx.tick()
            rec = recommend(m, X, samples=S)
            out["variance/layer_hessian_wins"] = np.array([d["frac_hessian"] for d in rec.layers])
            out["variance/layer_mean_alpha"] = np.array([d["mean_alpha"] for d in rec.layers])
            out["variance/layer_mean_sd_mix"] = ctx.per_layer(np.sqrt(np.maximum(rec.v_mix, 0.0)), np.mean)
        return out

    res, n = ctx.grow(run, n0, cap, seconds)
    ctx.arrays.update(res)  # type: ignore[arg-type]
    ctx.arrays["variance/n_inputs"] = np.array(n)
    ctx.arrays["variance/samples"] = np.array(S)
    ctx.note("estimators", n_inputs=n, of=ctx.n)


# ============================================================================ 4. structure
def structure_section(ctx: Context, seconds: float) -> None:
    """Off-block against in-block Fisher mass (fisherkit.block_structure): every pair and the
    per-layer ratios for small models, sampled pairs otherwise; and per layer the exact
    relative distance of KFAC and EKFAC from the layer block (fisherkit.kfac_error), which
    never forms a block, for every model."""

    m = ctx.model
    P = m.n_params
    dense = P <= DENSE_LIMIT
    cap = min(ctx.n, ctx.max_rows, ROW_CAPS["structure"])
    if not dense and cap < 2:
        ctx.skip("structure", "sampled block structure", "it needs at least 2 inputs")
        return
    n0 = min(max(_pilot_rows(ctx), 2), cap)
    if dense and not ctx.affordable("structure", "block structure", 2 * _secs(ctx.rate, _dense_flops(m, n0))
                                    + 20 * P * P * 8 / BYTES_PER_SECOND, seconds):
        return

    def run(n: int) -> dict[str, Any]:
        X, _ = ctx.rows(n)
        ke = kfac_error(m, X)
        ctx.tick()
        if not dense:
            bs = block_structure(m, X, pairs=STRUCTURE_PAIRS, seed=ctx.seed)
            return {"bs": bs, "kfac": ke.kfac, "ekfac": ke.ekfac}
        bs = block_structure(m, X)
        ctx.tick()
        F = np.asarray(fisher(m, X, estimator="exact", shape="full").to_dense(), dtype=np.float64)
        F2 = F * F
        rows = F2.sum(axis=1)
        same, across = [], []
        for s, ix in zip(ctx.layer_slices(), m.layout.unit_index()):
            inb = float(F2[ix[:, :, None], ix[:, None, :]].sum())
            layer = float(F2[s, s].sum())
            same.append((layer - inb) / inb if inb > 0 else np.nan)
            across.append((float(rows[s].sum()) - layer) / inb if inb > 0 else np.nan)
        return {"bs": bs, "same": np.array(same), "across": np.array(across), "kfac": ke.kfac, "ekfac": ke.ekfac}

    # the pairs of inputs of kfac_error grow with n^2: predicted by their flops
    res, n = ctx.grow(run, n0, cap, seconds, fixed=lambda k: _secs(ctx.rate, kfac_error_flops(m.sizes, k)))
    bs = res["bs"]
    a = ctx.arrays
    a["structure/n_inputs"] = np.array(n)
    a["structure/sampled"] = np.array(int(bs.sampled))
    a["structure/pairs"] = np.array(STRUCTURE_PAIRS if bs.sampled else 0)
    a["structure/classes"] = np.array(CLASSES)
    a["structure/rms"] = np.array([bs.rms[c] for c in CLASSES])
    a["structure/ratio"] = np.array([bs.ratio[c] for c in CLASSES])
    a["structure/counts"] = np.array([bs.counts[c] for c in CLASSES])
    a["structure/layer_kfac_error"] = np.asarray(res["kfac"], dtype=np.float64)
    a["structure/layer_ekfac_error"] = np.asarray(res["ekfac"], dtype=np.float64)
    if dense:
        a["structure/layer_same_layer_ratio"] = res["same"]
        a["structure/layer_across_ratio"] = res["across"]
    else:
        ctx.skip("structure", "per-layer masses", f"they need the dense {P} x {P} Fisher (more than "
                 f"{DENSE_LIMIT} parameters); the classes below use {STRUCTURE_PAIRS} sampled pairs each")
    ctx.note("structure", n_inputs=n, of=ctx.n, method="every pair" if dense else "sampled pairs")


# ============================================================================ 5. preconditioners
def _preconditioner_fixed_cost(ctx: Context, n: int) -> float:
    """Predicted seconds of the parts of section 5 that are not linear in the inputs: the
    exact unit-block Cholesky factorisations, the eigendecompositions of the input
    covariances and of the KFAC factors and, for small models, the dense reference."""
    m = ctx.model
    D = len(DAMPINGS)
    flops = sum(unit_solve_flops(m.sizes[l + 1], m.layout.unit_width[l], n, D) for l in range(m.n_layers))
    if m.n_params <= DENSE_LIMIT:
        # the dense solve: a Cholesky factorisation and two general solves with the factor
        flops += _dense_flops(m, n) + D * 2.0 * m.n_params ** 3
    # unit-correlated: one eigendecomposition of each layer's input covariance; kfac: one of
    # each factor (k_l x k_l and n_l x n_l)
    flops += sum(eigh_flops(k) for k in m.sizes[:-1])
    flops += sum(eigh_flops(k + 1) + eigh_flops(no) for k, no in zip(m.sizes[:-1], m.sizes[1:]))
    return _secs(ctx.rate, flops)


class _NoStep(Exception):
    """There is no reference step to compare with (the message says why)."""


def preconditioners_section(ctx: Context, seconds: float) -> None:
    """For the gradient of the data, each method's natural-gradient step against the
    reference: the exact (dense) natural gradient for small models, else the exact
    unit-block step; cosines and seconds."""

    m = ctx.model
    dense = m.n_params <= DENSE_LIMIT
    reference = "full" if dense else "unit"
    cap = min(ctx.n, ctx.max_rows, ROW_CAPS["preconditioners"])
    n0 = min(_pilot_rows(ctx), cap)

    def steps(meth: str, X: np.ndarray, g: np.ndarray, lams: np.ndarray) -> tuple[list[np.ndarray], float]:
        """The steps of `meth` at every damping, from one computation of its statistics;
        seconds = statistics plus the mean solve."""
        ctx.tick()
        cv, t_c = timed(lambda: curvature(m, X, method=meth))
        out, t_s = [], 0.0
        for lam in lams:
            ctx.tick()
            step, t = timed(lambda: natural_gradient(m, X, g, method=meth, damping=float(lam), curvature=cv))
            out.append(np.asarray(step, dtype=np.float64))
            t_s += t
        return out, t_c + t_s / len(lams)

    def run(n: int) -> dict[str, Any]:
        X, y = ctx.rows(n)
        y, label_note = ctx.labels_for(X, y)
        mean_f = float(np.mean(np.asarray(fisher(m, X, estimator="exact", shape="diag").values, dtype=np.float64)))
        if not mean_f > 0:
            raise _NoStep("the exact Fisher diagonal is zero on these inputs: there is no natural gradient to "
                          "compare with")
        lams = mean_f * np.asarray(DAMPINGS)
        _, g = m.gradient(X, y)
        g = np.asarray(g, dtype=np.float64)
        try:
            refs, t_ref = steps(reference, X, g, lams)
        except (ValueError, np.linalg.LinAlgError) as exc:
            raise _NoStep(f"the reference step ({reference}) failed: {exc}") from None
        cos, secs, failed = [], [], []
        for meth in PRECONDITIONERS:
            if meth == reference:  # the reference's own row: cosine 1, its time
                cos.append([1.0] * len(lams))
                secs.append(t_ref)
                continue
            try:
                got, t = steps(meth, X, g, lams)
            except (ValueError, np.linalg.LinAlgError) as exc:
                failed.append((meth, str(exc)))
                cos.append(np.full(len(lams), np.nan))
                secs.append(np.nan)
                continue
            cos.append([_cosine(a, b) for a, b in zip(got, refs)])
            secs.append(t)
        return {"damping": lams, "cos": np.array(cos), "secs": np.array(secs),
                "gcos": np.array([_cosine(g, r) for r in refs]), "t_ref": t_ref, "failed": failed,
                "labels": label_note}

    if not ctx.affordable("preconditioners", "natural-gradient comparison",
                          _preconditioner_fixed_cost(ctx, n0), seconds):
        return
    try:
        # the factorisations are predicted by their flop counts, not scaled with the inputs
        res, n = ctx.grow(run, n0, cap, seconds, fixed=lambda k: _preconditioner_fixed_cost(ctx, k))
    except _NoStep as exc:
        ctx.skip("preconditioners", "every method", str(exc))
        return
    for meth, msg in res["failed"]:
        ctx.skip("preconditioners", meth, msg)
    a = ctx.arrays
    a["precond/n_inputs"] = np.array(n)
    a["precond/damping"] = res["damping"]
    a["precond/methods"] = np.array(PRECONDITIONERS)
    a["precond/cosine"] = res["cos"]
    a["precond/seconds"] = res["secs"]
    a["precond/gradient_cosine"] = res["gcos"]
    a["precond/reference_seconds"] = np.array(res["t_ref"])
    a["precond/reference_exact"] = np.array(int(dense))
    ctx.note("preconditioners", n_inputs=n, of=ctx.n, labels=res["labels"],
             reference="the exact natural gradient (dense Fisher)" if dense else
             "the exact unit-block natural gradient (the dense Fisher does not fit)")


# (name, function, weight): the order of the page; a section gets weight / (remaining weights)
# of the time left when it starts.
SECTIONS: tuple[tuple[str, Callable[[Context, float], None], float], ...] = (
    ("fisher", fisher_section, 0.25),
    ("spectrum", spectrum_section, 0.2),
    ("estimators", estimators_section, 0.25),
    ("structure", structure_section, 0.1),
    ("preconditioners", preconditioners_section, 0.2),
)
