"""Stochastic policies over fisherkit MLPs: categorical (Discrete actions) and Gaussian (Box).

Both expose the same flat-parameter interface, so the trainer's actor steps (plain policy
gradient, rank-1 / rank-B / conjugate-gradient natural gradients) are written once:

* ``params()`` / ``set_params(theta)``: the flat parameter vector theta (P,).
* ``log_prob(obs, actions)``: log pi_theta(a_n | s_n), (N,).
* ``scores(obs, actions)``: psi_n = d log pi_theta(a_n | s_n) / d theta, (N, P).
* ``score_mean(obs, actions, weights)``: (1/N) sum_n w_n psi_n, (P,), without forming the
  N x P scores (one backward pass): the policy gradient when w_n are advantages.
* ``fisher_vector_product(obs, v)``: the exact policy Fisher
  F = (1/N) sum_n E_{a ~ pi(.|s_n)}[psi psi^T] times v, (P,).
* ``kl(obs, old)``: mean KL(pi_old(.|s_n) || pi_theta(.|s_n)) against a snapshot from
  ``distribution(obs)``.

Weighted scores and Fisher products use a vector-Jacobian product: a copy of the network
with a Gaussian head of unit standard deviation has the mean-NLL gradient
(1/N) sum_n J_n^T (h_n - y_n), so labels y_n = h_n + r_n give -(1/N) sum_n J_n^T r_n for any
output-space residuals r_n (J_n = dh_n / dtheta, the output Jacobian).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .. import heads as _heads
from ..fisher import fisher_vector_product as _fisher_vector_product
from ..model import MLP

_LOG_2PI = float(np.log(2.0 * np.pi))


def _scale_last_layer(net: MLP, factor: float) -> None:
    theta = net.flat_params()
    ws, bs = net.param_slices()[-1]
    theta[ws] *= factor
    theta[bs] *= factor
    net.set_flat_params(theta)


def _obs(net: MLP, obs: Any) -> np.ndarray:
    X = np.asarray(obs, dtype=net.dtype)
    if X.ndim == 1:
        X = X[None, :]
    if X.ndim != 2 or X.shape[1] != net.input_dim:
        raise ValueError(f"argument 'obs' must have shape (N, {net.input_dim}), got {tuple(np.shape(obs))}")
    return X


class _VJP:
    """Vector-Jacobian products of an MLP's outputs through a unit-sigma Gaussian twin."""

    def __init__(self, net: MLP) -> None:
        self._net = net
        self._twin = MLP(net.layers, net.activations, "gaussian", sigma=1.0, dtype=net.dtype)

    def _sync(self) -> None:
        self._twin.set_flat_params(self._net.flat_params())

    def mean(self, X: np.ndarray, H: np.ndarray, R: np.ndarray) -> np.ndarray:
        """(1/N) sum_n J_n^T r_n, (P,)."""
        self._sync()
        _, g = self._twin.gradient(X, H + R)
        return -g

    def rows(self, X: np.ndarray, H: np.ndarray, R: np.ndarray) -> np.ndarray:
        """J_n^T r_n per sample, (N, P)."""
        self._sync()
        return -self._twin.per_sample_grads(X, H + R)


def _jvp(net: MLP, X: np.ndarray, v: np.ndarray) -> np.ndarray:
    """J_n v per sample, (N, C): the MLP's forward-mode product (Jacobian rows as fallback)."""
    if hasattr(net, "jvp"):
        return net.jvp(X, v)
    out = np.empty((X.shape[0], net.output_dim), dtype=net.dtype)  # pragma: no cover - old builds
    for i in range(0, X.shape[0], 128):
        out[i:i + 128] = net.jacobian(X[i:i + 128]) @ v
    return out


class Policy:
    """Common interface; see the module docstring. Subclasses: CategoricalPolicy, GaussianPolicy."""

    net: MLP

    @property
    def n_params(self) -> int:
        raise NotImplementedError

    @property
    def obs_dim(self) -> int:
        return self.net.input_dim

    def params(self) -> np.ndarray:
        raise NotImplementedError

    def set_params(self, theta: Any) -> None:
        raise NotImplementedError

    def _check_theta(self, theta: Any, name: str = "theta") -> np.ndarray:
        t = np.asarray(theta, dtype=self.net.dtype)
        if t.shape != (self.n_params,):
            raise ValueError(f"argument '{name}' must have shape ({self.n_params},), got {tuple(t.shape)}")
        return t


