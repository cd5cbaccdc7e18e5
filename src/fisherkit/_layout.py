"""The flat parameter layout and the offsets of every result shape, as the compiled core
defines them (``_core.layout``): the one definition the Python package reads.

Parameters, layer by layer: W_l row-major (n_out x n_in), then b_l when the layer has a bias.
Unit u of layer l owns row u of W_l and b_l[u]; its block has side k_l = n_in + bias (bias
last). Shapes: ``diag`` (P), ``unit`` (per layer n_out blocks k_l x k_l), ``layer`` (per
layer one (n_out k_l)^2 block), ``full`` (P x P), ``kfac`` (per layer A_l (k_l x k_l) then
G_l (n_out x n_out)).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Sequence

import numpy as np

from ._loader import _core


class Layout:
    """Offsets of one architecture (layer widths ``sizes`` and a bias flag per layer)."""

    def __init__(self, sizes: Sequence[int], bias: Sequence[bool]) -> None:
        self.sizes = tuple(int(s) for s in sizes)
        self.bias = tuple(bool(b) for b in bias)
        d = _core.layout(list(self.sizes[1:]), list(self.sizes[:-1]), list(self.bias))
        self.n_params: int = int(d["n_params"])
        self.param_offset: tuple[int, ...] = tuple(d["param_offset"])
        self.unit_width: tuple[int, ...] = tuple(d["unit_width"])
        self._size: dict[str, int] = dict(d["size"])
        self._offset: dict[str, tuple[int, ...]] = {k: tuple(v) for k, v in d["offset"].items()}

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    def dims(self, l: int) -> tuple[int, int, bool]:
        """(n_out, n_in, bias) of layer l (0-based)."""
        return self.sizes[l + 1], self.sizes[l], self.bias[l]

    def layer_params(self, l: int) -> int:
        return self.sizes[l + 1] * self.unit_width[l]

    def size(self, shape: str) -> int:
        """Values of the flat result of `shape`."""
        return self._size[shape]

    def offset(self, shape: str, l: int) -> int:
        """Where layer l's values start in the flat result of `shape`."""
        return self._offset[shape][l]

    def param_slices(self) -> list[tuple[slice, slice | None]]:
        """Per layer the (weight, bias) slices of the flat parameter vector (bias None when
        the layer has none)."""
        out = []
        for l in range(self.n_layers):
            n_out, n_in, bias = self.dims(l)
            off = self.param_offset[l]
            w = slice(off, off + n_out * n_in)
            out.append((w, slice(w.stop, w.stop + n_out) if bias else None))
        return out

    def layer_slice(self, l: int) -> slice:
        off = self.param_offset[l]
        return slice(off, off + self.layer_params(l))

    def unit_index(self) -> list[np.ndarray]:
        """Per layer an (n_out, k_l) integer array: the flat parameter index of every entry of
        every unit block (row u of W_l, then b_l[u] when the layer has a bias)."""
        idx = []
        for l in range(self.n_layers):
            n_out, n_in, bias = self.dims(l)
            off = self.param_offset[l]
            w = off + np.arange(n_out)[:, None] * n_in + np.arange(n_in)[None, :]
            if bias:
                w = np.concatenate([w, off + n_out * n_in + np.arange(n_out)[:, None]], axis=1)
            idx.append(w)
        return idx


@lru_cache(maxsize=256)
def _cached(sizes: tuple[int, ...], bias: tuple[bool, ...]) -> Layout:
    return Layout(sizes, bias)


def layout_of(sizes: Sequence[int], bias: Sequence[bool] | None = None) -> Layout:
    """The (cached) layout of widths `sizes`; `bias` per layer (default: every layer has one)."""
    sizes = tuple(int(s) for s in sizes)
    b = (True,) * (len(sizes) - 1) if bias is None else tuple(bool(x) for x in bias)
    return _cached(sizes, b)


def unit_index(sizes: Sequence[int], bias: Sequence[bool] | None = None) -> list[Any]:
    """Per layer an (n_out, k_l) array of the flat parameter indices of each unit block."""
    return layout_of(sizes, bias).unit_index()
