"""On-policy actor-critic training on Gymnasium environments with four actor steps.

The loop (docs/maths/rank1.rst#rank1-policy-gradient, *reconstructed* by us from the paper's abstract and two
third-party summaries of Huo, Dash, Stoican, Kaski & Sun (2025); the paper's own algorithm
box was not available, so defaults and details are ours):

1. roll out ``n_steps`` steps in ``n_envs`` seeded parallel environments
   (``gymnasium.vector.SyncVectorEnv`` with same-step autoreset, so the last observation of a
   truncated episode is available for bootstrapping);
2. GAE advantages and value targets (:func:`fisherkit.rl.gae.gae`), advantages normalised
   over the batch;
3. the policy gradient g = (1/B) sum_b A_b psi_b, psi_b = d log pi(a_b|s_b) / d theta;
4. the actor step, by ``algo``:

   * ``"pg"``: advantage actor-critic (A2C-style): Adam (default) or SGD on g;
   * ``"rank1"``: the Sherman-Morrison natural step d = (lambda I + psi psi^T)^-1 g
     (:func:`fisherkit.linalg.rank1_solve`), theta += lr d, where psi is one sampled
     state-action score (``psi="single"``, the summaries' reading), the batch-mean score
     (``"mean"``) or the advantage-weighted mean score (``"advantage"``: psi = g, which
     makes d = g / (lambda + |g|^2), a normalised policy gradient); with ``max_kl`` set the
     step length is instead sqrt(2 max_kl / d^T F_hat d) (docs/maths/rank1.rst#rank1-policy-gradient);
   * ``"rankB"``: the exact damped empirical-Fisher step over the B batch scores,
     d = (lambda I + Psi^T Psi / B)^-1 g in sample space (:func:`fisherkit.linalg.rankb_solve`),
     theta += lr d (or the ``max_kl`` step length);
   * ``"cg"``: natural gradient by ``cg_iters`` conjugate-gradient iterations on exact
     policy Fisher-vector products (plus ``cg_damping`` I), scaled to the KL trust region
     sqrt(2 max_kl / d^T F d): TRPO's step *without* its backtracking line search;

5. the critic (an MLP with a unit-sigma Gaussian head, i.e. least squares) takes
   ``critic_epochs`` passes of Adam over minibatches of the value targets.

Rewards used for learning are divided by a running standard deviation of the discounted
return (``normalize_rewards``); the reported episode returns are always the raw ones.
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Callable, Iterator

import numpy as np

from .. import linalg as _linalg
from ..model import MLP
from .gae import gae
from .policies import Policy, make_policy

ALGOS = ("pg", "rank1", "rankB", "cg")
PSI_CHOICES = ("single", "mean", "advantage")

#: Defaults shared by all algorithms; ``lr``/``damping``/``max_kl`` default per algorithm.
DEFAULTS: dict[str, Any] = {
    "n_envs": 8,
    "n_steps": 64,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "hidden": (64, 64),
    "activation": "tanh",
    "lr": None,
    "damping": None,
    "psi": "single",
    "max_kl": None,
    "cg_iters": 10,
    "cg_damping": 0.1,
    "rank": None,
    "optimizer": "adam",
    "normalize_advantages": True,
    "normalize_rewards": True,
    "critic_lr": 1e-3,
    "critic_epochs": 5,
    "critic_minibatch": 128,
    "log_std": 0.0,
}

#: Per-algorithm defaults, from the step-size grids of benchmarks/results/rl_npg.md (tuned
#: values there: pg 3e-3 on all three envs; rank1 0.1 / 0.03 / 0.01 and rankB 1 / 1 / 0.3 on
#: CartPole / Acrobot / Pendulum; cg max_kl 0.03 / 0.03 / 0.003).
ALGO_DEFAULTS: dict[str, dict[str, Any]] = {
    "pg": {"lr": 3e-3},
    "rank1": {"lr": 3e-2, "damping": 0.1},
    "rankB": {"lr": 0.3, "damping": 0.1},
    "cg": {"max_kl": 0.01},
}


class TrainResult(Mapping):
    """What :func:`train` returns: attributes that are also mapping keys.

    Keys: env_id, algo, seed, hyperparameters, returns (episode returns in the order the
    episodes finished), steps (environment steps, over all parallel envs, when each finished),
    update_seconds (wall time of each whole update: advantages, actor step, critic fit),
    actor_seconds (wall time of each actor step alone), kl (mean KL(old || new) of each
    update on its batch), total_steps, wall_seconds, policy, critic.
    """

    def __init__(self, **fields: Any) -> None:
        self._fields = dict(fields)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_fields"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, key: str) -> Any:
        return self._fields[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def final_return(self, last: int = 10) -> float:
        """Mean return of the last `last` finished episodes (nan if none finished)."""
        r = np.asarray(self._fields["returns"], dtype=np.float64)
        return float(r[-last:].mean()) if r.size else float("nan")

    def __repr__(self) -> str:
        return (f"TrainResult(env_id={self['env_id']!r}, algo={self['algo']!r}, seed={self['seed']}, "
                f"episodes={len(self['returns'])}, final_return={self.final_return():.1f})")


class _Adam:
    def __init__(self, n: int, lr: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> None:
        self.lr, self.b1, self.b2, self.eps = lr, b1, b2, eps
        self.m = np.zeros(n)
        self.v = np.zeros(n)
        self.t = 0

    def step(self, grad: np.ndarray) -> np.ndarray:
        """The update to *subtract* for a gradient of a loss to minimise."""
        self.t += 1
        self.m = self.b1 * self.m + (1 - self.b1) * grad
        self.v = self.b2 * self.v + (1 - self.b2) * grad * grad
        mh = self.m / (1 - self.b1 ** self.t)
        vh = self.v / (1 - self.b2 ** self.t)
        return self.lr * mh / (np.sqrt(vh) + self.eps)


class _RewardScaler:
    """Divides rewards by the running standard deviation of the discounted return."""

    def __init__(self, n_envs: int, gamma: float) -> None:
        self.gamma = gamma
        self.ret = np.zeros(n_envs)
        self.count, self.mean, self.var = 1e-4, 0.0, 1.0

    def __call__(self, r: np.ndarray, ended: np.ndarray) -> np.ndarray:
        self.ret = self.ret * self.gamma + r
        n, m, v = self.ret.size, float(self.ret.mean()), float(self.ret.var())
        tot = self.count + n
        delta = m - self.mean
        self.var = (self.var * self.count + v * n + delta * delta * self.count * n / tot) / tot
        self.mean += delta * n / tot
        self.count = tot
        self.ret[ended] = 0.0
        return r / np.sqrt(self.var + 1e-8)


def conjugate_gradient(fvp: Callable[[np.ndarray], np.ndarray], b: np.ndarray, iters: int = 10,
                       tol: float = 1e-10) -> np.ndarray:
    """Approximately solve F x = b for symmetric positive definite F given only x -> F x:
    at most `iters` conjugate-gradient iterations (one product each), stopping early when
    the residual norm falls below tol * ``|b|``. Starts from x = 0."""
    x = np.zeros_like(b)
    r = b.copy()
    p = r.copy()
    rr = float(r @ r)
    stop = tol * tol * rr
    for _ in range(int(iters)):
        if rr <= stop:
            break
        Fp = fvp(p)
        alpha = rr / float(p @ Fp)
        x += alpha * p
        r -= alpha * Fp
        rr_new = float(r @ r)
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def natural_direction(policy: Policy, obs: np.ndarray, actions: Any, g: np.ndarray, algo: str, *,
                      damping: float = 0.1, psi: str = "single", index: int | None = None,
                      rng: np.random.Generator | None = None, rank: int | None = None, cg_iters: int = 10,
                      cg_damping: float = 0.1) -> tuple[np.ndarray, float]:
    """The actor direction d for ``algo`` in {"rank1", "rankB", "cg"} and d^T F_used d.

    ``g`` is the policy gradient (ascent). For "rank1", ``psi`` chooses the score (see the
    module docstring; ``index`` fixes the sampled pair for "single", else it is drawn from
    ``rng``); F_used = damping I + psi psi^T. For "rankB", F_used = damping I + Psi^T Psi / B
    over the batch scores (or ``rank`` of them, drawn from ``rng``). For "cg", F_used is the
    exact policy Fisher plus cg_damping I, solved by ``cg_iters`` CG iterations.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    n = obs.shape[0]
    if algo == "rank1":
        if psi == "single":
            i = int(rng.integers(n)) if index is None else int(index)
            vec = policy.scores(obs[i:i + 1], actions[i:i + 1])[0]
        elif psi == "mean":
            vec = policy.score_mean(obs, actions)
        elif psi == "advantage":
            vec = g
        else:
            raise ValueError(f"argument 'psi' must be one of {', '.join(PSI_CHOICES)}, got {psi!r}")
        d = _linalg.rank1_solve(vec, g, damping)
        return d, float(damping * (d @ d) + (vec @ d) ** 2)
    if algo == "rankB":
        idx = np.arange(n) if rank is None or rank >= n else rng.choice(n, int(rank), replace=False)
        Psi = policy.scores(obs[idx], actions[idx])
        d = _linalg.rankb_solve(Psi, g, damping)
        Pd = Psi @ d
        return d, float(damping * (d @ d) + (Pd @ Pd) / Psi.shape[0])
    if algo == "cg":
        def fvp(v: np.ndarray) -> np.ndarray:
            return policy.fisher_vector_product(obs, v) + cg_damping * v

        d = conjugate_gradient(fvp, g, cg_iters)
        return d, float(d @ fvp(d))
    raise ValueError(f"argument 'algo' must be one of rank1, rankB, cg here, got {algo!r}")


