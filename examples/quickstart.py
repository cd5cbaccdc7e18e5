"""fisherkit in one page: the Fisher information of an MLP, how good a sampled estimate
is, and a natural-gradient step, on the built-in spirals data.

    python examples/quickstart.py
"""
import numpy as np

import fisherkit
from fisherkit.datasets import spirals

X, y = spirals(n=600, classes=3, seed=0)
model = fisherkit.MLP.init([2, 32, 32, 3], activation="tanh", head="categorical", seed=0)

# 1. the exact Fisher, in two shapes that fit in memory
F = fisherkit.fisher(model, X, estimator="exact", shape="diag")
U = fisherkit.fisher(model, X, estimator="exact", shape="unit")
print(f"{model}\nexact diagonal: trace {F.trace():.4f}; unit blocks agree: {np.allclose(U.diagonal(), F.values)}")

# 2. a sampled estimate with its closed-form standard error, and which estimator to use
S = 8
F1, se = fisherkit.fisher(model, X, estimator="score", shape="diag", samples=S, seed=1, with_stderr=True)
z = (F1.values - F.values) / np.where(se.values > 0, se.values, np.inf)
print(f"score estimate (S={S}): {np.mean(np.abs(z) < 3):.0%} of entries within 3 standard errors of the exact value")
print(fisherkit.recommend(model, X).table())

# 3. natural-gradient training with the unit-wise closed form
opt = fisherkit.optim.NaturalGradient(model, lr=0.1, method="unit-correlated", damping=1e-2)
losses = [opt.step(X, y) for _ in range(30)]
print(f"natural gradient (unit-correlated): loss {losses[0]:.3f} -> {losses[-1]:.3f} in 30 steps")
