"""The same API on the GPU: a model moved with .to("cuda"), CuPy inputs, CuPy results.

Needs CuPy and an NVIDIA GPU (pip install ".[cuda12]" or ".[cuda13]"); elsewhere it says
so and exits. It checks the GPU results against the CPU engine on the same data.
"""
import numpy as np

import fisherkit as fk

try:
    import cupy as cp
except ImportError:
    cp = None

if cp is None or not fk.info()["gpu_visible"]:
    print("gpu_fisher: needs CuPy and a visible NVIDIA GPU; nothing to do here")
    raise SystemExit(0)

model = fk.MLP.init([64, 128, 128, 10], activation="relu", head="categorical", seed=0)
X = np.random.default_rng(0).normal(size=(1000, 64))
gpu = model.to("cuda")
Xg = cp.asarray(X)

F_gpu = fk.fisher(gpu, Xg, estimator="exact", shape="unit")   # blocks are CuPy arrays
F_cpu = fk.fisher(model, X, estimator="exact", shape="unit")
err = max(float(abs(cp.asnumpy(a) - b).max()) for a, b in zip(F_gpu.blocks, F_cpu.blocks))
print(f"unit-block Fisher on the GPU vs the CPU: max |difference| = {err:.2e}")

loss, g = gpu.gradient(Xg, cp.asarray(model.predict(X)))
step = fk.natgrad.natural_gradient(gpu, Xg, g, method="unit", damping=1e-3)
print(f"natural-gradient step on the GPU: {type(step).__module__}.{type(step).__name__}, "
      f"norm {float(cp.linalg.norm(step)):.3f}")
