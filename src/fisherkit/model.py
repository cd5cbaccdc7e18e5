"""The MLP: weights, activations and an output head, over NumPy (or CuPy) arrays.

Conventions (docs/maths/conventions.rst#conventions-flat-order): z_l = W_l a_{l-1} + b_l, a_l = phi(z_l) for hidden layers, and the
output h = z_L is the head's natural parameter. Parameters flatten layer by layer: W_l
row-major with shape (n_out, n_in), then b_l.
"""
from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import _torch
from . import heads as _heads
from ._backend import dask_call, fresh_result, get_array_module, is_dask, to_numpy
from ._layout import Layout, layout_of
from ._loader import _core
from ._progress import reporter
from ._validate import (_convert, as_budget, as_chunk, as_dtype, as_int, as_labels, as_matrix, as_out, as_real, as_seed,
                        check_fits)

ACTIVATIONS = ("identity", "relu", "tanh", "sigmoid", "softplus", "erf", "gelu", "silu")


def _check_activation(name: str, where: str) -> str:
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r} in {where}; expected one of {', '.join(ACTIVATIONS)}")
    return name


# values of one parameter array that MLP.fingerprint hashes at most: every Fisher call
# fingerprints its model, and hashing 65536 float64 values took 0.5 ms, 4% of an exact
# diagonal of a 784-128-10 network over 1024 inputs
FINGERPRINT_VALUES = 1 << 11


