"""Reading the user's files for ``fisherkit report``: a model (fisherkit ``.npz`` or a PyTorch
file) and a data set (``.npy``, ``.npz`` or ``.csv``), with checks that name the file and say
what was expected.

Data sets larger than memory stay on disk: a ``.npy`` file is memory-mapped and every pass
reads it a chunk of rows at a time (:class:`ColumnView` selects feature or label columns of
such an array without copying it). ``.npz`` members and ``.csv`` files are read whole.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .model import ACTIVATIONS, MLP

__all__ = ["InputError", "ColumnView", "load_model", "load_data", "check_inputs", "check_labels",
           "row_chunks"]

_FEATURE_KEYS = ("X", "x", "inputs", "features", "data")
_LABEL_KEYS = ("y", "labels", "label", "target", "targets")
_CHUNK_BYTES = 32 << 20


class InputError(ValueError):
    """A model or data argument that cannot be used; the message names it and says what was
    expected."""


# ----------------------------------------------------------------------------- column views
class ColumnView:
    """Rows of some columns of a 2-D array (for instance a memory-mapped ``.npy``), read on
    demand: indexing with a row slice or an integer array returns an ndarray of those rows
    and the selected columns; nothing else is read."""

    def __init__(self, base: Any, columns: Sequence[int]) -> None:
        self.base = base
        self.columns = np.asarray(columns, dtype=np.intp)
        # a contiguous run of columns is read as a slice (a view of each row block)
        c = self.columns
        self._slice = (slice(int(c[0]), int(c[-1]) + 1)
                       if c.size and np.array_equal(c, np.arange(c[0], c[0] + c.size)) else None)

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.base.shape[0]), int(self.columns.size))

    @property
    def dtype(self) -> np.dtype:
        return self.base.dtype

    @property
    def ndim(self) -> int:
        return 2

    def __len__(self) -> int:
        return int(self.base.shape[0])

    def __getitem__(self, rows: Any) -> np.ndarray:
        block = np.asarray(self.base[rows])
        return block[:, self._slice] if self._slice is not None else block[:, self.columns]


def row_chunks(n: int, row_bytes: int, budget: int = _CHUNK_BYTES) -> Iterator[slice]:
    """Slices of at most ``budget`` bytes of rows covering range(n)."""
    step = max(1, budget // max(1, row_bytes))
    for lo in range(0, n, step):
        yield slice(lo, min(n, lo + step))


# ----------------------------------------------------------------------------- the model
def load_model(path: str | os.PathLike[str], *, arch: Sequence[int] | None = None,
               activation: str | None = None, head: str | None = None) -> MLP:
    """An MLP from ``path``: a fisherkit ``.npz`` (``MLP.to_npz``) or, when PyTorch is
    installed, a ``torch.save`` file of an ``nn.Sequential`` MLP (``head`` default
    categorical) or of its ``state_dict`` (then ``arch``, ``activation`` and ``head`` say
    what it is). Raises :class:`InputError` naming the file for anything else."""
    p = Path(path)
    what = f"MODEL '{p}'"
    _check_file(p, what)
    if p.suffix == ".npz":
        if arch is not None or activation is not None:
            raise InputError(f"--arch and --activation describe a PyTorch state_dict; {what} is a fisherkit "
                             "model file, which records its own architecture")
        return _load_npz_model(p, what, head)
    return _load_torch_model(p, what, arch, activation, head)


def _load_npz_model(p: Path, what: str, head: str | None) -> MLP:
    try:
        z = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{what} is not a readable .npz file ({exc})") from None
    with z:
        if "n_layers" not in z.files:
            raise InputError(f"{what} is not a fisherkit model file (written by MLP.to_npz): it holds "
                             f"{', '.join(z.files) or 'nothing'}; expected n_layers, W0, b0, ..., activations, head")
    try:
        model = MLP.from_npz(p)
    except (KeyError, ValueError, TypeError) as exc:
        raise InputError(f"{what} is not a valid fisherkit model: {exc}") from None
    if head is not None and head != model.head:
        raise InputError(f"--head {head} does not match {what}, whose head is {model.head!r}")
    return model


def _load_torch_model(p: Path, what: str, arch: Sequence[int] | None, activation: str | None,
                      head: str | None) -> MLP:
    try:
        import torch
        import torch.nn as nn
    except ImportError:
        raise InputError(f"{what} is not a fisherkit .npz model; reading a PyTorch file needs torch "
                         "(pip install torch), or save the model with fisherkit.MLP.to_npz") from None
    allowed = [nn.Sequential, nn.Linear, nn.ReLU, nn.Tanh, nn.Sigmoid, nn.Softplus, nn.GELU, nn.SiLU, nn.Identity,
               nn.Flatten, nn.Dropout]
    try:
        # weights_only: only tensors, containers and the module classes listed here are
        # rebuilt; a file that needs anything else is refused instead of run.
        with torch.serialization.safe_globals(allowed):
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, ... for bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{what} is neither a fisherkit .npz model nor a PyTorch file of an nn.Sequential "
                         f"MLP or its state_dict ({first})") from None
    if isinstance(obj, nn.Module):
        if arch is not None or activation is not None:
            raise InputError(f"--arch and --activation are for a state_dict; {what} holds a whole "
                             f"{type(obj).__name__}, which records its own architecture")
        try:
            return MLP.from_torch(obj, head=head or "categorical")
        except ValueError as exc:
            raise InputError(f"{what}: {exc}") from None
    if isinstance(obj, dict):
        return _from_state_dict(obj, what, arch, activation, head)
    raise InputError(f"{what} holds a {type(obj).__name__}; expected an nn.Sequential MLP or its state_dict")


def _from_state_dict(state: dict[str, Any], what: str, arch: Sequence[int] | None, activation: str | None,
                     head: str | None) -> MLP:
    if arch is None or activation is None:
        raise InputError(f"{what} holds a state_dict (weights without architecture): pass --arch "
                         "(layer widths, e.g. 784,128,10), --activation and --head")
    weights = [(k[: -len("weight")], v) for k, v in state.items()
               if k.endswith("weight") and getattr(v, "ndim", 0) == 2]
    sizes = [int(s) for s in arch]
    if len(weights) != len(sizes) - 1:
        raise InputError(f"--arch {','.join(map(str, sizes))} has {len(sizes) - 1} layers but the state_dict in "
                         f"{what} has {len(weights)} weight matrices")
    layers = []
    for i, (prefix, W) in enumerate(weights):
        W = W.detach().cpu().numpy()
        if W.shape != (sizes[i + 1], sizes[i]):
            raise InputError(f"{what}: weight {prefix}weight has shape {W.shape} but --arch needs "
                             f"({sizes[i + 1]}, {sizes[i]}) for layer {i + 1}")
        b = state.get(prefix + "bias")
        b = None if b is None else b.detach().cpu().numpy()  # nn.Linear(..., bias=False): no bias parameters
        layers.append((W, b))
    acts = [a.strip() for a in activation.split(",")]
    if len(acts) == 1:
        acts = acts * (len(layers) - 1)
    for a in acts:
        if a not in ACTIVATIONS:
            raise InputError(f"--activation {a!r} is not one of {', '.join(ACTIVATIONS)}")
    try:
        return MLP(layers, acts, head or "categorical")
    except ValueError as exc:
        raise InputError(f"{what}: {exc}") from None


# ----------------------------------------------------------------------------- the data
def load_data(path: str | os.PathLike[str], *, labels: str | None = None) -> tuple[Any, Any, dict[str, Any]]:
    """(X, y, description) from ``path``.

    * ``.npy``: a 2-D numeric array, memory-mapped; ``labels`` = the label column(s) (index,
      or comma-separated indices; negative counts from the end), the other columns are X.
    * ``.npz``: X under one of the keys X, x, inputs, features, data (or the only array);
      labels under ``labels`` (a key) or one of y, labels, label, target, targets.
    * ``.csv``: numeric columns separated by commas, with an optional header line;
      ``labels`` names the label column(s) (header name or index, comma-separated).

    X may be a :class:`ColumnView` of a memory-mapped array; y is None when there are no
    labels. Raises :class:`InputError` naming the file for anything else.
    """
    p = Path(path)
    what = f"DATA '{p}'"
    _check_file(p, what)
    if p.suffix == ".npy":
        return _load_npy(p, what, labels)
    if p.suffix == ".npz":
        return _load_npz_data(p, what, labels)
    if p.suffix == ".csv":
        return _load_csv(p, what, labels)
    raise InputError(f"{what}: unknown data format {p.suffix or '(no suffix)'!r}; expected .npy, .npz or .csv")


def _check_file(p: Path, what: str) -> None:
    if not p.exists():
        raise InputError(f"{what} does not exist")
    if not p.is_file():
        raise InputError(f"{what} is not a file")
    if p.stat().st_size == 0:
        raise InputError(f"{what} is an empty file")


def _numeric_2d(arr: Any, what: str) -> None:
    if arr.dtype.kind not in "fiub":
        raise InputError(f"{what} must hold numbers, got an array of dtype {arr.dtype}")
    if arr.ndim != 2:
        raise InputError(f"{what} must be a 2-D array (rows x columns), got shape {tuple(arr.shape)}")
    if arr.shape[0] == 0:
        raise InputError(f"{what} has no rows")
    if arr.shape[1] == 0:
        raise InputError(f"{what} has no columns")


def _columns(spec: str, names: Sequence[str] | None, n_cols: int, what: str) -> list[int]:
    """Column indices named by ``spec`` (comma-separated header names or integers)."""
    out = []
    for tok in (t.strip() for t in spec.split(",")):
        if names is not None and tok in names:
            out.append(list(names).index(tok))
            continue
        try:
            i = int(tok)
        except ValueError:
            known = f"; its columns are {', '.join(names)}" if names is not None else ""
            raise InputError(f"--labels {spec}: {what} has no column {tok!r}{known}") from None
        if not -n_cols <= i < n_cols:
            raise InputError(f"--labels {spec}: column {i} is outside {what}'s {n_cols} columns")
        out.append(i % n_cols)
    if len(set(out)) != len(out):
        raise InputError(f"--labels {spec} names a column twice")
    if len(out) >= n_cols:
        raise InputError(f"--labels {spec} leaves no feature columns in {what}")
    return out


def _split(base: Any, label_cols: list[int] | None) -> tuple[Any, Any]:
    n_cols = base.shape[1]
    if not label_cols:
        return base, None
    feats = [c for c in range(n_cols) if c not in label_cols]
    return ColumnView(base, feats), ColumnView(base, sorted(label_cols))


def _load_npy(p: Path, what: str, labels: str | None) -> tuple[Any, Any, dict[str, Any]]:
    try:
        arr = np.load(p, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{what} is not a readable .npy array ({exc})") from None
    _numeric_2d(arr, what)
    cols = _columns(labels, None, arr.shape[1], what) if labels is not None else None
    X, y = _split(arr, cols)
    return X, y, {"source": str(p), "format": "npy (memory-mapped)", "labels": labels}


def _load_npz_data(p: Path, what: str, labels: str | None) -> tuple[Any, Any, dict[str, Any]]:
    try:
        z = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{what} is not a readable .npz file ({exc})") from None
    with z:
        keys = list(z.files)
        if "n_layers" in keys and "W0" in keys:
            raise InputError(f"{what} is a fisherkit model file, not a data set (the order is MODEL DATA)")
        if labels is not None and labels not in keys:
            raise InputError(f"--labels {labels}: {what} has no array {labels!r}; it holds {', '.join(keys)}")
        ykey = labels if labels is not None else next((k for k in _LABEL_KEYS if k in keys), None)
        rest = [k for k in keys if k != ykey]
        xkey = next((k for k in _FEATURE_KEYS if k in rest), rest[0] if len(rest) == 1 else None)
        if xkey is None:
            raise InputError(f"{what} holds {', '.join(keys) or 'no arrays'}; name the inputs X (and the labels y, "
                             "or pass --labels KEY)")
        try:
            X = z[xkey]
            y = z[ykey] if ykey is not None else None
        except ValueError as exc:
            raise InputError(f"{what}: {exc}") from None
    _numeric_2d(X, f"{what}[{xkey!r}]")
    if y is not None:
        if y.dtype.kind not in "fiub":
            raise InputError(f"{what}[{ykey!r}] must hold numbers, got dtype {y.dtype}")
        if y.shape[:1] != X.shape[:1] or y.ndim not in (1, 2):
            raise InputError(f"{what}: labels {ykey!r} have shape {y.shape} but the inputs {xkey!r} have "
                             f"{X.shape[0]} rows")
    return X, y, {"source": str(p), "format": "npz", "inputs_key": xkey, "labels": ykey}


_CONVERT = re.compile(r"could not convert string '(.*)' to \w+ at row (\d+), column (\d+)")
_COLUMNS = re.compile(r"number of columns changed from (\d+) to (\d+) at row (\d+)")


def _load_csv(p: Path, what: str, labels: str | None) -> tuple[Any, Any, dict[str, Any]]:
    with open(p, encoding="utf-8", errors="replace") as fh:
        first = fh.readline()
        while first and not first.strip():
            first = fh.readline()
    tokens = [t.strip() for t in first.split(",")]
    header = any(not _is_number(t) for t in tokens)
    names = tokens if header else None
    try:
        arr = np.loadtxt(p, delimiter=",", skiprows=1 if header else 0, ndmin=2, dtype=np.float64,
                         encoding="utf-8")
    except ValueError as exc:
        raise InputError(_csv_message(what, str(exc), names)) from None
    if arr.size == 0:
        raise InputError(f"{what} has a header line but no data rows")
    _numeric_2d(arr, what)
    if names is not None and len(names) != arr.shape[1]:
        raise InputError(f"{what}: the header names {len(names)} columns but the rows have {arr.shape[1]}")
    cols = _columns(labels, names, arr.shape[1], what) if labels is not None else None
    X, y = _split(arr, cols)
    return X, y, {"source": str(p), "format": "csv", "labels": labels,
                  "columns": names if names is not None else None}


def _is_number(tok: str) -> bool:
    try:
        float(tok)
    except ValueError:
        return False
    return True


def _csv_message(what: str, msg: str, names: Sequence[str] | None) -> str:
    m = _CONVERT.search(msg)
    if m:
        cell, row, col = m.group(1), int(m.group(2)) + 1, int(m.group(3))
        name = f" {names[col - 1]!r}" if names is not None and col <= len(names) else ""
        shown = f"text {cell!r}" if cell else "an empty cell"
        return (f"{what}: data row {row}, column {col}{name} holds {shown}; every column must be numeric "
                "(only the header line may hold names)")
    m = _COLUMNS.search(msg)
    if m:
        return (f"{what}: data row {m.group(3)} has {m.group(2)} columns but the rows before it have "
                f"{m.group(1)}; every row needs the same number of comma-separated numbers")
    return f"{what} is not a numeric CSV file ({msg})"


# ----------------------------------------------------------------------------- checks
def check_inputs(model: MLP, X: Any, what: str = "argument 'X'") -> None:
    """X must be 2-D with the model's input width, non-empty and finite (read in chunks)."""
    shape = getattr(X, "shape", None)
    if shape is None or len(shape) != 2:
        raise InputError(f"{what} must be a 2-D array (rows x features), got "
                         f"{'shape ' + str(tuple(shape)) if shape is not None else type(X).__name__}")
    if getattr(X, "dtype", np.dtype(np.float64)).kind not in "fiub":
        raise InputError(f"{what} must hold numbers, got dtype {X.dtype}")
    n, d = int(shape[0]), int(shape[1])
    if n == 0:
        raise InputError(f"{what} has no rows")
    if d != model.input_dim:
        raise InputError(f"{what} has {d} feature columns but the model takes {model.input_dim} inputs "
                         f"(the width of its first layer, sizes {model.sizes})")
    for sl in row_chunks(n, d * 8):
        block = np.asarray(X[sl])
        bad = ~np.isfinite(block)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise InputError(f"{what}: row {sl.start + int(r) + 1}, feature column {int(c) + 1} is "
                             f"{block[r, c]}; the inputs must be finite")


