"""The figures of ``fisherkit report``, one function each, for notebooks as for the page.

Every function takes the results of :func:`fisherkit.report` (a ``Report``, or the
``Report.load``-ed results of an earlier run) and a matplotlib ``Axes``, draws on it from the
report's arrays only, and returns the axes::

    import matplotlib.pyplot as plt
    rep = fisherkit.report(model, X, y)
    fig, ax = plt.subplots()
    fisherkit.plot.spectrum(rep, ax)

A figure whose section was skipped (time limit, model size) raises ValueError with the
report's reason. Needs matplotlib (``pip install "fisherkit[report]"``).
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["layer_mass", "diagonal_histogram", "unit_spread", "spectrum", "estimator_sd", "log_ratio",
           "estimator_choice", "block_structure", "kfac_error", "preconditioners"]

_ESTIMATOR_COLOR = {"score": "C0", "hessian": "C3"}


def _need(r: Any, *keys: str) -> None:
    missing = [k for k in keys if k not in r]
    if not missing:
        return
    section = missing[0].split("/")[0]
    reasons = [f"{s['what']}: {s['reason']}" for s in getattr(r, "skipped", [])
               if _SECTION_OF.get(section) == s["section"]]
    why = "; ".join(reasons) if reasons else "it was not computed"
    raise ValueError(f"this report has no {missing[0]!r} ({why})")


_SECTION_OF = {"fisher": "fisher", "unit": "fisher", "spectrum": "spectrum", "variance": "estimators",
               "structure": "structure", "precond": "preconditioners"}


def _layers(r: Any) -> np.ndarray:
    return np.arange(1, len(r["model/layer_params"]) + 1)



def _per_layer_axes(ax: Any, x: Any, ylabel: str, title: str, loc: str = "best") -> Any:
    """The common frame of the per-layer figures: one tick per layer, labels, a legend."""
    ax.set_xticks(x)
    ax.set_xlabel("layer")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(frameon=False, fontsize="small", loc=loc)
    return ax

def _estimators(r: Any) -> list[str]:
    return [e for e in ("score", "hessian") if f"variance/{e}/layer_mean_sd" in r]


def layer_mass(r: Any, ax: Any) -> Any:
    """Share of the Fisher trace per layer next to the layer's share of the parameters."""
    _need(r, "fisher/layer_share", "fisher/layer_param_share")
    x = _layers(r)
    ax.bar(x - 0.2, r["fisher/layer_share"], width=0.4, label="share of the Fisher trace", color="C1")
    ax.bar(x + 0.2, r["fisher/layer_param_share"], width=0.4, label="share of the parameters", color="0.7")
    top = np.nanmax(np.concatenate([r["fisher/layer_share"], r["fisher/layer_param_share"]]))
    ax.set_ylim(0, 1.35 * top if np.isfinite(top) and top > 0 else 1)  # room for the legend
    return _per_layer_axes(ax, x, "share", "where the Fisher mass sits", loc="upper left")


def diagonal_histogram(r: Any, ax: Any) -> Any:
    """Histogram of log10 F_ii, one outline per layer (entries equal to 0 left out)."""
    _need(r, "fisher/hist_edges", "fisher/hist_counts")
    edges = r["fisher/hist_edges"]
    for l, counts in enumerate(r["fisher/hist_counts"]):
        ax.stairs(counts, edges, label=f"layer {l + 1}", linewidth=1.5)
    ax.set_yscale("symlog", linthresh=1)
    ax.set_xlabel("log10 F_ii (exact)")
    ax.set_ylabel("parameters")
    ax.set_title("the exact Fisher diagonal")
    ax.legend(frameon=False, fontsize="small")
    return ax


def unit_spread(r: Any, ax: Any) -> Any:
    """Per layer, the distribution over units of log10(largest / smallest eigenvalue) of
    the exact unit blocks."""
    _need(r, "unit/log10_cond", "unit/layer")
    layer, cond = r["unit/layer"], r["unit/log10_cond"]
    data = [cond[(layer == l) & np.isfinite(cond)] for l in _layers(r)]
    keep = [i for i, d in enumerate(data) if d.size]
    if keep:
        ax.boxplot([data[i] for i in keep], positions=[i + 1 for i in keep], widths=0.5)
    ax.set_xticks(_layers(r))
    ax.set_xlabel("layer")
    ax.set_ylabel("log10 (eig max / eig min)")
    ax.set_title("eigenvalue spread of the unit blocks")
    return ax


def spectrum(r: Any, ax: Any) -> Any:
    """The largest eigenvalues of the exact Fisher, and those of its unit-block and
    diagonal approximations."""
    _need(r, "spectrum/top")
    top = r["spectrum/top"]
    i = np.arange(1, top.size + 1)
    ax.semilogy(i, np.maximum(top, 1e-300), "o-", color="k", label="exact Fisher", markersize=4)
    if "spectrum/unit_top" in r:
        ax.semilogy(i, np.maximum(r["spectrum/unit_top"], 1e-300), "s--", color="C2", label="unit blocks",
                    markersize=3)
    if "spectrum/diag_top" in r:
        ax.semilogy(i, np.maximum(r["spectrum/diag_top"], 1e-300), "^:", color="C1", label="diagonal",
                    markersize=3)
    ax.set_xlabel("rank")
    ax.set_ylabel("eigenvalue")
    ax.set_title("top of the spectrum")
    ax.legend(frameon=False, fontsize="small")
    return ax


