"""The MLP: weights, activations and an output head, over NumPy (or CuPy) arrays.

Conventions (docs/maths/conventions.rst#conventions-flat-order): z_l = W_l a_{l-1} + b_l, a_l = phi(z_l) for hidden layers, and the
output h = z_L is the head's natural parameter. Parameters flatten layer by layer: W_l
row-major with shape (n_out, n_in), then b_l.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import heads as _heads
from ._backend import dask_call, get_array_module, is_dask
from ._layout import Layout, layout_of
from ._loader import _core
from ._validate import _convert, as_chunk, as_dtype, as_labels, as_matrix, check_fits

ACTIVATIONS = ("identity", "relu", "tanh", "sigmoid", "softplus", "erf", "gelu", "silu")


def _check_activation(name: str, where: str) -> str:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r} in {where}; expected one of {', '.join(ACTIVATIONS)}")
    return name


# values of one parameter array that MLP.fingerprint hashes at most
FINGERPRINT_VALUES = 1 << 16


class MLP:
    """A multilayer perceptron with an exponential-family head.

    Parameters
    ----------
    layers : list of (W, b)
        W_l with shape (n_out, n_in) and b_l with shape (n_out,). Consecutive layers must
        chain (n_in of layer l+1 equals n_out of layer l).
    activation : str or list of str
        One name for every hidden layer, or one per hidden layer: identity, relu, tanh,
        sigmoid, softplus, erf. The output layer is always linear.
    head : str
        gaussian, categorical, bernoulli or poisson (see ``fisherkit.heads``).
    sigma : float
        Standard deviation of the Gaussian head (ignored by the others).
    dtype : float32 or float64, optional
        The model's dtype. Default: the first weight's dtype when it is float32/float64,
        else float64. Parameters and inputs are converted to it once, at the boundary.
    """

    def __init__(
        self,
        layers: Sequence[tuple[Any, Any]],
        activation: str | Sequence[str] = "tanh",
        head: str = "categorical",
        *,
        sigma: float = 1.0,
        dtype: Any = None,
    ) -> None:
        layers = list(layers)
        if not layers:
            raise ValueError("argument 'layers' is empty; an MLP needs at least one (W, b) layer")
        for i, lb in enumerate(layers):
            if not isinstance(lb, (tuple, list)) or len(lb) != 2:
                raise TypeError(f"layers[{i}] must be a (W, b) pair")
        named = [(f"layers[{i}].weight", w) for i, (w, _) in enumerate(layers)]
        named += [(f"layers[{i}].bias", b) for i, (_, b) in enumerate(layers)]
        xp = get_array_module(*named)
        if dtype is None:
            d0 = xp.asarray(layers[0][0]).dtype
            dtype = d0 if d0 in (np.float32, np.float64) else np.float64
        self._dtype = as_dtype(dtype)
        self._xp = xp
        self._weights: list[Any] = []
        self._biases: list[Any] = []
        for i, (w, b) in enumerate(layers):
            W = xp.asarray(w)
            B = xp.asarray(b)
            for arr, what in ((W, "weight"), (B, "bias")):
                if arr.dtype.kind not in "fiub":
                    raise TypeError(f"layers[{i}].{what} must be real numeric, got dtype {arr.dtype}")
            if W.ndim != 2:
                raise ValueError(f"layers[{i}].weight must be 2-D (n_out, n_in), got shape {tuple(W.shape)}")
            if B.ndim != 1:
                raise ValueError(f"layers[{i}].bias must be 1-D (n_out,), got shape {tuple(B.shape)}")
            if B.shape[0] != W.shape[0]:
                raise ValueError(
                    f"layers[{i}].bias has {B.shape[0]} entries but layers[{i}].weight has {W.shape[0]} rows"
                )
            if i > 0 and W.shape[1] != self._weights[-1].shape[0]:
                raise ValueError(
                    f"layer shapes do not chain: layers[{i}].weight has {W.shape[1]} columns but "
                    f"layers[{i-1}] has {self._weights[-1].shape[0]} outputs"
                )
            # always copies: the model never aliases the caller's (or torch's) arrays
            self._weights.append(_convert(xp, W, self._dtype, f"layers[{i}].weight", copy=True))
            self._biases.append(_convert(xp, B, self._dtype, f"layers[{i}].bias", copy=True))
        n_hidden = len(layers) - 1
        if isinstance(activation, str):
            acts = [activation] * n_hidden
            _check_activation(activation, "activation")
        else:
            acts = list(activation)
            if len(acts) != n_hidden:
                raise ValueError(
                    f"argument 'activation' must name one activation per hidden layer ({n_hidden}), got {len(acts)}"
                )
            for i, a in enumerate(acts):
                _check_activation(a, f"activation[{i}]")
        self._activations = acts
        self._head = _heads.check_name(head)
        sigma = float(sigma)
        if not (np.isfinite(sigma) and sigma > 0):
            raise ValueError(f"argument 'sigma' must be a finite positive standard deviation, got {sigma}")
        self._sigma = sigma
        if self._head == "categorical" and self.output_dim < 2:
            raise ValueError("the categorical head needs at least 2 outputs (logits)")

    # ------------------------------------------------------------------ construction
    @classmethod
    def init(
        cls,
        sizes: Sequence[int],
        activation: str | Sequence[str] = "tanh",
        head: str = "categorical",
        seed: int | None = 0,
        dtype: Any = np.float64,
        *,
        sigma: float = 1.0,
        weight_std: float | None = None,
        bias_std: float = 0.0,
    ) -> "MLP":
        """Random MLP with layer widths `sizes` = [n_0, n_1, ..., n_L].

        W_l ~ N(0, s^2 / n_{l-1}) with s = sqrt(2) for relu layers and 1 otherwise (or
        `weight_std` if given), b_l ~ N(0, bias_std^2). Reproducible from `seed`.
        """
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or any(s < 1 for s in sizes):
            raise ValueError(f"argument 'sizes' must list at least 2 positive widths, got {sizes}")
        rng = np.random.default_rng(seed)
        acts = [activation] * (len(sizes) - 2) if isinstance(activation, str) else list(activation)
        layers = []
        for i in range(len(sizes) - 1):
            n_in, n_out = sizes[i], sizes[i + 1]
            gain = weight_std if weight_std is not None else (
                np.sqrt(2.0) if i < len(acts) and acts[i] == "relu" else 1.0)
            W = rng.standard_normal((n_out, n_in)) * (gain / np.sqrt(n_in))
            b = rng.standard_normal(n_out) * bias_std
            layers.append((W, b))
        return cls(layers, activation, head, sigma=sigma, dtype=dtype)

    @classmethod
    def from_npz(cls, path: str | Path) -> "MLP":
        """Load a model written by :meth:`to_npz` (no pickle)."""
        with np.load(path, allow_pickle=False) as z:
            n = int(z["n_layers"])
            layers = [(z[f"W{i}"], z[f"b{i}"]) for i in range(n)]
            acts = [str(a) for a in z["activations"]]
            return cls(layers, acts, str(z["head"]), sigma=float(z["sigma"]), dtype=z["W0"].dtype)

    def to_npz(self, path: str | Path) -> None:
        """Save weights, activations, head and sigma to an .npz file (no pickle)."""
        arrays = {"n_layers": np.array(self.n_layers)}
        for i, (W, b) in enumerate(self.layers):
            arrays[f"W{i}"] = _host(W)
            arrays[f"b{i}"] = _host(b)
        arrays["activations"] = np.array(self._activations, dtype=str)
        arrays["head"] = np.array(self._head)
        arrays["sigma"] = np.array(self._sigma)
        np.savez(path, **arrays)

    @classmethod
    def from_torch(cls, module: Any, head: str = "categorical", *, sigma: float = 1.0, dtype: Any = None) -> "MLP":
        """Build from a ``torch.nn.Sequential`` of ``Linear`` layers and supported
        activations (ReLU, Tanh, Sigmoid, Softplus with default beta, Identity). Needs torch."""
        try:
            import torch.nn as nn
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("MLP.from_torch needs PyTorch (pip install torch)") from exc
        act_of = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.Identity: "identity"}
        layers, acts = [], []
        pending: str | None = None
        mods = list(module.children()) if isinstance(module, nn.Sequential) else [module]
        for i, m in enumerate(mods):
            if isinstance(m, nn.Linear):
                if layers:
                    acts.append(pending or "identity")
                pending = None
                W = m.weight.detach().cpu().numpy()
                b = m.bias.detach().cpu().numpy() if m.bias is not None else np.zeros(W.shape[0], W.dtype)
                layers.append((W, b))
            elif isinstance(m, nn.Softplus):
                if m.beta != 1 or m.threshold < 20:
                    raise ValueError(f"module {i}: only Softplus(beta=1) is supported")
                pending = _set_pending(pending, "softplus", i)
            elif type(m) in act_of:
                pending = _set_pending(pending, act_of[type(m)], i)
            else:
                raise ValueError(f"module {i} ({type(m).__name__}) is not a Linear layer or a supported activation")
        if not layers:
            raise ValueError("the module has no Linear layer")
        if pending is not None:
            raise ValueError("the last module must be Linear (the head applies the output non-linearity)")
        return cls(layers, acts, head, sigma=sigma, dtype=dtype)

    def copy(self) -> "MLP":
        return MLP([(W.copy(), b.copy()) for W, b in self.layers], list(self._activations),
                   self._head, sigma=self._sigma, dtype=self._dtype)

    def to(self, device: str) -> "MLP":
        """A copy of the model with its parameters on `device`: ``"cuda"`` (CuPy arrays, on
        CuPy's current device; every call then runs on the GPU and takes CuPy inputs) or
        ``"cpu"`` (NumPy arrays)."""
        if device in ("cuda", "gpu"):
            try:
                import cupy
            except ImportError:
                raise RuntimeError("MLP.to('cuda') needs CuPy: pip install 'fisherkit[cuda12]' "
                                   "(or [cuda13])") from None
            move: Any = cupy.asarray
        elif device in ("cpu", "host"):
            move = _host
        else:
            raise ValueError(f"argument 'device' must be 'cpu' or 'cuda', got {device!r}")
        return MLP([(move(W), move(b)) for W, b in self.layers], list(self._activations),
                   self._head, sigma=self._sigma, dtype=self._dtype)

    @property
    def device(self) -> str:
        """``"cuda"`` when the parameters are CuPy arrays, else ``"cpu"``."""
        return "cpu" if self._xp is np else "cuda"

    # ------------------------------------------------------------------ structure
    @property
    def layers(self) -> list[tuple[Any, Any]]:
        return list(zip(self._weights, self._biases))

    @property
    def weights(self) -> list[Any]:
        return list(self._weights)

    @property
    def biases(self) -> list[Any]:
        return list(self._biases)

    @property
    def activations(self) -> list[str]:
        return list(self._activations)

    @property
    def head(self) -> str:
        return self._head

    @property
    def sigma(self) -> float:
        return self._sigma

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def xp(self) -> Any:
        """numpy or cupy: where the parameters live."""
        return self._xp

    @property
    def sizes(self) -> list[int]:
        return [int(self._weights[0].shape[1])] + [int(W.shape[0]) for W in self._weights]

    @property
    def n_layers(self) -> int:
        return len(self._weights)

    @property
    def input_dim(self) -> int:
        return self.sizes[0]

    @property
    def output_dim(self) -> int:
        return self.sizes[-1]

    @property
    def layout(self) -> Layout:
        """The flat parameter layout and the offsets of every result shape."""
        return layout_of(self.sizes, [b is not None for b in self._biases])

    @property
    def n_params(self) -> int:
        return self.layout.n_params

    def param_slices(self) -> list[tuple[slice, slice]]:
        """Per layer, the (weight, bias) slices of the flat parameter vector."""
        return self.layout.param_slices()  # type: ignore[return-value]

    def fingerprint(self) -> str:
        """A digest of everything the model computes with: architecture, activations, head,
        sigma, dtype and the parameter values. Results carry it so that ``merge`` refuses to
        combine estimates of different models. Arrays of up to FINGERPRINT_VALUES values are
        hashed whole; a larger array by an evenly strided sample of about that many values
        (so that a Fisher call on a large model, or on the GPU, does not hash or transfer
        every weight): any change of all weights, as a training step makes, changes it."""
        h = hashlib.blake2b(digest_size=16)
        h.update(repr((self.sizes, self._activations, self._head, self._sigma, self._dtype.str,
                       [b is not None for b in self._biases])).encode())
        for a in self._weights + [b for b in self._biases if b is not None]:
            flat = a.reshape(-1)
            step = -(-flat.size // FINGERPRINT_VALUES)
            h.update(memoryview(np.ascontiguousarray(_host(flat[::step]))).cast("B"))
        return h.hexdigest()

    def flat_params(self) -> Any:
        """All parameters in the canonical order: per layer W (row-major), then b."""
        xp = self._xp
        return xp.concatenate([xp.concatenate([W.ravel(), b]) for W, b in self.layers])

    def set_flat_params(self, theta: Any) -> None:
        """Overwrite the parameters from a flat vector in the canonical order."""
        xp = self._xp
        theta = xp.asarray(theta, dtype=self._dtype)
        if theta.shape != (self.n_params,):
            raise ValueError(f"argument 'theta' must have shape ({self.n_params},), got {tuple(theta.shape)}")
        for (ws, bs), W, b in zip(self.param_slices(), self._weights, self._biases):
            W[...] = theta[ws].reshape(W.shape)
            b[...] = theta[bs]

    def unflatten(self, theta: Any) -> list[tuple[Any, Any]]:
        """Split a flat vector into per-layer (dW, db) arrays (views where possible)."""
        theta = self._xp.asarray(theta)
        if theta.shape != (self.n_params,):
            raise ValueError(f"argument 'theta' must have shape ({self.n_params},), got {tuple(theta.shape)}")
        return [(theta[ws].reshape(W.shape), theta[bs]) for (ws, bs), W in zip(self.param_slices(), self._weights)]

    def __repr__(self) -> str:
        return (f"MLP(sizes={self.sizes}, activations={self._activations}, head={self._head!r}, "
                f"dtype={self._dtype.name}, n_params={self.n_params})")

    # ------------------------------------------------------------------ computation
    def _core_args(self) -> tuple[list[Any], list[Any], list[str]]:
        return self._weights, self._biases, self._activations

    def _inputs(self, X: Any, y: Any = None) -> tuple[Any, Any]:
        named = [("X", X), ("model parameters", self._weights[0])]
        if y is not None:
            named.append(("y", y))
        xp = get_array_module(*named)
        Xc = as_matrix(xp, X, "X", self._dtype, cols=self.input_dim)
        if y is None:
            return Xc, None
        yc = as_labels(xp, y, "y", self._head, Xc.shape[0], self.output_dim, self._dtype)
        return Xc, yc

    def forward(self, X: Any, *, chunk: int = 0) -> Any:
        """Network outputs h (N x C): the head's natural parameters (logits, mean, log-rate)."""
        Xc, _ = self._inputs(X)
        out = self._xp.empty((Xc.shape[0], self.output_dim), dtype=self._dtype)
        _core.forward(*self._core_args(), Xc, out, as_chunk(chunk))
        return out

    def predict(self, X: Any) -> Any:
        """E[y | x]: class probabilities, means, success probabilities or rates."""
        return _heads.mean(self._head, self.forward(X), sigma=self._sigma)

    def log_likelihood(self, X: Any, y: Any, *, chunk: int = 0) -> Any:
        """log p(y_n | x_n) per sample (N,)."""
        Xc, yc = self._inputs(X, y)
        out = self._xp.empty(Xc.shape[0], dtype=self._dtype)
        _core.log_likelihood(*self._core_args(), self._head, self._sigma, Xc, yc, out, as_chunk(chunk))
        return out

    def loss(self, X: Any, y: Any) -> float:
        """Mean negative log-likelihood."""
        return float(-self.log_likelihood(X, y).mean())

    def gradient(self, X: Any, y: Any, *, chunk: int = 0) -> tuple[float, Any]:
        """(mean NLL, its gradient as a flat vector) without forming per-sample gradients."""
        if is_dask(X, y):  # Dask arrays: row blocks on workers, averaged (fisherkit.distributed)
            return dask_call("gradient", self, X, y, chunk=chunk)
        Xc, yc = self._inputs(X, y)
        out = self._xp.empty(self.n_params, dtype=self._dtype)
        loss = _core.nll_gradient(*self._core_args(), self._head, self._sigma, Xc, yc, out, as_chunk(chunk))
        return float(loss), out

    def per_sample_grads(self, X: Any, y: Any, *, chunk: int = 0, max_bytes: int | None = None,
                         out: Any = None) -> Any:
        """Gradients of -log p(y_n | x_n) per sample, shape (N, P). For small problems:
        refuses with MemoryError when N x P would exceed the memory budget. `out`: an
        existing C-contiguous (N, P) array of the model's dtype to write into (reusing a
        buffer avoids the page faults of a fresh N x P allocation, often half the time)."""
        Xc, yc = self._inputs(X, y)
        n = Xc.shape[0]
        if out is None:
            check_fits(n * self.n_params * self._dtype.itemsize, f"per_sample_grads (N={n} x P={self.n_params})",
                       "pass fewer samples at a time, or use fisherkit.fisher(...) which streams", max_bytes)
        out = self._out_buffer(out, (n, self.n_params))
        _core.per_sample_grads(*self._core_args(), self._head, self._sigma, Xc, yc, out, as_chunk(chunk))
        return out

    def _direction(self, v: Any, name: str = "v") -> Any:
        xp = get_array_module((name, v), ("model parameters", self._weights[0]))
        arr = xp.asarray(v)
        if arr.shape != (self.n_params,):
            raise ValueError(f"argument '{name}' must have shape ({self.n_params},), got {tuple(arr.shape)}")
        return _convert(xp, arr, self._dtype, name)

    def _directions(self, V: Any, name: str = "v") -> Any:
        """(P, k) directions in the model's dtype (converted once)."""
        xp = get_array_module((name, V), ("model parameters", self._weights[0]))
        arr = xp.asarray(V)
        if arr.ndim != 2 or arr.shape[0] != self.n_params:
            raise ValueError(f"argument '{name}' must have shape ({self.n_params}, k), got {tuple(arr.shape)}")
        return _convert(xp, arr, self._dtype, name)

    def jvp(self, X: Any, v: Any, *, second_order: bool = False, chunk: int = 0) -> Any:
        """Directional derivatives of the outputs along the parameter direction `v`
        (flat order): J_n v, shape (N, C), by forward-mode tangent propagation. With
        ``second_order=True`` also returns v^T H_{n,c} v (N, C), the second directional
        derivative (forward over forward). Cost: about two (three) forward passes."""
        Xc, _ = self._inputs(X)
        vc = self._direction(v)
        n = Xc.shape[0]
        out1 = self._xp.empty((n, self.output_dim), dtype=self._dtype)
        out2 = self._xp.empty((n, self.output_dim), dtype=self._dtype) if second_order else None
        _core.jvp(*self._core_args(), Xc, vc, out1, out2, as_chunk(chunk))
        return (out1, out2) if second_order else out1

    def jacobian(self, X: Any, *, chunk: int = 0, max_bytes: int | None = None, out: Any = None) -> Any:
        """Output Jacobian dh/dtheta per sample, shape (N, C, P). For small problems:
        refuses with MemoryError when N x C x P would exceed the memory budget (default:
        half the available memory). `out`: an existing C-contiguous (N, C, P) array to
        write into."""
        Xc, _ = self._inputs(X)
        n, c, p = Xc.shape[0], self.output_dim, self.n_params
        if out is None:
            check_fits(n * c * p * self._dtype.itemsize, f"jacobian (N={n} x C={c} x P={p})",
                       "use fewer inputs, or fisherkit.fisher(...) which never forms the Jacobian", max_bytes)
        out = self._out_buffer(out, (n, c, p))
        _core.output_jacobian(*self._core_args(), Xc, out.reshape(n, c * p), as_chunk(chunk))
        return out

    def _out_buffer(self, out: Any, shape: tuple[int, ...]) -> Any:
        if out is None:
            return self._xp.empty(shape, dtype=self._dtype)
        get_array_module(("out", out), ("model parameters", self._weights[0]))
        if tuple(out.shape) != shape or out.dtype != self._dtype or not out.flags.c_contiguous:
            raise ValueError(f"argument 'out' must be a C-contiguous {self._dtype.name} array of shape {shape}, "
                             f"got {out.dtype} {tuple(out.shape)}")
        return out


def check_model(model: Any, *, host_only: bool = False, what: str = "this computation") -> "MLP":
    """`model` is a fisherkit.MLP (and, with host_only, holds NumPy arrays)."""
    if not isinstance(model, MLP):
        raise TypeError(f"argument 'model' must be a fisherkit.MLP, got {type(model).__name__}")
    if host_only and model.xp is not np:
        raise NotImplementedError(f"{what} runs on NumPy models; use model.to('cpu')")
    return model


def _set_pending(pending: str | None, name: str, i: int) -> str:
    if pending is not None:
        raise ValueError(f"module {i}: two activations in a row are not supported")
    return name


def _host(a: Any) -> np.ndarray:
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)


