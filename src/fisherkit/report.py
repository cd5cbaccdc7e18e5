"""``fisherkit.report``: a Fisher health report of an MLP on a data set.

:func:`report` computes, within a time limit, what the page ``report.html`` shows, section
by section (the exact diagonal and unit-block Fisher; the spectrum; the quality of the
sampled estimators; the unit-wise block structure; natural-gradient preconditioners
against the exact step) and returns a :class:`Report`. With ``out`` it also writes the page,
``results.npz`` (every number of the page, under the keys of ``fisherkit.report.KEYS``, also
listed at the end of the page) and ``summary.json`` (the facts around them: model, data,
settings, inputs and seconds per section, what was skipped and why).

The command ``fisherkit report MODEL DATA`` runs it on files (see ``fisherkit report -h``).
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ._data import InputError, check_inputs, check_labels
from ._report_keys import KEYS, describe
from ._report_plan import Budget, gemm_rate
from .info import blas_threads
from ._report_sections import SECTIONS, Context
from .model import MLP, check_model
from ._report_html import render
from ._loader import _core

__all__ = ["report", "Report", "KEYS", "ESTIMATORS", "FILES"]

ESTIMATORS = ("score", "hessian")
FILES = ("report.html", "results.npz", "summary.json")
MIN_SECONDS = 5.0
_PAGE_SECONDS = 3.0  # kept back from the sections for drawing and writing the page


class Report:
    """The results of :func:`report`.

    ``arrays``: name -> NumPy array, every number the page shows (``results.npz``; see
    :data:`KEYS`); ``meta``: the facts around them (``summary.json``); ``skipped``: what
    was not computed, each a dict with ``section``, ``what`` and ``reason``. ``report[key]``
    is ``report.arrays[key]``. Draw its figures with ``fisherkit.plot``.
    """

    def __init__(self, arrays: dict[str, Any], meta: dict[str, Any]) -> None:
        self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        self.meta = meta

    @property
    def skipped(self) -> list[dict[str, str]]:
        return list(self.meta.get("skipped", []))

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]

    def __contains__(self, key: object) -> bool:
        return key in self.arrays

    def keys(self) -> Iterable[str]:
        return self.arrays.keys()

    def describe(self, key: str) -> str:
        """What the array `key` holds."""
        text = describe(key)
        if text is None:
            raise KeyError(f"{key!r} is not a report key")
        return text

    def __repr__(self) -> str:
        mo = self.meta["model"]
        return (f"Report(MLP {'-'.join(map(str, mo['sizes']))}, {self.meta['data']['n_inputs']} inputs, "
                f"{len(self.arrays)} arrays, {len(self.skipped)} skipped)")

    # ------------------------------------------------------------------ text
    def summary(self) -> str:
        """A few lines: the headline of every section and what was skipped."""
        a, mo, da = self.arrays, self.meta["model"], self.meta["data"]
        lines = [f"fisherkit report: MLP {'-'.join(map(str, mo['sizes']))} ({', '.join(mo['activations']) or 'linear'}, "
                 f"{mo['head']} head, {mo['n_params']:,} parameters) on {da['n_inputs']:,} inputs"]
        if "overview/loss" in a:
            acc = f", accuracy {float(a['overview/accuracy']):.3f}" if "overview/accuracy" in a else ""
            lines.append(f"  loss {float(a['overview/loss']):.4g}{acc}")
        if "fisher/layer_share" in a:
            l = int(np.nanargmax(a["fisher/layer_share"]))
            lines.append(f"  Fisher trace {float(a['fisher/trace']):.4g}; layer {l + 1} holds "
                         f"{100 * float(a['fisher/layer_share'][l]):.0f}% of it with "
                         f"{100 * float(a['fisher/layer_param_share'][l]):.0f}% of the parameters")
        if "spectrum/top" in a:
            how = "exact" if int(a["spectrum/exact"]) else "Lanczos"
            lines.append(f"  top eigenvalue {float(a['spectrum/top'][0]):.4g}, effective dimension "
                         f"{float(a['spectrum/effective_dim']):.3g} ({how}, {int(a['spectrum/n_inputs']):,} inputs)")
        if "variance/layer_mean_fisher" in a:
            need = [f"{e} {_count(a[f'variance/{e}/samples_needed'])}" for e in ESTIMATORS
                    if f"variance/{e}/samples_needed" in a]
            wins = ""
            if "variance/layer_hessian_wins" in a:
                wins = ("; the Hessian estimator wins in layers "
                        + ", ".join(f"{l + 1} ({100 * w:.0f}%)" for l, w in enumerate(a["variance/layer_hessian_wins"])))
            lines.append(f"  draws per input for 10% error at 95%: {', '.join(need)}{wins}")
        if "structure/rms" in a:
            cls = [str(c) for c in a["structure/classes"]]
            rms = dict(zip(cls, a["structure/rms"]))
            lines.append(f"  block structure (RMS normalised entries): same unit {rms['same_unit']:.3g}, "
                         f"other units {rms['same_layer']:.3g}, other layers {rms['across_layers']:.3g}")
        if "precond/cosine" in a:
            j = a["precond/damping"].size // 2
            pairs = sorted(zip(a["precond/cosine"][:, j], a["precond/methods"]), key=lambda t: -np.nan_to_num(t[0]))
            lines.append(f"  cosine with the {'exact natural gradient' if int(a['precond/reference_exact']) else 'exact unit-block step'}"
                         f" (damping {float(a['precond/damping'][j]):.2g}): "
                         + ", ".join(f"{m} {c:.3f}" for c, m in pairs)
                         + f", plain gradient {float(a['precond/gradient_cosine'][j]):.3f}")
        for s in self.skipped:
            lines.append(f"  skipped {s['what']} ({s['section']}): {s['reason']}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ files
    def to_html(self) -> str:
        """The self-contained page (needs matplotlib for the figures)."""
        _need_matplotlib()

        return render(self)

    def save(self, out: str | os.PathLike[str]) -> Path:
        """Write report.html, results.npz and summary.json into the folder `out` (created;
        a previous report there is replaced). The files are written into a temporary
        folder beside it and moved in at the end, so an error or Ctrl-C leaves no partial
        folder. Returns the path of report.html."""
        out = _check_out(out)
        page = self.to_html()
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        old = None
        try:
            umask = os.umask(0)
            os.umask(umask)
            tmp.chmod(0o777 & ~umask)  # mkdtemp's folder is private; the report is an ordinary folder
            (tmp / "report.html").write_text(page, encoding="utf-8")
            np.savez(tmp / "results.npz", **self.arrays)
            (tmp / "summary.json").write_text(json.dumps(_jsonable(self._summary_json()), indent=2) + "\n",
                                             encoding="utf-8")
            if out.exists():
                old = out.parent / f"{tmp.name}.old"
                out.rename(old)
            tmp.rename(out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if old is not None and not out.exists():
                old.rename(out)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return out / "report.html"

    def _summary_json(self) -> dict[str, Any]:
        headline = {k: self.arrays[k].item() for k in sorted(self.arrays) if self.arrays[k].ndim == 0}
        return {**self.meta, "files": list(FILES), "headline": headline}

    @classmethod
    def load(cls, out: str | os.PathLike[str]) -> "Report":
        """The report written into the folder `out` (its results.npz and summary.json)."""
        out = Path(out)
        with np.load(out / "results.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        meta.pop("files", None)
        meta.pop("headline", None)
        return cls(arrays, meta)


def _count(v: Any) -> str:
    v = float(v)
    return "unreachable (F_ii = 0 with a positive variance)" if not np.isfinite(v) else f"{int(v):,}"


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return str(obj)  # JSON has no NaN or Infinity
    return obj


def _need_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError('the report draws its figures with matplotlib: pip install "fisherkit[report]"') from None


def _check_out(out: str | os.PathLike[str]) -> Path:
    """The output folder, which must be new, empty or hold a previous report only."""
    p = Path(out).resolve()
    if p.exists():
        if not p.is_dir():
            raise InputError(f"--out {out}: it exists and is not a folder")
        foreign = sorted(x.name for x in p.iterdir() if x.name not in FILES)
        if foreign:
            raise InputError(f"--out {out}: the folder holds files other than a fisherkit report "
                             f"({', '.join(foreign[:5])}); choose a new or empty folder")
    if not p.parent.is_dir():
        raise InputError(f"--out {out}: its parent folder {p.parent} does not exist")
    if not os.access(p.parent, os.W_OK):
        raise InputError(f"--out {out}: cannot write into {p.parent}")
    return p


def _progress(total: int, quiet: bool) -> Any:
    """A tqdm bar on standard error when it is a terminal and tqdm is installed, else None."""
    if quiet or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc="fisherkit report", unit="section", file=sys.stderr, leave=False)


def report(
    model: MLP,
    X: Any,
    y: Any = None,
    *,
    out: str | os.PathLike[str] | None = None,
    estimators: Iterable[str] = ESTIMATORS,
    samples: int = 1,
    max_seconds: float = 300.0,
    seed: int = 0,
    quiet: bool = False,
    source: str | None = None,
) -> Report:
    """A Fisher health report of ``model`` on the inputs ``X`` (and labels ``y``).

    Parameters
    ----------
    model : MLP (NumPy arrays)
    X : array (N, n_0)
        Inputs. Anything with ``shape`` and row indexing works, e.g. a memory-mapped
        ``.npy`` array: it is read a chunk of rows at a time, never converted whole.
    y : array, optional
        Labels (in the head's layout). They give the loss, the accuracy and the gradient
        that section 5 preconditions; without them that gradient uses labels drawn from
        the model.
    out : folder, optional
        Where to write report.html, results.npz and summary.json (see :meth:`Report.save`).
    estimators : subset of ("score", "hessian")
        The sampled estimators whose quality section 3 measures.
    samples : int
        Label draws per input that the standard deviations of section 3 are for.
    max_seconds : float
        Time limit for the whole report (at least 5 s). Each section gets a share, picks
        how many inputs it can afford from a timed pilot, and is skipped (with the reason
        on the page) when even a few inputs would not fit.
    seed : int
        Seed of the random input subsets, the label draws and the Lanczos start.
    quiet : bool
        No progress bar (it is shown on standard error only when that is a terminal).
    source : str, optional
        Where the data came from, for the page.

    Raises ValueError (``fisherkit._data.InputError``) naming the argument for inputs of
    the wrong width, non-finite inputs, labels outside the head's support, unknown
    estimators and a bad ``out`` folder, before computing anything. Ctrl-C stops it: the
    KeyboardInterrupt propagates and nothing is written.
    """
    model = check_model(model)
    if model.xp is not np:
        raise TypeError("the report runs on NumPy models: pass model.to('cpu')")
    est = tuple(estimators)
    bad = [e for e in est if e not in ESTIMATORS]
    if bad or not est:
        raise InputError(f"argument 'estimators': expected one or both of {', '.join(ESTIMATORS)}, got "
                         f"{', '.join(map(repr, est)) or 'none'} (the exact Fisher has no variance; the empirical "
                         "Fisher's depends on the data distribution)")
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise InputError(f"argument 'samples' must be a positive integer, got {samples!r}")
    max_seconds = float(max_seconds)
    if not max_seconds >= MIN_SECONDS:
        raise InputError(f"argument 'max_seconds' must be at least {MIN_SECONDS:g} s, got {max_seconds:g}")
    if out is not None:
        _check_out(out)
        _need_matplotlib()
    budget = Budget(max_seconds, reserve=_PAGE_SECONDS if out is not None else 0.5)
    X = X if hasattr(X, "shape") else np.asarray(X)  # lists and the like; arrays and memory maps pass as they are
    y = y if y is None or hasattr(y, "shape") else np.asarray(y)
    check_inputs(model, X, "argument 'X'" if source is None else f"the data ({source})")
    n = int(X.shape[0])
    if y is not None:
        check_labels(model, y, n, "argument 'y'" if source is None else f"the labels of the data ({source})")
    with blas_threads():  # the rate NumPy's BLAS reaches with the thread count the sections use
        rate = gemm_rate()
    ctx = Context(model, X, y, tuple(e for e in ESTIMATORS if e in est), int(samples), int(seed), rate)
    ctx.arrays["model/sizes"] = np.array(model.sizes)
    ctx.arrays["model/layer_params"] = np.array([model.layout.layer_params(l) for l in range(model.n_layers)])
    ctx.arrays["data/n_inputs"] = np.array(n)
    with blas_threads():
        _run_sections(ctx, budget, quiet)
    meta = {
        "fisherkit": _version(),
        "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "model": {"sizes": model.sizes, "activations": model.activations, "head": model.head,
                  "sigma": model.sigma, "dtype": model.dtype.name, "n_params": model.n_params},
        "data": {"source": source or "array", "n_inputs": n, "n_features": int(X.shape[1]),
                 "labels": "given" if y is not None else None},
        "settings": {"estimators": list(ctx.estimators), "samples": int(samples), "max_seconds": max_seconds,
                     "seed": int(seed), "gemm_gflops": round(ctx.rate / 1e9, 2)},
        "sections": ctx.sections,
        "skipped": ctx.skipped,
        "seconds": budget.elapsed(),
    }
    rep = Report(ctx.arrays, meta)
    if out is not None:
        rep.save(out)
    return rep


def _run_sections(ctx: Context, budget: Budget, quiet: bool) -> None:
    """Every section in order, each with its share of the time left, under a progress bar."""
    bar = _progress(len(SECTIONS), quiet)
    try:
        weights = [w for _, _, w in SECTIONS]
        for i, (name, run, w) in enumerate(SECTIONS):
            if bar is not None:
                bar.set_postfix_str(name)
            seconds = budget.share(w, sum(weights[i + 1:]))
            t0 = budget.elapsed()
            if seconds <= 0:
                ctx.skip(name, "the whole section", "the time limit was reached before it started")
            else:
                run(ctx, seconds)
            ctx.note(name, seconds=budget.elapsed() - t0)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()


def _version() -> str:

    return str(_core.version())
