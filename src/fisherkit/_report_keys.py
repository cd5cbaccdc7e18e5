"""The keys of a report's ``results.npz``: every number on the page is one of these arrays
(or an entry of one). ``{e}`` stands for an estimator (score, hessian); L is the number of
layers, P of parameters, U of hidden and output units, k of eigenvalues reported. Indices
of per-layer arrays are layers 1..L in order."""
from __future__ import annotations

import re

KEYS: dict[str, str] = {
    # -------------------------------------------------------------- overview
    "model/sizes": "(L+1,) layer widths n_0, ..., n_L",
    "model/layer_params": "(L,) parameters per layer (weights and biases)",
    "data/n_inputs": "() rows of the data set",
    "overview/n_inputs": "() inputs over which loss and accuracy were computed",
    "overview/loss": "() mean negative log-likelihood of the labels (when labels are given)",
    "overview/accuracy": "() share of inputs whose most probable class is the label (categorical head)",
    # -------------------------------------------------------------- section 1
    "fisher/n_inputs": "() inputs over which the exact diagonal was computed",
    "fisher/diag": "(P,) exact Fisher diagonal F_ii, flat parameter order (per layer W row-major, then b)",
    "fisher/trace": "() trace of the exact Fisher (sum of fisher/diag)",
    "fisher/layer_trace": "(L,) sum of F_ii over each layer's parameters",
    "fisher/layer_share": "(L,) fisher/layer_trace / fisher/trace",
    "fisher/layer_param_share": "(L,) model/layer_params / P",
    "fisher/layer_mean": "(L,) mean of F_ii over each layer's parameters",
    "fisher/layer_zero": "(L,) parameters with F_ii = 0 exactly (left out of the histogram)",
    "fisher/hist_edges": "(B+1,) log10 bin edges of the diagonal's histogram",
    "fisher/hist_counts": "(L, B) counts of log10 F_ii per bin, per layer",
    "unit/n_inputs": "() inputs over which the exact unit blocks were computed",
    "unit/layer": "(U,) layer (1..L) of each unit block",
    "unit/eig_max": "(U,) largest eigenvalue of each unit block",
    "unit/eig_min": "(U,) smallest eigenvalue of each unit block",
    "unit/trace": "(U,) trace of each unit block",
    "unit/log10_cond": "(U,) log10(eig_max / max(eig_min, 1e-12 eig_max)): the block's eigenvalue spread",
    "unit/top_share": "(U,) eig_max / trace: 1 when a block is rank one",
    "unit/layer_median_log10_cond": "(L,) median of unit/log10_cond per layer",
    "unit/layer_mean_top_share": "(L,) mean of unit/top_share per layer",
    "unit/eigenvalues": "(P,) all unit-block eigenvalues, largest first (the spectrum of the unit-block approximation)",
    # -------------------------------------------------------------- section 2
    "spectrum/n_inputs": "() inputs over which the spectrum was computed",
    "spectrum/exact": "() 1 when every eigenvalue was computed from the dense Fisher, 0 for Lanczos on products",
    "spectrum/top": "(k,) largest eigenvalues of the exact Fisher, largest first",
    "spectrum/eigenvalues": "(P,) every eigenvalue, largest first (dense computation only)",
    "spectrum/trace": "() trace of the Fisher over the spectrum's inputs",
    "spectrum/top_share": "() sum of spectrum/top / spectrum/trace",
    "spectrum/frob2": "() tr(F^2), the sum of squared eigenvalues (exact, or estimated)",
    "spectrum/frob2_se": "() standard error of spectrum/frob2 (0 when exact)",
    "spectrum/probes": "() random probes of the deflated Hutchinson estimate of tr(F^2) (0 when exact)",
    "spectrum/effective_dim": "() (tr F)^2 / tr(F^2): how many directions carry the Fisher mass",
    "spectrum/effective_dim_se": "() standard error of spectrum/effective_dim (0 when exact)",
    "spectrum/matvecs": "() Fisher-vector products used (0 for the dense computation)",
    "spectrum/unit_top": "(k,) largest eigenvalues of the unit-block approximation (from unit/eigenvalues)",
    "spectrum/diag_top": "(k,) largest diagonal entries (the eigenvalues of the diagonal approximation)",
    # -------------------------------------------------------------- section 3
    "variance/n_inputs": "() inputs over which the estimator variances were computed (fixed inputs)",
    "variance/samples": "() label draws per input S that the standard deviations are for",
    "variance/layer_mean_fisher": "(L,) mean exact F_ii per layer over these inputs",
    "variance/{e}/sd": "(P,) standard deviation of each diagonal entry of the estimate with S draws per input",
    "variance/{e}/layer_mean_sd": "(L,) mean of variance/{e}/sd per layer",
    "variance/{e}/layer_mean_sd_upper": "(L,) mean square root of the per-parameter upper variance bound",
    "variance/{e}/layer_mean_sd_lower": "(L,) mean square root of the per-parameter lower variance bound",
    "variance/{e}/layer_log_ratio": "(L,) median log(upper bound / variance) over parameters with variance > 0 "
                                    "(NaN where every variance is 0)",
    "variance/{e}/layer_rel_error": "(L,) median sd / F_ii over parameters with F_ii > 0",
    "variance/{e}/layer_samples_needed": "(L,) draws per input for every F_ii of the layer within 10% at 95% "
                                         "(Chebyshev; inf where F_ii = 0 < variance)",
    "variance/{e}/samples_needed": "() the maximum of variance/{e}/layer_samples_needed",
    "variance/layer_hessian_wins": "(L,) share of parameters where the Hessian estimator's variance is not larger "
                                  "(ties, e.g. both 0, count for it, as in fisherkit.recommend)",
    "variance/layer_mean_alpha": "(L,) mean optimal weight alpha* of the score estimator in the unbiased mix",
    "variance/layer_mean_sd_mix": "(L,) mean standard deviation of the optimal mix",
    # -------------------------------------------------------------- section 4
    "structure/n_inputs": "() inputs over which the block structure was measured",
    "structure/sampled": "() 1 when pairs of parameters were sampled (no masses), 0 when every pair was used",
    "structure/pairs": "() sampled pairs per class (0 when every pair was used)",
    "structure/classes": "(6,) names of the pair classes, in the order of the next three arrays",
    "structure/rms": "(6,) RMS of the normalised entries F_ab / sqrt(F_aa F_bb) per class",
    "structure/ratio": "(6,) mass sum F_ab^2 of the class / in-block mass (NaN when sampled)",
    "structure/counts": "(6,) pairs per class (sampled pairs when sampled)",
    "structure/layer_same_layer_ratio": "(L,) per layer: mass between different units of the layer / "
                                        "the layer's in-block mass",
    "structure/layer_across_ratio": "(L,) per layer: mass between the layer and the other layers / "
                                    "the layer's in-block mass",
    "structure/layer_kfac_error": "(L,) per layer: ||F_l - G_l (x) A_l||_F / ||F_l||_F, the exact relative distance "
                                  "of KFAC from the exact layer block (fisherkit.kfac_error; NaN where F_l = 0)",
    "structure/layer_ekfac_error": "(L,) per layer: the same for EKFAC (never larger than the KFAC distance)",
    # -------------------------------------------------------------- section 5
    "precond/n_inputs": "() inputs of the gradient and of every method's curvature",
    "precond/damping": "(D,) dampings added to every method's matrix (1e-3, 1e-2, 0.1 and 1 x mean F_ii)",
    "precond/methods": "(M,) natural-gradient methods compared",
    "precond/cosine": "(M, D) cosine between each method's step and the reference step, per damping",
    "precond/seconds": "(M,) seconds each method took: its curvature statistics plus the mean solve",
    "precond/gradient_cosine": "(D,) cosine between the plain gradient and the reference step, per damping",
    "precond/reference_seconds": "() seconds the reference took (statistics plus the mean solve)",
    "precond/reference_exact": "() 1 when the reference is the dense natural gradient, 0 for exact unit blocks",
}

_PATTERNS = [(re.compile("^" + re.escape(k).replace(re.escape("{e}"), "(score|hessian)") + "$"), v)
             for k, v in KEYS.items()]


def describe(key: str) -> str | None:
    """The documentation of a results.npz key, or None for an unknown key."""
    for pattern, text in _PATTERNS:
        m = pattern.match(key)
        if m:
            return text.replace("{e}", m.group(1)) if m.groups() else text
    return None
