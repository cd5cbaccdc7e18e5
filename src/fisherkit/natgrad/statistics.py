"""Curvature statistics of the unit-wise natural gradients, from one compiled pass over the
inputs (``_core.unit_statistics``): per layer the layer's inputs, the units' per-sample metric
weights and the sums each method needs. Optionally the same pass also gives the gradient of
the loss, so that an optimizer step runs one forward pass."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import heads as _heads
from .._engine import check_kronecker_estimator, estimate, kronecker
from .._loader import _core
from .._progress import reporter
from .._validate import as_samples, check_labels, warn_unused
from ..model import MLP, check_model

METHODS = ("unit", "unit-meanfield", "unit-correlated", "quasi-diagonal", "diag", "full", "kfac", "ekfac")
KRONECKER_METHODS = ("kfac", "ekfac")
ESTIMATORS = ("exact", "score", "empirical", "bpm")


def check_method(method: Any) -> str:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r} in argument 'method'; expected one of {', '.join(METHODS)}")
    return method


def check_estimator(estimator: Any) -> str:
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r} in argument 'estimator'; expected one of "
                         f"{', '.join(ESTIMATORS)}")
    return estimator


@dataclass
class Curvature:
    """Curvature statistics of one method, per layer (see :func:`curvature`).

    ``layers[l]`` is a dict of arrays whose keys depend on the method: ``blocks`` (unit),
    ``xt``/``g2`` (unit, sample space), ``m``/``v``/``beta`` (unit-meanfield),
    ``mu``/``sigma``/``beta`` (unit-correlated; plus ``ev``/``Q``, the eigendecomposition of
    ``sigma`` the solve uses, computed once here), ``m00``/``m0i``/``mii`` (quasi-diagonal,
    diag); ``dense`` holds the P x P matrix of method ``full``, ``matrix`` the KFAC or EKFAC
    of methods ``kfac`` and ``ekfac`` (:mod:`fisherkit.kronecker`; their layers' dicts are
    empty). ``n_samples`` is the batch size.
    """

    method: str
    layers: list[dict[str, Any]] = field(default_factory=list)
    dense: Any = None
    n_samples: int = 0
    matrix: Any = None

    def blend(self, new: "Curvature", ema: float) -> "Curvature":
        """Exponential moving average ``(1 - ema) * self + ema * new`` of every statistic
        (``ema`` = weight of the new batch, in (0, 1]). Layers held in sample-space form
        cannot be averaged and take the new batch's values; derived factorisations are
        recomputed from the averaged statistics."""
        if new.method != self.method or len(new.layers) != len(self.layers):
            raise ValueError("argument 'new' holds statistics of another method or model")
        ema = float(ema)
        if not 0 < ema <= 1:
            raise ValueError(f"argument 'ema' must be in (0, 1], got {ema}")
        if self.matrix is not None:  # KFAC / EKFAC: the matrix object averages itself
            return Curvature(self.method, new.layers, None, new.n_samples, self.matrix.blend(new.matrix, ema))
        layers = []
        for old, cur in zip(self.layers, new.layers):
            if "xt" in cur or set(old) != set(cur):
                layers.append(cur)
                continue
            mixed = {k: (1 - ema) * old[k] + ema * cur[k] for k in cur if k not in ("ev", "Q")}
            if "sigma" in mixed:
                mixed.update(eigen(mixed["sigma"]))
            layers.append(mixed)
        dense = None if new.dense is None else (1 - ema) * self.dense + ema * new.dense
        return Curvature(self.method, layers, dense, new.n_samples)


def eigen(sigma: np.ndarray) -> dict[str, np.ndarray]:
    """The eigendecomposition of an input covariance (eigenvalues clipped at 0)."""
    ev, Q = np.linalg.eigh(sigma)
    return {"ev": np.maximum(ev, 0.0), "Q": Q}


def _requests(model: MLP, method: str, N: int) -> list[dict[str, Any]]:
    """Per layer the preallocated outputs of the statistics pass that `method` needs."""
    lay, dt = model.layout, model.dtype
    out = []
    for l in range(lay.n_layers):
        n_out, n_in, _ = lay.dims(l)
        k = lay.unit_width[l]
        r: dict[str, Any] = {}
        if method == "unit":
            if N >= k:
                r["blocks"] = np.empty(n_out * k * k)
            else:
                r["inputs"] = np.empty((N, n_in), dt)
                r["g2"] = np.empty((N, n_out), dt)
        elif method in ("quasi-diagonal", "diag"):
            r["g2_sum"] = np.empty(n_out)
            r["qd2"] = np.empty((n_out, k))
            if method == "quasi-diagonal":
                r["qd1"] = np.empty((n_out, k))
        elif method == "unit-meanfield":
            r.update(x_sum=np.empty(n_in), x_sq=np.empty(n_in), b2_sum=np.empty(n_out))
        elif method == "unit-correlated":
            r.update(x_sum=np.empty(n_in), x_gram=np.empty((n_in, n_in)), b2_sum=np.empty(n_out))
        out.append(r)
    return out


def _summarise(model: MLP, method: str, requests: list[dict[str, Any]], N: int) -> list[dict[str, Any]]:
    """The method's statistics (Curvature.layers) from the pass's sums."""
    lay = model.layout
    layers = []
    for l, r in enumerate(requests):
        n_out, n_in, bias = lay.dims(l)
        if method == "unit":
            k = lay.unit_width[l]
            if "blocks" in r:
                layers.append({"blocks": r["blocks"].reshape(n_out, k, k) / N})
            else:
                xt = r["inputs"].astype(np.float64)
                if bias:
                    xt = np.concatenate([xt, np.ones((N, 1))], axis=1)
                layers.append({"xt": xt, "g2": r["g2"].astype(np.float64)})
        elif method in ("quasi-diagonal", "diag"):
            entry = {"m00": r["g2_sum"] / N, "mii": r["qd2"][:, :n_in] / N}
            if method == "quasi-diagonal":
                entry["m0i"] = r["qd1"][:, :n_in] / N
            layers.append(entry)
        elif method == "unit-meanfield":
            cnt = float(N) * n_in
            m = float(r["x_sum"].sum()) / cnt
            v = max(float(r["x_sq"].sum()) / cnt - m * m, 0.0)
            layers.append({"m": np.array(m), "v": np.array(v), "beta": r["b2_sum"] / N})
        else:  # unit-correlated
            mu = r["x_sum"] / N
            sigma = r["x_gram"] / N - np.outer(mu, mu)
            layers.append({"mu": mu, "sigma": sigma, "beta": r["b2_sum"] / N, **eigen(sigma)})
    return layers


def _run(model: MLP, Xc: Any, yc: Any, estimator: str, samples: int, seed: Any, requests: list[dict[str, Any]],
         grad: Any = None, progress: Any = None) -> float:
    key = _heads.resolve_seed(seed)
    with reporter(progress, f"curvature ({estimator})") as cb:
        return float(_core.unit_statistics(*model._core_args(), model.head, model.sigma, Xc, yc, estimator, samples,
                                           key, 0, 0, requests, grad, cb))


def _inputs(model: MLP, X: Any, y: Any, estimator: str, samples: Any) -> tuple[Any, Any, int]:
    model = check_model(model, host_only=True, what="natural gradients")
    check_estimator(estimator)
    samples = as_samples(samples)
    check_labels(estimator, y)
    if estimator != "empirical":
        warn_unused(y, "y", f"estimator={estimator!r} does not use labels (only 'empirical' does)")
    Xc, yc = model._inputs(X, y if estimator == "empirical" else None)
    return Xc, yc, samples


def curvature(
    model: MLP,
    X: Any,
    *,
    method: str,
    estimator: str = "exact",
    y: Any = None,
    samples: int = 1,
    seed: int | None = None,
    progress: Any = None,
) -> Curvature:
    """Curvature statistics of ``method`` over the inputs ``X`` (N, n_0).

    ``estimator``: ``exact`` (Cov(t|h) of the head, no sampling; C backward rows per input),
    ``score`` (``samples`` labels drawn from the model per input, the draws of
    :func:`fisherkit.fisher` with the same seed), ``empirical`` (the data labels ``y``;
    biased) or ``bpm`` (Ollivier's backpropagated metric: the diagonal of Cov(t|h)
    backpropagated with squared weights; cheapest, approximate). One compiled pass. Returns a
    :class:`Curvature` for :func:`natural_gradient`'s ``curvature`` argument. ``progress``: a
    callable taking (done, total) inputs, or True for a progress bar (tqdm), between chunks.
    """
    check_method(method)
    Xc, yc, samples = _inputs(model, X, y, estimator, samples)
    N = int(Xc.shape[0])
    if method in KRONECKER_METHODS:
        check_kronecker_estimator(estimator, method, "method")
        with reporter(progress, f"curvature ({estimator}, {method})") as cb:
            M = kronecker(model, Xc, yc, estimator, method, samples, _heads.resolve_seed(seed), 0, 0, progress=cb)
        return Curvature(method, [{} for _ in range(model.n_layers)], None, N, M)
    if method == "full":
        if estimator == "bpm":
            raise ValueError("argument 'estimator': method 'full' takes 'exact', 'score' or 'empirical', not 'bpm'")
        key = _heads.resolve_seed(seed)
        with reporter(progress, f"curvature ({estimator}, full)") as cb:
            F = estimate(model, Xc, yc, estimator, "full", samples, key, 0, 0, progress=cb)
        return Curvature(method, [{} for _ in range(model.n_layers)], np.asarray(F.to_dense(), np.float64), N)
    requests = _requests(model, method, N)
    _run(model, Xc, yc, estimator, samples, seed, requests, progress=progress)
    return Curvature(method, _summarise(model, method, requests, N), None, N)


def curvature_and_gradient(model: MLP, X: Any, y: Any, *, method: str, estimator: str = "exact", samples: int = 1,
                           seed: int | None = None) -> tuple[Curvature, float, np.ndarray]:
    """:func:`curvature` and the mean loss with its gradient at the labels y, from the same
    compiled pass (one forward pass; the gradient is one more backward row)."""
    check_method(method)
    if method == "full" or method in KRONECKER_METHODS:
        loss, g = model.gradient(X, y)
        labels = y if estimator == "empirical" else None  # y is for the gradient; the metric may not use it
        return curvature(model, X, method=method, estimator=estimator, y=labels, samples=samples, seed=seed), loss, g
    model = check_model(model, host_only=True, what="natural gradients")
    check_estimator(estimator)
    samples = as_samples(samples)
    Xc, yc = model._inputs(X, y)
    N = int(Xc.shape[0])
    requests = _requests(model, method, N)
    g = np.empty(model.n_params, dtype=model.dtype)
    loss = _run(model, Xc, yc, estimator, samples, seed, requests, g)
    return Curvature(method, _summarise(model, method, requests, N), None, N), loss, g


def layer_inputs(model: MLP, X: Any) -> list[np.ndarray]:
    """Inputs x^{l-1} (N, n_{l-1}) of every layer (the compiled forward pass)."""
    model = check_model(model, host_only=True, what="natural gradients")
    Xc, _ = model._inputs(X)
    N = int(Xc.shape[0])
    requests = [{"inputs": np.empty((N, model.layout.dims(l)[1]), model.dtype)} for l in range(model.n_layers)]
    _run(model, Xc, None, "bpm", 1, 0, requests)
    return [r["inputs"] for r in requests]


def unit_weights(model: MLP, X: Any, *, estimator: str = "exact", y: Any = None, samples: int = 1,
                 seed: int | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per layer the per-sample metric weights of every unit, ``g2`` (N, m) for the unit's
    pre-activation and ``b2`` (N, m) for its activity (g2 = b2 phi'^2), averaged over label
    draws. The exact unit block is ``Xt^T diag(g2[:, i]) Xt / N``."""
    Xc, yc, samples = _inputs(model, X, y, estimator, samples)
    N = int(Xc.shape[0])
    requests = [{"g2": np.empty((N, n), model.dtype), "b2": np.empty((N, n), model.dtype)} for n in model.sizes[1:]]
    _run(model, Xc, yc, estimator, samples, seed, requests)
    return [r["g2"] for r in requests], [r["b2"] for r in requests]
