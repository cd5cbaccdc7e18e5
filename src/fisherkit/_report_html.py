"""The page of ``fisherkit report``: one self-contained HTML file (inline style, figures as
base64 PNG, no scripts) drawn from a report's arrays and facts only, so that the page of a
``Report.load``-ed result is the page that was written.

Every number in a table or headline is an element carrying ``data-key`` (and
``data-index`` for an entry of an array) naming where it sits in results.npz; its text is
:func:`fmt_value` of that value.
"""
from __future__ import annotations

import base64
import html
import io
from typing import Any, Callable, Sequence

import numpy as np

from . import plot as _plot
from ._report_keys import describe
from ._report_sections import DAMPINGS

GUIDES = {
    "fisher": "Where the Fisher mass sits: layers with a large share of the trace dominate natural-gradient "
              "steps, and a unit block with a large eigenvalue spread is stiff in a few directions and flat in "
              "the others.",
    "spectrum": "How many directions matter: a fast decay and a small effective dimension mean the model's "
                "predictions are sensitive to few parameter directions; the gap to the unit-block and diagonal "
                "curves is what those approximations miss.",
    "estimators": "How noisy a sampled Fisher is: where the standard deviation exceeds F_ii one draw per input "
                  "says little, the draws needed column says how many give 10% error; the bounds are cheap, "
                  "log(bound / variance) says how loose they are.",
    "structure": "How unit-wise block diagonal the Fisher is: small off-block entries and mass ratios justify "
                 "unit-wise natural gradients (Amari, Karakida and Oizumi); large ones mean the blocks miss "
                 "coupling between units or layers.",
    "preconditioners": "How close each cheap natural gradient comes to the exact one: a cosine near 1 is the "
                       "exact direction; compare it with the plain gradient's cosine and with each method's "
                       "time.",
}

TITLES = {
    "fisher": "1. The exact diagonal and unit-block Fisher",
    "spectrum": "2. The spectrum",
    "estimators": "3. Estimator quality",
    "structure": "4. Structure",
    "preconditioners": "5. Preconditioners",
}

FIGURES: dict[str, Sequence[Callable[[Any, Any], Any]]] = {
    "fisher": (_plot.layer_mass, _plot.diagonal_histogram, _plot.unit_spread),
    "spectrum": (_plot.spectrum,),
    "estimators": (_plot.estimator_sd, _plot.log_ratio, _plot.estimator_choice),
    "structure": (_plot.block_structure, _plot.kfac_error),
    "preconditioners": (_plot.preconditioners,),
}

