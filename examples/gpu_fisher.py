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

V_gpu = fk.variance(gpu, Xg, estimator="score", shape="diag")   # closed form, on the device
V_cpu = fk.variance(model, X, estimator="score", shape="diag")
rel = float(abs(cp.asnumpy(V_gpu.values) - V_cpu.values).max() / abs(V_cpu.values).max())
print(f"score-estimator variance on the GPU vs the CPU: max relative difference = {rel:.2e}")

# natural gradients run on NumPy models: move the model back for the step
loss, g = gpu.gradient(Xg, cp.asarray(model.predict(X)))
step = fk.natgrad.natural_gradient(gpu.to("cpu"), X, cp.asnumpy(g), method="unit", damping=1e-3)
print(f"unit natural-gradient step (CPU) from the GPU gradient: norm {float(np.linalg.norm(step)):.3f}")