class CategoricalPolicy(Policy):
    """pi(a | s) = softmax(h(s))_a with h the logits of an MLP with a categorical head.

    Scores psi_n = d log pi(a_n|s_n)/d theta = J_n^T (e_{a_n} - p_n), i.e. minus the
    model's per-sample NLL gradients at the taken actions; the exact policy Fisher is the
    model's Fisher, (1/N) sum_n J_n^T (diag p_n - p_n p_n^T) J_n.
    """

    def __init__(self, net: MLP) -> None:
        if not isinstance(net, MLP) or net.head != "categorical":
            raise ValueError("argument 'net' must be a fisherkit.MLP with a categorical head")
        self.net = net
        self._vjp = _VJP(net)

    @classmethod
    def init(cls, obs_dim: int, n_actions: int, hidden: Sequence[int] = (64, 64), activation: str = "tanh",
             seed: int | None = 0, out_scale: float = 0.01, dtype: Any = np.float64) -> "CategoricalPolicy":
        """A fresh policy: MLP ``[obs_dim, *hidden, n_actions]``, last layer scaled by `out_scale`
        (a near-uniform initial policy)."""
        net = MLP.init([int(obs_dim), *map(int, hidden), int(n_actions)], activation, "categorical", seed=seed,
                       dtype=dtype)
        _scale_last_layer(net, out_scale)
        return cls(net)

    @property
    def n_actions(self) -> int:
        return self.net.output_dim

    @property
    def n_params(self) -> int:
        return self.net.n_params

    def params(self) -> np.ndarray:
        return np.array(self.net.flat_params())

    def set_params(self, theta: Any) -> None:
        self.net.set_flat_params(self._check_theta(theta))

    def _actions(self, actions: Any, n: int) -> np.ndarray:
        a = np.asarray(actions)
        if a.shape not in ((n,), (n, 1)):
            raise ValueError(f"argument 'actions' must have shape ({n},), got {a.shape}")
        a = a.reshape(n)
        if a.dtype.kind not in "iu" or (n and (a.min() < 0 or a.max() >= self.n_actions)):
            raise ValueError(f"argument 'actions' must hold integers in [0, {self.n_actions})")
        return a

    def distribution(self, obs: Any) -> dict[str, np.ndarray]:
        """{'probs': (N, K)} at the current parameters."""
        return {"probs": np.asarray(_heads.mean("categorical", self.net.forward(_obs(self.net, obs))))}

    def act(self, obs: Any, rng: np.random.Generator, deterministic: bool = False) -> np.ndarray:
        """One action per row (int64), drawn by inverse CDF from `rng` (or the argmax)."""
        p = self.distribution(obs)["probs"]
        if deterministic:
            return p.argmax(axis=1).astype(np.int64)
        u = rng.random((p.shape[0], 1))
        return np.minimum((np.cumsum(p, axis=1) < u).sum(axis=1), p.shape[1] - 1).astype(np.int64)

    def env_action(self, actions: np.ndarray) -> np.ndarray:
        return actions

    def log_prob(self, obs: Any, actions: Any) -> np.ndarray:
        X = _obs(self.net, obs)
        return np.asarray(self.net.log_likelihood(X, self._actions(actions, X.shape[0])))

    def scores(self, obs: Any, actions: Any) -> np.ndarray:
        X = _obs(self.net, obs)
        return -np.asarray(self.net.per_sample_grads(X, self._actions(actions, X.shape[0])))

    def score_mean(self, obs: Any, actions: Any, weights: Any | None = None) -> np.ndarray:
        X = _obs(self.net, obs)
        n = X.shape[0]
        a = self._actions(actions, n)
        w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64).reshape(n)
        H = np.asarray(self.net.forward(X))
        p = np.asarray(_heads.mean("categorical", H))
        R = -p
        R[np.arange(n), a] += 1.0
        return self._vjp.mean(X, H, R * w[:, None])

    def fisher_vector_product(self, obs: Any, v: Any) -> np.ndarray:
        X = _obs(self.net, obs)
        v = self._check_theta(v, "v")
        return np.asarray(_fisher_vector_product(self.net, X, v))  # the compiled, streamed exact FVP

    def kl(self, obs: Any, old: dict[str, np.ndarray]) -> float:
        new = self.distribution(obs)["probs"]
        po = old["probs"]
        tiny = np.finfo(np.float64).tiny
        return float(np.mean(np.sum(po * (np.log(np.maximum(po, tiny)) - np.log(np.maximum(new, tiny))), axis=1)))

    def entropy(self, obs: Any) -> float:
        p = self.distribution(obs)["probs"]
        return float(np.mean(-np.sum(p * np.log(np.maximum(p, np.finfo(np.float64).tiny)), axis=1)))