def _make_envs(env_id: str, n_envs: int) -> Any:
    import gymnasium as gym

    try:
        gym.spec(env_id)
    except gym.error.Error as exc:  # NameNotFound, VersionNotFound, ...: a message, not a traceback
        raise ValueError(f"unknown Gymnasium environment {env_id!r}: {exc}") from None
    fns = [lambda: gym.make(env_id) for _ in range(n_envs)]
    try:
        return gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    except (AttributeError, TypeError) as exc:  # pragma: no cover - depends on the installed gymnasium
        raise ImportError("fisherkit.rl needs gymnasium >= 1.1 (same-step autoreset)") from exc
    except gym.error.Error as exc:  # e.g. a missing extra (box2d, mujoco) of a registered environment
        raise ValueError(f"cannot make Gymnasium environment {env_id!r}: {exc}") from None


def train(env_id: str, algo: str = "rank1", steps: int = 100_000, seed: int = 0,
          callback: Callable[[dict[str, Any]], None] | None = None, **hyperparameters: Any) -> TrainResult:
    """Train an actor-critic on the Gymnasium environment ``env_id`` for ``steps`` env steps.

    Parameters
    ----------
    env_id : str
        A Gymnasium id with a 1-D Box observation space and Discrete or 1-D Box actions
        (CartPole-v1, Acrobot-v1, Pendulum-v1, ...).
    algo : "pg", "rank1", "rankB" or "cg"
        The actor step (module docstring; "rank1" follows docs/maths/rank1.rst#rank1-policy-gradient's *reconstructed*
        algorithm, not the paper's unavailable algorithm box).
    steps : int
        Environment steps over all parallel environments (rounded up to whole rollouts).
    seed : int
        Seeds the environments (seed + i for environment i), the networks and the sampling.
    callback : callable, optional
        Called after each update with a dict: update, step, episodes, mean_return (last 10).
    **hyperparameters
        Any key of ``DEFAULTS``: n_envs, n_steps (per env per update), gamma, gae_lambda,
        hidden, activation, lr (pg: Adam/SGD rate; rank1/rankB: theta += lr d), damping
        (lambda of rank1/rankB), psi ("single", "mean", "advantage"), max_kl (cg: trust
        region, default 0.01; rank1/rankB: if set, replaces lr by the KL step length),
        cg_iters, cg_damping, rank (rankB: scores used, default the whole batch), optimizer
        (pg: "adam" or "sgd"), normalize_advantages, normalize_rewards, critic_lr,
        critic_epochs, critic_minibatch, log_std (initial, Gaussian policies).

    Returns
    -------
    TrainResult (a Mapping; see its docstring).
    """
    if algo not in ALGOS:
        raise ValueError(f"argument 'algo' must be one of {', '.join(ALGOS)}, got {algo!r}")
    unknown = set(hyperparameters) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown hyperparameter(s): {', '.join(sorted(unknown))}; known: {', '.join(DEFAULTS)}")
    hp = dict(DEFAULTS)
    hp.update({k: v for k, v in ALGO_DEFAULTS[algo].items()})
    hp.update({k: v for k, v in hyperparameters.items() if v is not None})
    steps, seed = int(steps), int(seed)
    if steps < 1:
        raise ValueError(f"argument 'steps' must be >= 1, got {steps}")
    if hp["psi"] not in PSI_CHOICES:
        raise ValueError(f"hyperparameter 'psi' must be one of {', '.join(PSI_CHOICES)}, got {hp['psi']!r}")
    if hp["optimizer"] not in ("adam", "sgd"):
        raise ValueError(f"hyperparameter 'optimizer' must be 'adam' or 'sgd', got {hp['optimizer']!r}")
    n_envs, n_steps = int(hp["n_envs"]), int(hp["n_steps"])
    if n_envs < 1 or n_steps < 1:
        raise ValueError("hyperparameters 'n_envs' and 'n_steps' must be >= 1")
    gamma = float(hp["gamma"])

    envs = _make_envs(env_id, n_envs)
    try:
        obs_space, act_space = envs.single_observation_space, envs.single_action_space
        policy = make_policy(obs_space, act_space, hp["hidden"], hp["activation"], seed, hp["log_std"])
        critic = MLP.init([obs_space.shape[0], *map(int, hp["hidden"]), 1], hp["activation"], "gaussian",
                          seed=seed + 7919)
        rng = np.random.default_rng(seed)
        discrete = type(act_space).__name__ == "Discrete"
        actor_opt = _Adam(policy.n_params, float(hp["lr"])) if algo == "pg" and hp["optimizer"] == "adam" else None
        critic_opt = _Adam(critic.n_params, float(hp["critic_lr"]))
        scaler = _RewardScaler(n_envs, gamma) if hp["normalize_rewards"] else None

        obs_dim = obs_space.shape[0]
        buf_obs = np.empty((n_steps, n_envs, obs_dim))
        buf_act = np.empty((n_steps, n_envs), np.int64) if discrete else np.empty(
            (n_steps, n_envs, act_space.shape[0]))
        buf_rew = np.empty((n_steps, n_envs))
        buf_term = np.empty((n_steps, n_envs), bool)
        buf_trunc = np.empty((n_steps, n_envs), bool)
        final_obs = np.zeros((n_steps, n_envs, obs_dim))

        returns: list[float] = []
        ep_steps: list[int] = []
        update_seconds: list[float] = []
        actor_seconds: list[float] = []
        kls: list[float] = []
        ep_ret = np.zeros(n_envs)
        obs, _ = envs.reset(seed=seed)
        obs = np.asarray(obs, dtype=np.float64)
        step = 0
        update = 0
        t_start = time.perf_counter()
        while step < steps:
            for t in range(n_steps):
                a = policy.act(obs, rng)
                nxt, r, term, trunc, info = envs.step(policy.env_action(a))
                r = np.asarray(r, dtype=np.float64)
                term, trunc = np.asarray(term, bool), np.asarray(trunc, bool)
                ended = term | trunc
                buf_obs[t], buf_act[t], buf_term[t], buf_trunc[t] = obs, a, term, trunc
                buf_rew[t] = scaler(r, ended) if scaler is not None else r
                step += n_envs
                ep_ret += r
                if ended.any():
                    fo = info["final_obs"]
                    for i in np.flatnonzero(ended):
                        final_obs[t, i] = fo[i]
                        returns.append(float(ep_ret[i]))
                        ep_steps.append(step)
                    ep_ret[ended] = 0.0
                obs = np.asarray(nxt, dtype=np.float64)

            t0 = time.perf_counter()
            B = n_steps * n_envs
            X = buf_obs.reshape(B, obs_dim)
            A = buf_act.reshape(B, *buf_act.shape[2:])
            values = np.asarray(critic.forward(X))[:, 0].reshape(n_steps, n_envs)
            last = np.asarray(critic.forward(obs))[:, 0]
            fmask = buf_trunc & ~buf_term
            fvals = np.zeros((n_steps, n_envs))
            if fmask.any():
                fvals[fmask] = np.asarray(critic.forward(final_obs[fmask]))[:, 0]
            adv, ret = gae(buf_rew, values, last, buf_term, buf_trunc, fvals, gamma=gamma, lam=hp["gae_lambda"])
            adv = adv.reshape(B)
            if hp["normalize_advantages"] and B > 1:
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)

            ta = time.perf_counter()
            old = policy.distribution(X)
            theta = policy.params()
            g = policy.score_mean(X, A, adv)
            if algo == "pg":
                new = theta - actor_opt.step(-g) if actor_opt is not None else theta + float(hp["lr"]) * g
            else:
                d, dFd = natural_direction(policy, X, A, g, algo, damping=float(hp["damping"] if hp["damping"] is not None else 0.1),
                                           psi=hp["psi"], rng=rng, rank=hp["rank"], cg_iters=hp["cg_iters"],
                                           cg_damping=float(hp["cg_damping"]))
                if hp["max_kl"] is not None:
                    alpha = float(np.sqrt(2.0 * float(hp["max_kl"]) / max(dFd, 1e-300)))
                else:
                    alpha = float(hp["lr"])
                new = theta + alpha * d
            policy.set_params(new)
            actor_seconds.append(time.perf_counter() - ta)
            kls.append(policy.kl(X, old))

            # critic: least squares on the GAE value targets
            targets = ret.reshape(B, 1)
            mb = max(1, min(int(hp["critic_minibatch"]), B))
            for _ in range(int(hp["critic_epochs"])):
                perm = rng.permutation(B)
                for s in range(0, B, mb):
                    idx = perm[s:s + mb]
                    _, cg = critic.gradient(X[idx], targets[idx])
                    critic.set_flat_params(np.asarray(critic.flat_params()) - critic_opt.step(np.asarray(cg)))
            update_seconds.append(time.perf_counter() - t0)
            update += 1
            if callback is not None:
                recent = returns[-10:]
                callback({"update": update, "step": step, "steps": steps, "episodes": len(returns),
                          "mean_return": float(np.mean(recent)) if recent else float("nan"),
                          "elapsed": time.perf_counter() - t_start})
    finally:
        envs.close()
    return TrainResult(env_id=env_id, algo=algo, seed=seed, hyperparameters=hp, returns=returns, steps=ep_steps,
                       update_seconds=update_seconds, actor_seconds=actor_seconds, kl=kls, total_steps=step,
                       wall_seconds=time.perf_counter() - t_start, policy=policy, critic=critic)