_STYLE = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0 auto;max-width:1200px;
padding:1.2em 2em;color:#1d1d1f;background:#fff;line-height:1.4}
h1{font-size:1.7em;margin:0.2em 0}h2{font-size:1.25em;border-bottom:2px solid #ddd;padding-bottom:0.2em;
margin-top:1.6em}p.sub{color:#555;margin-top:0}p.guide{background:#eef5ff;border-left:4px solid #3b7dd8;
padding:0.4em 0.8em}p.note{color:#555;font-size:0.9em}div.figs{display:flex;flex-wrap:wrap;gap:0.6em}
figure{margin:0}figcaption{font-size:0.85em;color:#555;max-width:378px}table{border-collapse:collapse;
margin:0.6em 0;font-size:0.9em}th,td{border:1px solid #ddd;padding:0.25em 0.6em;text-align:left}
th{background:#f4f4f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
div.skipped{background:#fff6e5;border-left:4px solid #e0a000;padding:0.4em 0.8em}
code{background:#f4f4f6;padding:0 0.2em}footer{margin-top:2em;color:#777;font-size:0.85em}
"""


def fmt_value(v: Any) -> str:
    """How a number is written on the page."""
    if isinstance(v, (str, np.str_)):
        return str(v)
    v = np.asarray(v).item()
    if isinstance(v, (bool, np.bool_)):
        return str(int(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if v != v:
        return "n/a"
    if v in (float("inf"), float("-inf")):
        return "inf" if v > 0 else "-inf"
    if float(v).is_integer() and abs(v) < 1e9:
        return str(int(v))
    return f"{v:.4g}"


def _num(arrays: dict[str, Any], key: str, index: int | None = None, tag: str = "td") -> str:
    v = arrays[key] if index is None else arrays[key][index]
    idx = "" if index is None else f' data-index="{index}"'
    cls = ' class="num"' if tag == "td" else ""
    return f'<{tag}{cls} data-key="{html.escape(key)}"{idx}>{html.escape(fmt_value(v))}</{tag}>'


def _esc(s: Any) -> str:
    return html.escape(str(s))


def _table(head: Sequence[str] | None, rows: Sequence[Sequence[str]]) -> str:
    body = "".join("<tr>" + "".join(r) + "</tr>" for r in rows)
    if head is None:
        return f"<table><tbody>{body}</tbody></table>"
    th = "".join(f"<th>{_esc(h)}</th>" for h in head)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _td(text: Any) -> str:
    return f"<td>{_esc(text)}</td>"


def figure_png(fn: Callable[[Any, Any], Any], results: Any) -> bytes:
    """One figure drawn by `fn` on a fresh matplotlib Figure (no pyplot state), as PNG."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2, 3.1), dpi=90, layout="constrained")
    fn(results, fig.add_subplot())
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _figures(section: str, results: Any) -> str:
    out = []
    for fn in FIGURES[section]:
        try:
            png = figure_png(fn, results)
        except ValueError:  # its numbers were skipped; the skip list says why
            continue
        doc = (fn.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        b64 = base64.b64encode(png).decode("ascii")
        out.append(f'<figure><img alt="{_esc(doc)}" src="data:image/png;base64,{b64}">'
                   f"<figcaption>{_esc(doc)}</figcaption></figure>")
    return f'<div class="figs">{"".join(out)}</div>' if out else ""


def _inputs_note(meta: dict[str, Any], name: str) -> str:
    info = meta.get("sections", {}).get(name)
    if not info:
        return ""
    n, of = info.get("n_inputs"), info.get("of")
    what = "Unit blocks computed" if name == "unit" else "Computed"
    if n is None:
        text = "Nothing computed"
    elif n != of:
        text = f"{what} over {n:,} of the {of:,} inputs (a random subset: the time limit or the section's cap)"
    else:
        text = f"{what} over all {of:,} inputs"
    extra = [f"{k}: {v}" for k, v in info.items() if k not in ("n_inputs", "of", "seconds")]
    if "seconds" in info:
        extra.append(f"{info['seconds']:.2f} s")
    return f'<p class="note">{_esc(text)}{"; " if extra else ""}{_esc("; ".join(extra))}.</p>'


def _skipped(meta: dict[str, Any], section: str | None) -> str:
    items = [s for s in meta.get("skipped", []) if section is None or s["section"] == section]
    if not items:
        return ""
    lis = "".join(f"<li><b>{_esc(s['what'])}</b>"
                  f"{' (' + _esc(TITLES.get(s['section'], s['section'])) + ')' if section is None else ''}"
                  f": {_esc(s['reason'])}</li>" for s in items)
    return f'<div class="skipped"><b>Skipped</b><ul>{lis}</ul></div>'


# ----------------------------------------------------------------------------- tables per section
def _fisher_tables(a: dict[str, Any]) -> str:
    if "fisher/layer_mean" not in a:
        return ""
    head = ["layer", "parameters", "mean F_ii", "share of trace", "share of parameters", "F_ii = 0"]
    unit = "unit/layer_median_log10_cond" in a
    if unit:
        head += ["median log10 spread of unit blocks", "mean top-eigenvalue share"]
    rows = []
    for l in range(len(a["fisher/layer_mean"])):
        r = [_td(l + 1), _num(a, "model/layer_params", l), _num(a, "fisher/layer_mean", l),
             _num(a, "fisher/layer_share", l), _num(a, "fisher/layer_param_share", l), _num(a, "fisher/layer_zero", l)]
        if unit:
            r += [_num(a, "unit/layer_median_log10_cond", l), _num(a, "unit/layer_mean_top_share", l)]
        rows.append(r)
    return (f'<p>Trace of the exact Fisher: {_num(a, "fisher/trace", tag="span")}.</p>'
            + _table(head, rows))


def _spectrum_tables(a: dict[str, Any]) -> str:
    if "spectrum/top" not in a:
        return ""
    facts = [[_td("trace"), _num(a, "spectrum/trace")],
             [_td("largest eigenvalue"), _num(a, "spectrum/top", 0)],
             [_td(f"share of the trace in the top {len(a['spectrum/top'])}"), _num(a, "spectrum/top_share")],
             [_td("tr(F^2)"), _num(a, "spectrum/frob2")],
             [_td("effective dimension (tr F)^2 / tr(F^2)"), _num(a, "spectrum/effective_dim")]]
    if int(a["spectrum/exact"]) == 0:
        facts += [[_td("standard error of the effective dimension"), _num(a, "spectrum/effective_dim_se")],
                  [_td("Hutchinson probes"), _num(a, "spectrum/probes")],
                  [_td("Fisher-vector products"), _num(a, "spectrum/matvecs")]]
    k = min(10, len(a["spectrum/top"]))
    head = ["rank", "exact"] + (["unit blocks"] if "spectrum/unit_top" in a else []) + \
           (["diagonal"] if "spectrum/diag_top" in a else [])
    rows = []
    for i in range(k):
        r = [_td(i + 1), _num(a, "spectrum/top", i)]
        if "spectrum/unit_top" in a:
            r.append(_num(a, "spectrum/unit_top", i))
        if "spectrum/diag_top" in a:
            r.append(_num(a, "spectrum/diag_top", i))
        rows.append(r)
    return _table(["quantity", "value"], facts) + _table(head, rows)


def _estimator_tables(a: dict[str, Any]) -> str:
    if "variance/layer_mean_fisher" not in a:
        return ""
    ests = [e for e in ("score", "hessian") if f"variance/{e}/layer_mean_sd" in a]
    L = len(a["variance/layer_mean_fisher"])
    head = ["layer", "mean F_ii"]
    for e in ests:
        head += [f"mean sd ({e})", f"sd lower bound ({e})", f"sd upper bound ({e})", f"log(bound/var) ({e})"]
    rows = []
    for l in range(L):
        r = [_td(l + 1), _num(a, "variance/layer_mean_fisher", l)]
        for e in ests:
            r += [_num(a, f"variance/{e}/layer_mean_sd", l), _num(a, f"variance/{e}/layer_mean_sd_lower", l),
                  _num(a, f"variance/{e}/layer_mean_sd_upper", l), _num(a, f"variance/{e}/layer_log_ratio", l)]
        rows.append(r)
    out = _table(head, rows)
    head = ["layer"]
    for e in ests:
        head += [f"median sd / F ({e})", f"draws for 10% at 95% ({e})"]
    mix = "variance/layer_hessian_wins" in a
    if mix:
        head += ["Hessian estimator wins", "mean alpha* (score weight)", "mean sd of the mix"]
    rows = []
    for l in range(L):
        r = [_td(l + 1)]
        for e in ests:
            r += [_num(a, f"variance/{e}/layer_rel_error", l), _num(a, f"variance/{e}/layer_samples_needed", l)]
        if mix:
            r += [_num(a, "variance/layer_hessian_wins", l), _num(a, "variance/layer_mean_alpha", l),
                  _num(a, "variance/layer_mean_sd_mix", l)]
        rows.append(r)
    r = [_td("all")]
    for e in ests:
        r += [_td(""), _num(a, f"variance/{e}/samples_needed")]
    rows.append(r + ([_td(""), _td(""), _td("")] if mix else []))
    return out + _table(head, rows)


def _structure_tables(a: dict[str, Any]) -> str:
    if "structure/rms" not in a:
        return ""
    sampled = int(a["structure/sampled"]) == 1
    head = ["class of pairs", "sampled pairs" if sampled else "pairs", "RMS of F_ab / sqrt(F_aa F_bb)"]
    if not sampled:
        head.append("mass / in-block mass")
    rows = []
    for i, c in enumerate(a["structure/classes"]):
        r = [_td(str(c).replace("_", " ")), _num(a, "structure/counts", i), _num(a, "structure/rms", i)]
        if not sampled:
            r.append(_num(a, "structure/ratio", i))
        rows.append(r)
    out = _table(head, rows)
    masses = "structure/layer_same_layer_ratio" in a
    kfac = "structure/layer_kfac_error" in a
    if masses or kfac:  # per layer: the masses (dense Fisher only) and the KFAC distances (always)
        L = len(a["structure/layer_kfac_error" if kfac else "structure/layer_same_layer_ratio"])
        head = ["layer"]
        if masses:
            head += ["other units of the layer / in-block", "other layers / in-block"]
        if kfac:
            head += ["KFAC distance ||F_l - G (x) A|| / ||F_l||", "EKFAC distance"]
        rows = []
        for l in range(L):
            r = [_td(l + 1)]
            if masses:
                r += [_num(a, "structure/layer_same_layer_ratio", l), _num(a, "structure/layer_across_ratio", l)]
            if kfac:
                r += [_num(a, "structure/layer_kfac_error", l), _num(a, "structure/layer_ekfac_error", l)]
            rows.append(r)
        out += _table(head, rows)
    return out


def _preconditioner_tables(a: dict[str, Any]) -> str:
    if "precond/cosine" not in a:
        return ""
    D = len(a["precond/damping"])
    head = ["method"] + [f"cosine, damping {r:g} x mean F_ii" for r in DAMPINGS[:D]] + ["seconds"]
    rows = [[_td(str(mth))] + [_num2(a, "precond/cosine", i, j) for j in range(D)] + [_num(a, "precond/seconds", i)]
            for i, mth in enumerate(a["precond/methods"])]
    rows.append([_td("plain gradient")] + [_num(a, "precond/gradient_cosine", j) for j in range(D)] + [_td("")])
    rows.append([_td("reference step")] + [_td("(reference)")] * D + [_num(a, "precond/reference_seconds")])
    lams = ", ".join(_num(a, "precond/damping", j, tag="span") for j in range(D))
    return (_table(head, rows)
            + f'<p class="note">The dampings ({lams}) are added to every method\'s matrix and to the '
              "reference's.</p>")


def _num2(a: dict[str, Any], key: str, i: int, j: int) -> str:
    """An entry of a 2-D array; data-index is the flat (row-major) index."""
    v = a[key][i, j]
    flat = i * a[key].shape[1] + j
    return f'<td class="num" data-key="{html.escape(key)}" data-index="{flat}">{html.escape(fmt_value(v))}</td>'


_TABLES = {"fisher": _fisher_tables, "spectrum": _spectrum_tables, "estimators": _estimator_tables,
           "structure": _structure_tables, "preconditioners": _preconditioner_tables}


def _overview(a: dict[str, Any], meta: dict[str, Any]) -> str:
    mo, da, se = meta["model"], meta["data"], meta["settings"]
    rows = [[_td("model"), _td(f"MLP {'-'.join(map(str, mo['sizes']))}, activations {', '.join(mo['activations']) or '-'}, "
                               f"{mo['head']} head, {mo['dtype']}")],
            [_td("parameters"), _td(f"{mo['n_params']:,}")],
            [_td("data"), _td(f"{da.get('source', 'array')}: {da['n_inputs']:,} inputs of {da['n_features']} features, "
                              f"{'labels ' + str(da['labels']) if da.get('labels') else 'no labels'}")]]
    if "overview/loss" in a:
        rows.append([_td("mean negative log-likelihood"), _num(a, "overview/loss")])
    if "overview/accuracy" in a:
        rows.append([_td("accuracy"), _num(a, "overview/accuracy")])
    rows.append([_td("settings"), _td(f"estimators {', '.join(se['estimators'])}; {se['samples']} label draw(s) per "
                                      f"input; time limit {se['max_seconds']:g} s; seed {se['seed']}")])
    return _table(None, rows)


def _keys_table(a: dict[str, Any]) -> str:
    rows = [[f"<td><code>{_esc(k)}</code></td>", _td(describe(k) or "")] for k in sorted(a)]
    return _table(["key", "shape and meaning"], rows)


def render(results: Any) -> str:
    """The page of a report (its ``arrays`` and ``meta``)."""
    a, meta = results.arrays, results.meta
    mo = meta["model"]
    title = f"fisherkit report: MLP {'-'.join(map(str, mo['sizes']))}"
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)}</title>", f"<style>{_STYLE}</style>", "</head>", "<body>",
        "<header><h1>Fisher information report</h1>",
        f'<p class="sub">{_esc(title)} &middot; {meta["data"]["n_inputs"]:,} inputs &middot; fisherkit '
        f'{_esc(meta["fisherkit"])}</p></header>',
        '<section id="overview"><h2>The model and the data</h2>', _overview(a, meta), _skipped(meta, None),
        "</section>",
    ]
    for name in TITLES:
        parts += [f'<section id="{name}"><h2>{_esc(TITLES[name])}</h2>',
                  f'<p class="guide"><b>Reading guide.</b> {_esc(GUIDES[name])}</p>',
                  _inputs_note(meta, name), _inputs_note(meta, "unit") if name == "fisher" else "",
                  _skipped(meta, name), _figures(name, results), _TABLES[name](a),
                  "</section>"]
    parts += ['<section id="keys"><h2>What results.npz holds</h2>',
              "<p>Every number above, under these keys; summary.json holds the facts around them.</p>",
              _keys_table(a), "</section>",
              f"<footer>Written by fisherkit {_esc(meta['fisherkit'])} on {_esc(meta['created'])}; "
              f"computed in {meta['seconds']:.1f} s.</footer>", "</body>", "</html>"]
    return "\n".join(p for p in parts if p) + "\n"