class GaussianPolicy(Policy):
    """pi(a | s) = N(mu(s), diag(exp(2 log_std))) with mu an MLP and a state-independent
    log standard deviation vector held here.

    Parameters theta = [network parameters (flat order), log_std (A)]. Scores:
    d log pi / d theta_net = J_n^T ((a_n - mu_n) / sigma^2) and
    d log pi / d log_std_j = (a_nj - mu_nj)^2 / sigma_j^2 - 1. The exact Fisher is
    block-diagonal: (1/N) sum_n J_n^T diag(sigma^-2) J_n for the network and 2 I for log_std.
    Actions are sampled unbounded; ``env_action`` clips them to the action box.
    """

    def __init__(self, net: MLP, log_std: Any, low: Any = None, high: Any = None) -> None:
        if not isinstance(net, MLP):
            raise ValueError("argument 'net' must be a fisherkit.MLP")
        self.net = net
        ls = np.array(log_std, dtype=np.float64).reshape(-1)
        if ls.shape != (net.output_dim,) or not np.all(np.isfinite(ls)):
            raise ValueError(f"argument 'log_std' must be {net.output_dim} finite numbers")
        self.log_std = ls
        self.low = None if low is None else np.asarray(low, dtype=np.float64)
        self.high = None if high is None else np.asarray(high, dtype=np.float64)
        self._vjp = _VJP(net)

    @classmethod
    def init(cls, obs_dim: int, action_dim: int, hidden: Sequence[int] = (64, 64), activation: str = "tanh",
             seed: int | None = 0, out_scale: float = 0.01, log_std: float = 0.0, low: Any = None,
             high: Any = None, dtype: Any = np.float64) -> "GaussianPolicy":
        """A fresh policy: mean MLP ``[obs_dim, *hidden, action_dim]`` (last layer scaled by
        `out_scale`) and log_std filled with `log_std`."""
        net = MLP.init([int(obs_dim), *map(int, hidden), int(action_dim)], activation, "gaussian", seed=seed,
                       dtype=dtype)
        _scale_last_layer(net, out_scale)
        return cls(net, np.full(int(action_dim), float(log_std)), low, high)

    @property
    def action_dim(self) -> int:
        return self.net.output_dim

    @property
    def n_params(self) -> int:
        return self.net.n_params + self.action_dim

    def params(self) -> np.ndarray:
        return np.concatenate([np.asarray(self.net.flat_params()), self.log_std])

    def set_params(self, theta: Any) -> None:
        t = self._check_theta(theta)
        self.net.set_flat_params(t[: self.net.n_params])
        self.log_std = np.array(t[self.net.n_params:], dtype=np.float64)

    def _actions(self, actions: Any, n: int) -> np.ndarray:
        a = np.asarray(actions, dtype=np.float64)
        if a.ndim == 1 and self.action_dim == 1 and a.shape[0] == n:
            a = a[:, None]
        if a.shape != (n, self.action_dim):
            raise ValueError(f"argument 'actions' must have shape ({n}, {self.action_dim}), got {a.shape}")
        return a

    def distribution(self, obs: Any) -> dict[str, np.ndarray]:
        """{'mean': (N, A), 'log_std': (A,)} at the current parameters."""
        return {"mean": np.asarray(self.net.forward(_obs(self.net, obs))), "log_std": self.log_std.copy()}

    def act(self, obs: Any, rng: np.random.Generator, deterministic: bool = False) -> np.ndarray:
        mu = self.distribution(obs)["mean"]
        if deterministic:
            return mu
        return mu + np.exp(self.log_std) * rng.standard_normal(mu.shape)

    def env_action(self, actions: np.ndarray) -> np.ndarray:
        if self.low is None or self.high is None:
            return actions
        return np.clip(actions, self.low, self.high)

    def log_prob(self, obs: Any, actions: Any) -> np.ndarray:
        X = _obs(self.net, obs)
        a = self._actions(actions, X.shape[0])
        z = (a - np.asarray(self.net.forward(X))) * np.exp(-self.log_std)
        return np.sum(-0.5 * z * z - self.log_std - 0.5 * _LOG_2PI, axis=1)

    def _residuals(self, X: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        H = np.asarray(self.net.forward(X))
        inv_var = np.exp(-2.0 * self.log_std)
        diff = a - H
        return H, diff * inv_var, diff * diff * inv_var - 1.0

    def scores(self, obs: Any, actions: Any) -> np.ndarray:
        X = _obs(self.net, obs)
        H, r_mu, r_ls = self._residuals(X, self._actions(actions, X.shape[0]))
        return np.concatenate([self._vjp.rows(X, H, r_mu), r_ls], axis=1)

    def score_mean(self, obs: Any, actions: Any, weights: Any | None = None) -> np.ndarray:
        X = _obs(self.net, obs)
        n = X.shape[0]
        w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64).reshape(n)
        H, r_mu, r_ls = self._residuals(X, self._actions(actions, n))
        return np.concatenate([self._vjp.mean(X, H, r_mu * w[:, None]), (w @ r_ls) / n])

    def fisher_vector_product(self, obs: Any, v: Any) -> np.ndarray:
        X = _obs(self.net, obs)
        v = self._check_theta(v, "v")
        p = self.net.n_params
        H = np.asarray(self.net.forward(X))
        u = np.asarray(_jvp(self.net, X, np.ascontiguousarray(v[:p])))
        return np.concatenate([self._vjp.mean(X, H, u * np.exp(-2.0 * self.log_std)), 2.0 * v[p:]])

    def kl(self, obs: Any, old: dict[str, np.ndarray]) -> float:
        new_mu = self.distribution(obs)["mean"]
        ls_o, ls_n = old["log_std"], self.log_std
        var_o, var_n = np.exp(2 * ls_o), np.exp(2 * ls_n)
        per = ls_n - ls_o + (var_o + (old["mean"] - new_mu) ** 2) / (2 * var_n) - 0.5
        return float(np.mean(np.sum(per, axis=1)))

    def entropy(self, obs: Any = None) -> float:
        return float(np.sum(self.log_std + 0.5 * (1.0 + _LOG_2PI)))


def make_policy(observation_space: Any, action_space: Any, hidden: Sequence[int] = (64, 64),
                activation: str = "tanh", seed: int | None = 0, log_std: float = 0.0) -> Policy:
    """The policy for a Gymnasium (Box observation, Discrete or Box action) pair of spaces."""
    shape = getattr(observation_space, "shape", None)
    if shape is None or len(shape) != 1 or type(observation_space).__name__ != "Box":
        raise ValueError(f"observations must be a 1-D Box space, got {observation_space}")
    kind = type(action_space).__name__
    if kind == "Discrete":
        return CategoricalPolicy.init(shape[0], int(action_space.n), hidden, activation, seed)
    if kind == "Box" and len(action_space.shape) == 1:
        return GaussianPolicy.init(shape[0], action_space.shape[0], hidden, activation, seed, log_std=log_std,
                                   low=action_space.low, high=action_space.high)
    raise ValueError(f"actions must be a Discrete or 1-D Box space, got {action_space}")
