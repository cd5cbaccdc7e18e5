"""Conversion between PyTorch MLPs and fisherkit's layers (``MLP.from_torch`` and
``MLP.to_torch``). torch is imported only when a conversion runs."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

# torch module class name -> fisherkit activation
_ACTIVATIONS = {"ReLU": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid", "Softplus": "softplus", "GELU": "gelu",
                "SiLU": "silu"}
# no-ops at evaluation
_SKIPPED = ("Dropout", "Identity")


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("converting to or from PyTorch needs torch (pip install torch)") from exc
    return torch


def _leaves(module: Any, nn: Any, path: str) -> list[tuple[str, Any]]:
    """(position, module) of the modules a forward pass runs, in order: nested Sequentials
    flattened, a wrapper whose only child is a module unwrapped."""
    if isinstance(module, nn.Sequential):
        out: list[tuple[str, Any]] = []
        for i, child in enumerate(module.children()):
            out += _leaves(child, nn, f"{path}.{i}" if path else str(i))
        return out
    children = list(module.children())
    if len(children) == 1 and isinstance(children[0], nn.Sequential):
        # a wrapper (class Net(nn.Module) holding self.net = nn.Sequential(...)): its forward
        # is taken to run the Sequential alone, which is what such a wrapper does
        return _leaves(children[0], nn, f"{path}.0" if path else "0")
    return [(path or "0", module)]


def _array(t: Any, torch: Any, dtype: Any, where: str) -> np.ndarray:
    t = t.detach().cpu()  # requires_grad tensors are detached (the values are copied by MLP)
    if t.dtype in (torch.bfloat16, torch.float16):
        if dtype is None:
            raise TypeError(f"{where} is {str(t.dtype).replace('torch.', '')}, which NumPy cannot hold as such: pass "
                            "dtype=numpy.float32 (or float64) to convert it exactly, or call module.float() first")
        t = t.to(torch.float32)
    return t.numpy()


def parse_sequential(module: Any, dtype: Any) -> tuple[list[tuple[Any, Any]], list[str], Any]:
    """(layers, hidden activations, model dtype) of a PyTorch MLP, for MLP(...)."""
    torch = _torch()
    nn = torch.nn
    if not isinstance(module, nn.Module):
        raise TypeError(f"argument 'module' must be a torch.nn.Module, got {type(module).__name__}")
    layers: list[tuple[Any, Any]] = []
    acts: list[str] = []
    pending: tuple[str, str] | None = None  # (activation, position) since the last Linear
    first_dtype = None
    for pos, m in _leaves(module, nn, ""):
        name = type(m).__name__
        if isinstance(m, nn.Linear):
            if layers:
                acts.append(pending[0] if pending else "identity")
            pending = None
            first_dtype = first_dtype or m.weight.dtype
            W = _array(m.weight, torch, dtype, f"module {pos} (Linear) weight")
            b = None if m.bias is None else _array(m.bias, torch, dtype, f"module {pos} (Linear) bias")
            layers.append((W, b))
        elif isinstance(m, nn.Flatten):
            if layers or m.start_dim != 1 or m.end_dim != -1:
                raise ValueError(f"module {pos} (Flatten): only a Flatten() before the first Linear layer is supported")
        elif name in _SKIPPED:
            continue
        elif name in _ACTIVATIONS:
            if not layers:
                raise ValueError(f"module {pos} ({name}): an activation before the first Linear layer is not an MLP "
                                 "layer fisherkit can represent")
            if name == "Softplus" and (m.beta != 1 or m.threshold < 20):
                raise ValueError(f"module {pos}: only Softplus(beta=1) is supported")
            if name == "GELU" and getattr(m, "approximate", "none") != "none":
                raise ValueError(f"module {pos}: only the exact GELU (approximate='none') is supported")
            if pending is not None:
                raise ValueError(f"module {pos}: two activations in a row are not supported "
                                 f"(module {pending[1]} is one already)")
            pending = (_ACTIVATIONS[name], pos)
        else:
            raise ValueError(f"module {pos} ({name}) is not a Linear layer, a supported activation "
                             f"({', '.join(_ACTIVATIONS)}) or a no-op (Flatten, Dropout, Identity)")
    if not layers:
        raise ValueError("the module has no Linear layer")
    if pending is not None:
        raise ValueError("the last module must be Linear (the head applies the output non-linearity)")
    if dtype is None:
        dtype = np.float32 if first_dtype == torch.float32 else np.float64
    return layers, acts, dtype


def build_sequential(layers: Sequence[tuple[np.ndarray, np.ndarray | None]], activations: Sequence[str],
                     dtype: Any) -> Any:
    """An nn.Sequential equivalent to the layers and hidden activations, in `dtype`."""
    torch = _torch()
    nn = torch.nn
    tdtype = torch.float32 if np.dtype(dtype) == np.float32 else torch.float64
    modules: list[Any] = []
    by_name = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "softplus": nn.Softplus,
               "gelu": nn.GELU, "silu": nn.SiLU, "identity": nn.Identity}
    for i, (W, b) in enumerate(layers):
        lin = nn.Linear(W.shape[1], W.shape[0], bias=b is not None, dtype=tdtype)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(W)))
            if b is not None:
                lin.bias.copy_(torch.from_numpy(np.ascontiguousarray(b)))
        modules.append(lin)
        if i < len(activations):
            act = activations[i]
            if act not in by_name:
                raise ValueError(f"activation {act!r} of layer {i} has no torch.nn module; to_torch supports "
                                 f"{', '.join(by_name)}")
            modules.append(by_name[act]())
    return nn.Sequential(*modules)