class MLP:
    """A multilayer perceptron with an exponential-family head.

    Parameters
    ----------
    layers : list of (W, b)
        W_l with shape (n_out, n_in) and b_l with shape (n_out,), or ``None`` for a layer
        without bias (it then has no bias parameters: the flat vector, every Fisher shape
        and every gradient leave them out, as torch's ``nn.Linear(..., bias=False)`` does).
        Consecutive layers must chain (n_in of layer l+1 equals n_out of layer l).
    activation : str or list of str
        One name for every hidden layer, or one per hidden layer: identity, relu, tanh,
        sigmoid, softplus, erf, gelu, silu. The output layer is always linear.
    head : str
        gaussian, categorical, bernoulli or poisson (see ``fisherkit.heads``).
    sigma : float
        Standard deviation of the Gaussian head (ignored by the others).
    dtype : float32 or float64, optional
        The model's dtype. Default: the first weight's dtype when it is float32/float64 (of
        either byte order), else float64. Parameters and inputs are converted to it once,
        at the boundary.
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
        if isinstance(layers, (str, bytes)) or not hasattr(layers, "__iter__"):
            raise TypeError(f"argument 'layers' must be a list of (W, b) pairs, got {type(layers).__name__}")
        layers = list(layers)
        if not layers:
            raise ValueError("argument 'layers' is empty; an MLP needs at least one (W, b) layer")
        for i, lb in enumerate(layers):
            if not isinstance(lb, (tuple, list)) or len(lb) != 2:
                raise TypeError(f"layers[{i}] must be a (W, b) pair (b may be None for a layer without bias)")
        named = [(f"layers[{i}].weight", w) for i, (w, _) in enumerate(layers)]
        named += [(f"layers[{i}].bias", b) for i, (_, b) in enumerate(layers) if b is not None]
        xp = get_array_module(*named)
        if dtype is None:
            d0 = xp.asarray(layers[0][0]).dtype
            dtype = d0 if d0.kind == "f" and d0.itemsize in (4, 8) else np.float64
        self._dtype = as_dtype(dtype)
        self._xp = xp
        self._weights: list[Any] = []
        self._biases: list[Any] = []
        for i, (w, b) in enumerate(layers):
            W = xp.asarray(w)
            B = None if b is None else xp.asarray(b)
            for arr, what in ((W, "weight"), (B, "bias")):
                if arr is not None and arr.dtype.kind not in "fiub":
                    raise TypeError(f"layers[{i}].{what} must be real numeric, got dtype {arr.dtype}")
            if W.ndim != 2:
                raise ValueError(f"layers[{i}].weight must be 2-D (n_out, n_in), got shape {tuple(W.shape)}")
            if B is not None and B.ndim != 1:
                raise ValueError(f"layers[{i}].bias must be 1-D (n_out,) or None, got shape {tuple(B.shape)}")
            if B is not None and B.shape[0] != W.shape[0]:
                raise ValueError(
                    f"layers[{i}].bias has {B.shape[0]} entries but layers[{i}].weight has {W.shape[0]} rows"
                )
            if i > 0 and W.shape[1] != self._weights[-1].shape[0]:
                raise ValueError(
                    f"layer shapes do not chain: layers[{i}].weight has {W.shape[1]} columns but "
                    f"layers[{i-1}] has {self._weights[-1].shape[0]} outputs"
                )
            if min(W.shape) < 1:
                raise ValueError(f"layers[{i}].weight has an empty dimension, shape {tuple(W.shape)}")
            # always copies: the model never aliases the caller's (or torch's) arrays
            self._weights.append(_convert(xp, W, self._dtype, f"layers[{i}].weight", copy=True))
            self._biases.append(None if B is None else _convert(xp, B, self._dtype, f"layers[{i}].bias", copy=True))
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
        self._sigma = as_real(sigma, "sigma", minimum=0.0, strict=True)
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
        bias: bool | Sequence[bool] = True,
    ) -> "MLP":
        """Random MLP with layer widths `sizes` = [n_0, n_1, ..., n_L].

        W_l ~ N(0, s^2 / n_{l-1}) with s = sqrt(2) for relu layers and 1 otherwise (or
        `weight_std` if given), b_l ~ N(0, bias_std^2). `bias`: False (or one flag per
        layer) for layers without bias. Reproducible from `seed` (an integer, or None for
        fresh entropy).
        """
        if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
            raise TypeError(f"argument 'sizes' must be a list of layer widths, got {type(sizes).__name__}")
        sizes = [as_int(s, "sizes", minimum=1, maximum=2**31 - 1) for s in sizes]
        if len(sizes) < 2:
            raise ValueError(f"argument 'sizes' must list at least 2 positive widths, got {sizes}")
        n = len(sizes) - 1
        flags = [bias] * n if isinstance(bias, (bool, np.bool_)) else list(bias)
        if len(flags) != n or not all(isinstance(f, (bool, np.bool_)) for f in flags):
            raise ValueError(f"argument 'bias' must be True, False or one bool per layer ({n}), got {bias!r}")
        std = as_real(weight_std, "weight_std", minimum=0.0) if weight_std is not None else None
        rng = np.random.default_rng(as_seed(seed))
        acts = [activation] * (len(sizes) - 2) if isinstance(activation, str) else list(activation)
        layers = []
        for i in range(n):
            n_in, n_out = sizes[i], sizes[i + 1]
            gain = std if std is not None else (np.sqrt(2.0) if i < len(acts) and acts[i] == "relu" else 1.0)
            W = rng.standard_normal((n_out, n_in)) * (gain / np.sqrt(n_in))
            b = rng.standard_normal(n_out) * as_real(bias_std, "bias_std", minimum=0.0) if flags[i] else None
            layers.append((W, b))
        return cls(layers, activation, head, sigma=sigma, dtype=dtype)

    @classmethod
    def from_npz(cls, path: str | Path) -> "MLP":
        """Load a model written by :meth:`to_npz` (no pickle). A file that is not such a model
        (not a zip archive, truncated, or missing an entry) raises ValueError naming the file
        and what is wrong; weights of any real dtype and byte order are read as ``MLP``
        reads them."""
        what = f"model file {str(path)!r}"
        with open(path, "rb") as fh:  # ours to close, also when np.load fails half-way
            try:
                z = np.load(fh, allow_pickle=False)
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
                raise ValueError(f"{what} is not a readable .npz archive ({type(exc).__name__}: {exc})") from None
            if not hasattr(z, "files"):
                raise ValueError(f"{what} holds a single array, not a model written by MLP.to_npz")
            try:
                with z:
                    return cls._from_archive(z, what)
            except (zipfile.BadZipFile, EOFError, OSError) as exc:
                raise ValueError(f"{what} is truncated or damaged ({type(exc).__name__}: {exc})") from None

    @classmethod
    def _from_archive(cls, z: Any, what: str) -> "MLP":
        def entry(key: str) -> np.ndarray:
            if key not in z.files:
                raise ValueError(f"{what} is not a model written by MLP.to_npz: entry {key!r} is missing "
                                 f"(it holds {', '.join(z.files) or 'nothing'})")
            return z[key]

        n_arr = entry("n_layers")
        if n_arr.shape != () or n_arr.dtype.kind not in "iu":
            raise ValueError(f"{what}: 'n_layers' must be one integer, got {n_arr.dtype} of shape {n_arr.shape}")
        n = as_int(n_arr.item(), "n_layers", minimum=1, maximum=10_000)
        bias = entry("bias") if "bias" in z.files else np.ones(n, dtype=bool)  # files before bias-free layers
        if bias.shape != (n,) or bias.dtype != bool:
            raise ValueError(f"{what}: 'bias' must hold {n} booleans, got {bias.dtype} of shape {bias.shape}")
        layers = [(entry(f"W{i}"), entry(f"b{i}") if bias[i] else None) for i in range(n)]
        acts = entry("activations")
        head, sigma = entry("head"), entry("sigma")
        if acts.dtype.kind != "U" or head.dtype.kind != "U" or head.shape != () or sigma.shape != ():
            raise ValueError(f"{what}: 'activations' and 'head' must be strings and 'sigma' one number")
        return cls(layers, [str(a) for a in acts], str(head), sigma=float(sigma), dtype=None)

    def to_npz(self, path: str | Path) -> None:
        """Save weights, biases (layers without one are recorded as such), activations, head
        and sigma to an .npz file (no pickle)."""
        arrays = {"n_layers": np.array(self.n_layers), "bias": np.array([b is not None for b in self._biases])}
        for i, (W, b) in enumerate(self.layers):
            arrays[f"W{i}"] = to_numpy(W)
            if b is not None:
                arrays[f"b{i}"] = to_numpy(b)
        arrays["activations"] = np.array(self._activations, dtype=str)
        arrays["head"] = np.array(self._head)
        arrays["sigma"] = np.array(self._sigma)
        np.savez(path, **arrays)

    @classmethod
    def from_torch(cls, module: Any, head: str = "categorical", *, sigma: float = 1.0, dtype: Any = None) -> "MLP":
        """Build from a PyTorch MLP: an ``nn.Sequential`` (nested ones are flattened, and a
        module whose only child is one is unwrapped) of ``Linear`` layers (with or without
        bias: the parameter vector is torch's) and the activations ``ReLU``, ``Tanh``,
        ``Sigmoid``, ``Softplus`` (beta 1), ``GELU`` (exact), ``SiLU``; ``Flatten`` before the
        first layer, ``Dropout`` and ``Identity`` are no-ops at evaluation and are skipped.
        Anything else is refused naming the module and its position (``module 1.0`` is child
        0 of child 1). Tensors that require grad are detached and copied. float16 and
        bfloat16 parameters need an explicit ``dtype`` (NumPy has no bfloat16; the
        conversion to float32/float64 is exact). Needs torch."""
        layers, acts, mdtype = _torch.parse_sequential(module, dtype)
        return cls(layers, acts, head, sigma=sigma, dtype=mdtype)

    def to_torch(self) -> Any:
        """An equivalent ``torch.nn.Sequential`` (``Linear`` layers, bias where this model has
        one, and one activation module after each hidden layer) in the model's dtype, on the
        CPU: ``MLP.from_torch(m.to_torch())`` gives this model back. Needs torch."""
        return _torch.build_sequential([(to_numpy(W), None if b is None else to_numpy(b)) for W, b in self.layers],
                                self._activations, self._dtype)

    def copy(self) -> "MLP":
        return MLP([(W.copy(), None if b is None else b.copy()) for W, b in self.layers], list(self._activations),
                   self._head, sigma=self._sigma, dtype=self._dtype)

    def to(self, device: Any) -> "MLP":
        """A copy of the model with its parameters on `device`: ``"cuda"`` or ``"cuda:N"``
        (CuPy arrays on CuPy's current device, or on GPU N; every call then runs on the GPU and
        takes CuPy inputs), ``"cpu"`` (NumPy arrays), or a ``torch.device`` / CuPy ``Device``
        naming one of these."""
        kind, index = _parse_device(device)
        if kind == "cuda":
            try:
                import cupy
            except ImportError:
                raise RuntimeError(f"MLP.to({device!r}) needs CuPy: pip install 'fisherkit[cuda12]' "
                                   "(or [cuda13])") from None
            if index is None:
                move: Any = cupy.asarray
            else:
                def move(a: Any) -> Any:
                    with cupy.cuda.Device(index):
                        return cupy.asarray(a)
        else:
            move = to_numpy
        return MLP([(move(W), None if b is None else move(b)) for W, b in self.layers], list(self._activations),
                   self._head, sigma=self._sigma, dtype=self._dtype)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # arrays unpickled from a message buffer (Dask, multiprocessing) may sit at an odd
        # offset or be read-only: the compiled core must never read them unaligned
        self.__dict__.update(state)
        for arrays in (self._weights, self._biases):
            for i, a in enumerate(arrays):
                flags = getattr(a, "flags", None)
                if flags is not None and not (getattr(flags, "aligned", True) and getattr(flags, "writeable", True)):
                    arrays[i] = self._xp.array(a, copy=True)

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
        h = hashlib.sha256(repr((self.sizes, self._activations, self._head, self._sigma, self._dtype.str,
                                 [b is not None for b in self._biases])).encode())
        # one strided sample of every array, hashed (and, on the GPU, copied) at once: the
        # sizes above fix where each array's values begin. SHA-256 runs in hardware on
        # current x86 and ARM cores (twice BLAKE2's rate here): every Fisher call pays this.
        arrays = self._weights + [b for b in self._biases if b is not None]
        parts = [a.reshape(-1)[::-(-a.size // FINGERPRINT_VALUES)] for a in arrays]
        h.update(memoryview(np.ascontiguousarray(to_numpy(self._xp.concatenate(parts)))).cast("B"))
        return h.hexdigest()[:32]

    def flat_params(self) -> Any:
        """All parameters in the canonical order: per layer W (row-major), then b (when the
        layer has one)."""
        xp = self._xp
        return xp.concatenate([W.ravel() if b is None else xp.concatenate([W.ravel(), b]) for W, b in self.layers])

    def set_flat_params(self, theta: Any) -> None:
        """Overwrite the parameters from a flat vector in the canonical order."""
        xp = self._xp
        theta = xp.asarray(theta, dtype=self._dtype)
        if theta.shape != (self.n_params,):
            raise ValueError(f"argument 'theta' must have shape ({self.n_params},), got {tuple(theta.shape)}")
        for (ws, bs), W, b in zip(self.param_slices(), self._weights, self._biases):
            W[...] = theta[ws].reshape(W.shape)
            if b is not None:
                b[...] = theta[bs]

    def unflatten(self, theta: Any) -> list[tuple[Any, Any]]:
        """Split a flat vector into per-layer (dW, db) arrays (views where possible; db is
        None for a layer without bias)."""
        theta = self._xp.asarray(theta)
        if theta.shape != (self.n_params,):
            raise ValueError(f"argument 'theta' must have shape ({self.n_params},), got {tuple(theta.shape)}")
        return [(theta[ws].reshape(W.shape), None if bs is None else theta[bs])
                for (ws, bs), W in zip(self.param_slices(), self._weights)]

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
                         out: Any = None, progress: Any = None) -> Any:
        """Gradients of -log p(y_n | x_n) per sample, shape (N, P). For small problems:
        refuses with MemoryError when N x P would exceed the memory budget. `out`: an
        existing C-contiguous (N, P) array of the model's dtype to write into (reusing a
        buffer avoids the page faults of a fresh N x P allocation, often half the time).
        `progress`: a callable taking (done, total) inputs, or True for a progress bar."""
        chunk = as_chunk(chunk)
        Xc, yc = self._inputs(X, y)
        n = Xc.shape[0]
        as_budget(max_bytes)
        if out is None:
            check_fits(n * self.n_params * self._dtype.itemsize, f"per_sample_grads (N={n} x P={self.n_params})",
                       "pass fewer samples at a time, or use fisherkit.fisher(...) which streams", max_bytes)
        out = self._out_buffer(out, (n, self.n_params))
        with reporter(progress, "per_sample_grads") as cb:
            _core.per_sample_grads(*self._core_args(), self._head, self._sigma, Xc, yc, out, chunk, cb)
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
        as_budget(max_bytes)
        if out is None:
            check_fits(n * c * p * self._dtype.itemsize, f"jacobian (N={n} x C={c} x P={p})",
                       "use fewer inputs, or fisherkit.fisher(...) which never forms the Jacobian", max_bytes)
        out = self._out_buffer(out, (n, c, p))
        _core.output_jacobian(*self._core_args(), Xc, out.reshape(n, c * p), as_chunk(chunk))
        return out

    def _out_buffer(self, out: Any, shape: tuple[int, ...]) -> Any:
        if out is None:
            return fresh_result(self._xp, shape, self._dtype)
        as_out(self._xp, out, shape, self._dtype)
        get_array_module(("out", out), ("model parameters", self._weights[0]))
        return out


def check_model(model: Any, *, host_only: bool = False, what: str = "this computation") -> "MLP":
    """`model` is a fisherkit.MLP (and, with host_only, holds NumPy arrays)."""
    if not isinstance(model, MLP):
        raise TypeError(f"argument 'model' must be a fisherkit.MLP, got {type(model).__name__}")
    if host_only and model.xp is not np:
        raise NotImplementedError(f"{what} runs on NumPy models; use model.to('cpu')")
    return model


def _parse_device(device: Any) -> tuple[str, int | None]:
    """("cpu" | "cuda", GPU index or None) from "cpu", "cuda", "cuda:N", "gpu", a
    ``torch.device`` or a CuPy ``Device``."""
    if hasattr(device, "id") and type(device).__module__.startswith("cupy"):
        return "cuda", as_int(device.id, "device", minimum=0)
    text = str(device) if type(device).__name__ == "device" else device  # torch.device("cuda:1")
    if isinstance(text, str):
        name, _, idx = text.strip().lower().partition(":")
        if name in ("cpu", "host") and not idx:
            return "cpu", None
        if name in ("cuda", "gpu"):
            if not idx:
                return "cuda", None
            if idx.isdigit():
                return "cuda", int(idx)
    raise ValueError(f"argument 'device' must be 'cpu', 'cuda' or 'cuda:N' (N a GPU index), got {device!r}")
