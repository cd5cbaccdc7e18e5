"""Generalised advantage estimation (GAE) over a batch of vectorised-environment rollouts.

Conventions (docs/maths/rank1.rst#rank1-policy-gradient). A rollout holds T steps of E parallel environments.
Step t of environment e observed s_t, took a_t, received r_t, and then the episode either
went on, *terminated* (a true terminal state: no value after it) or was *truncated* (a time
limit: the state after it still has a value, V(s_final), which is bootstrapped).

    delta_t = r_t + gamma * V_next_t - V(s_t)
    V_next_t = 0                      if terminated at t
             = V(s_final at t)        if truncated (and not terminated) at t
             = V(s_{t+1})             otherwise (V(s_T) = last_values for t = T - 1)
    A_t      = delta_t + gamma * lam * (1 - ended_t) * A_{t+1},  ended_t = terminated or truncated
    R_t      = A_t + V(s_t)           (the critic's regression target)

The recursion runs backwards over time and is vectorised over the E environments.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def _as_2d(name: str, a: Any, shape: tuple[int, int] | None, dtype: Any) -> np.ndarray:
    arr = np.asarray(a, dtype=dtype)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"argument '{name}' must have shape (T, E) or (T,), got {tuple(np.shape(a))}")
    if shape is not None and arr.shape != shape:
        raise ValueError(f"argument '{name}' must have shape {shape} (like 'rewards'), got {arr.shape}")
    return arr


def gae(
    rewards: Any,
    values: Any,
    last_values: Any,
    terminated: Any,
    truncated: Any | None = None,
    final_values: Any | None = None,
    *,
    gamma: float = 0.99,
    lam: float = 0.95,
) -> tuple[np.ndarray, np.ndarray]:
    """Advantages and value targets by GAE(gamma, lam).

    Parameters
    ----------
    rewards, values : arrays (T, E) or (T,)
        r_t and V(s_t) for each step and environment.
    last_values : array (E,) or scalar
        V(s_T), the value of the observation after the last step (ignored for environments
        whose last step ended an episode).
    terminated : bool array (T, E) or (T,)
        True where the episode reached a terminal state at step t (no bootstrap).
    truncated : bool array (T, E) or (T,), optional
        True where the episode was cut by a time limit at step t (bootstrap from
        ``final_values``). Default: never.
    final_values : array (T, E) or (T,), optional
        V(s_final) of the last observation of a truncated episode; read only where
        ``truncated & ~terminated``. Default: zeros (no bootstrap at truncation).
    gamma, lam : float
        Discount in [0, 1] and GAE parameter in [0, 1].

    Returns
    -------
    advantages, returns : float64 arrays with the shape of ``rewards``.
    """
    squeeze = np.ndim(rewards) == 1
    if not (0.0 <= float(gamma) <= 1.0):
        raise ValueError(f"argument 'gamma' must lie in [0, 1], got {gamma}")
    if not (0.0 <= float(lam) <= 1.0):
        raise ValueError(f"argument 'lam' must lie in [0, 1], got {lam}")
    r = _as_2d("rewards", rewards, None, np.float64)
    shape = r.shape
    v = _as_2d("values", values, shape, np.float64)
    term = _as_2d("terminated", terminated, shape, bool)
    trunc = np.zeros(shape, bool) if truncated is None else _as_2d("truncated", truncated, shape, bool)
    fv = np.zeros(shape) if final_values is None else _as_2d("final_values", final_values, shape, np.float64)
    last = np.broadcast_to(np.asarray(last_values, dtype=np.float64), (shape[1],))
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(v)) and np.all(np.isfinite(last))):
        raise ValueError("arguments 'rewards', 'values' and 'last_values' must be finite")

    T = shape[0]
    # value of the state after step t, with the episode-end rules of the module docstring
    v_next = np.empty(shape)
    v_next[:-1] = v[1:]
    v_next[-1] = last
    v_next = np.where(trunc & ~term, fv, v_next)
    v_next = np.where(term, 0.0, v_next)
    delta = r + gamma * v_next - v
    carry = (1.0 - (term | trunc)) * (gamma * lam)
    adv = np.empty(shape)
    running = np.zeros(shape[1])
    for t in range(T - 1, -1, -1):  # the recursion in time, vectorised over environments
        running = delta[t] + carry[t] * running
        adv[t] = running
    ret = adv + v
    if squeeze:
        return adv[:, 0], ret[:, 0]
    return adv, ret