def estimator_sd(r: Any, ax: Any) -> Any:
    """Per layer: the mean exact F_ii, the mean standard deviation of each sampled
    estimator and its upper bound (the layout of Soen and Sun's per-layer figures)."""
    _need(r, "variance/layer_mean_fisher")
    x = _layers(r)
    ax.semilogy(x, np.maximum(r["variance/layer_mean_fisher"], 1e-300), "o-", color="k", label="Fisher F_ii")
    for e in _estimators(r):
        c = _ESTIMATOR_COLOR[e]
        sd = r[f"variance/{e}/layer_mean_sd"]
        shown = sd > 0  # the Hessian estimator is exact (sd 0) in the last layer
        ax.semilogy(x[shown], sd[shown], "s-", color=c, label=f"sd, {e}")
        up = r[f"variance/{e}/layer_mean_sd_upper"]
        ax.semilogy(x[up > 0], up[up > 0], "v--", color=c, alpha=0.6, label=f"upper bound, {e}")
    return _per_layer_axes(ax, x, "mean over the layer", "estimator noise against the Fisher")


def log_ratio(r: Any, ax: Any) -> Any:
    """Per layer, the median log(upper bound / variance) of each estimator (0: tight)."""
    _need(r, "variance/layer_mean_fisher")
    x = _layers(r)
    ests = _estimators(r)
    w = 0.8 / max(1, len(ests))
    for i, e in enumerate(ests):
        v = np.nan_to_num(r[f"variance/{e}/layer_log_ratio"], nan=0.0)
        ax.bar(x - 0.4 + w * (i + 0.5), v, width=w, color=_ESTIMATOR_COLOR[e], label=e)
    return _per_layer_axes(ax, x, "median log(bound / variance)", "how tight the bounds are")


def estimator_choice(r: Any, ax: Any) -> Any:
    """Per layer, the share of parameters where the Hessian estimator has the smaller
    variance, and the mean optimal weight of the score estimator in their mix."""
    _need(r, "variance/layer_hessian_wins", "variance/layer_mean_alpha")
    x = _layers(r)
    ax.bar(x, r["variance/layer_hessian_wins"], width=0.6, color="C3", label="Hessian estimator wins")
    ax.plot(x, r["variance/layer_mean_alpha"], "ko-", label="mean weight of score in the optimal mix")
    ax.set_ylim(0, 1.05)
    return _per_layer_axes(ax, x, "share / weight", "which estimator to sample")


def block_structure(r: Any, ax: Any) -> Any:
    """RMS of the normalised Fisher entries F_ab / sqrt(F_aa F_bb) per class of pairs."""
    _need(r, "structure/rms", "structure/classes")
    names = [str(c).replace("_", " ") for c in r["structure/classes"]]
    y = np.arange(len(names))
    ax.barh(y, np.nan_to_num(r["structure/rms"]), color=["C2"] + ["C4"] * (len(names) - 1))
    ax.set_yticks(y)
    ax.set_yticklabels(names, fontsize="small")
    ax.invert_yaxis()
    ax.set_xlabel("RMS of normalised entries")
    ax.set_title("in-block (top) against off-block entries")
    return ax


def kfac_error(r: Any, ax: Any) -> Any:
    """Per layer the exact relative Frobenius distance of KFAC and EKFAC from the layer block."""
    _need(r, "structure/layer_kfac_error", "structure/layer_ekfac_error")
    x = _layers(r)
    ax.bar(x - 0.2, np.nan_to_num(r["structure/layer_kfac_error"]), width=0.4, label="KFAC", color="C0")
    ax.bar(x + 0.2, np.nan_to_num(r["structure/layer_ekfac_error"]), width=0.4, label="EKFAC", color="C2")
    top = np.nanmax(np.concatenate([r["structure/layer_kfac_error"], [0.0]]))
    ax.set_ylim(0, 1.35 * top if np.isfinite(top) and top > 0 else 1)
    return _per_layer_axes(ax, x, "||F_l - approximation|| / ||F_l||", "Kronecker-factored approximations")


def preconditioners(r: Any, ax: Any) -> Any:
    """Cosine of each method's step with the reference step against the damping, the
    plain gradient dashed; the legend gives each method's time."""
    _need(r, "precond/methods", "precond/cosine", "precond/damping")
    lam = r["precond/damping"]
    for i, (name, cos, s) in enumerate(zip(r["precond/methods"], r["precond/cosine"], r["precond/seconds"])):
        t = f", {s * 1e3:.3g} ms" if np.isfinite(s) else ""
        ax.semilogx(lam, cos, "o-", color=f"C{i}", label=f"{name}{t}", markersize=4)
    ax.semilogx(lam, r["precond/gradient_cosine"], "k--", label="plain gradient")
    ax.set_ylim(min(0.0, float(np.nanmin(r["precond/cosine"])) - 0.05) if np.isfinite(r["precond/cosine"]).any()
                else 0.0, 1.02)
    ax.set_xlabel("damping")
    ax.set_ylabel("cosine with the reference step")
    ax.set_title("natural-gradient methods")
    ax.legend(frameon=False, fontsize="x-small")
    return ax