def check_labels(model: MLP, y: Any, n: int, what: str = "argument 'y'") -> None:
    """y must have one row per input and values in the support of the model's head
    (categorical: class indices 0..C-1; bernoulli: 0 or 1; poisson: counts >= 0; gaussian:
    finite reals), C columns for the heads other than categorical. Read in chunks."""
    head, C = model.head, model.output_dim
    shape = tuple(getattr(y, "shape", np.shape(y)))
    cols = 1 if len(shape) == 1 else (shape[1] if len(shape) == 2 else -1)
    want = 1 if head == "categorical" else C
    if len(shape) not in (1, 2) or shape[0] != n:
        raise InputError(f"{what} has shape {shape} but there are {n} inputs; expected one label row per input")
    if cols != want:
        kind = "one column of class indices" if head == "categorical" else f"{C} columns (one per output)"
        raise InputError(f"{what} has {cols} column(s) but the model's {head} head with {C} outputs needs {kind}")
    if getattr(y, "dtype", np.dtype(np.float64)).kind not in "fiub":
        raise InputError(f"{what} must hold numbers, got dtype {y.dtype}")
    for sl in row_chunks(n, 8 * max(cols, 1)):
        v = np.asarray(y[sl], dtype=np.float64).reshape(sl.stop - sl.start, -1)
        finite = np.isfinite(v)
        if head == "categorical":
            ok = finite & (v == np.round(v)) & (v >= 0) & (v <= C - 1)
            need = f"class indices 0..{C - 1} (the categorical head has {C} outputs)"
        elif head == "bernoulli":
            ok = (v == 0) | (v == 1)
            need = "0 or 1 (the bernoulli head)"
        elif head == "poisson":
            ok = finite & (v == np.round(v)) & (v >= 0)
            need = "counts 0, 1, 2, ... (the poisson head)"
        else:
            ok = finite
            need = "finite numbers (the gaussian head)"
        if not ok.all():
            r, c = np.argwhere(~ok)[0]
            col = f", column {int(c) + 1}" if cols > 1 else ""
            raise InputError(f"{what}: row {sl.start + int(r) + 1}{col} is {v[r, c]:g}; labels must be {need}")
