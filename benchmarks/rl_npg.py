"""Rank-1 natural policy gradient against A2C-style PG, rank-B and CG/TRPO-style steps.

Protocol (issue 7; benchmarks/results/rl_npg.md): CartPole-v1, Acrobot-v1 and Pendulum-v1; the same
64-64 tanh actor and critic, 8 envs x 64 steps per update, GAE(0.99, 0.95), the same
environment-step budget per environment for every method; each method's step size is
tuned on a small grid with a tuning seed that is not an evaluation seed (the grid and its
results are written out); then N evaluation seeds per (env, method) with the tuned value.
Reported: mean +- std over seeds of the final return (mean of the last 10 episodes), the
environment steps at which the running mean of 10 episodes first reaches the threshold
(CartPole 475, Acrobot -100, Pendulum -250), and the median wall time per update (whole
update, and actor step alone).

    python benchmarks/rl_npg.py                 # full protocol (slow: hours on 2 cores)
    python benchmarks/rl_npg.py --quick         # 3 seeds, reduced budgets
    python benchmarks/rl_npg.py --quick --envs CartPole-v1 --no-tune

Writes rl_npg[_TAG].csv (per run), rl_npg[_TAG]_tuning.csv (the grid), rl_npg[_TAG]_table.md,
rl_npg[_TAG]_curves.json and rl_npg[_TAG].png into benchmarks/results (or --out); the tuning
criterion is the final return plus the mean return over the whole run (ties at the maximum
are broken toward faster learning). Not run by CI. Needs gymnasium (and matplotlib for the PNG).
"""
from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

import fisherkit
from fisherkit.rl import train

ALGOS = ("pg", "rank1", "rankB", "cg")
THRESHOLDS = {"CartPole-v1": 475.0, "Acrobot-v1": -100.0, "Pendulum-v1": -250.0}
BUDGET_FULL = {"CartPole-v1": 200_000, "Acrobot-v1": 500_000, "Pendulum-v1": 1_000_000}
BUDGET_QUICK = {"CartPole-v1": 60_000, "Acrobot-v1": 100_000, "Pendulum-v1": 100_000}
# the tuned knob of each method and its grid
GRID = {
    "pg": ("lr", [3e-4, 1e-3, 3e-3]),           # Adam learning rate
    "rank1": ("lr", [0.01, 0.03, 0.1]),          # theta += lr * (0.1 I + psi psi^T)^-1 g
    "rankB": ("lr", [0.1, 0.3, 1.0]),            # theta += lr * (0.1 I + Psi^T Psi / B)^-1 g
    "cg": ("max_kl", [0.003, 0.01, 0.03]),       # KL trust region of the CG step
}
TUNE_SEED = 1000


def steps_to_threshold(res, thr: float, k: int = 10) -> float:
    r = np.asarray(res["returns"], dtype=float)
    if r.size < k:
        return float("nan")
    run = np.convolve(r, np.ones(k) / k, mode="valid")
    hit = np.flatnonzero(run >= thr)
    return float(res["steps"][hit[0] + k - 1]) if hit.size else float("nan")


def one(env: str, algo: str, steps: int, seed: int, knob: str, value: float) -> dict:
    t = time.perf_counter()
    res = train(env, algo, steps=steps, seed=seed, **{knob: value})
    return {
        "env": env, "algo": algo, "seed": seed, knob: value, "knob": knob, "value": value,
        "final": res.final_return(10),
        "mean_all": float(np.mean(res["returns"])) if len(res["returns"]) else float("nan"),
        "to_thr": steps_to_threshold(res, THRESHOLDS.get(env, np.inf)),
        "upd_ms": 1e3 * float(np.median(res["update_seconds"])),
        "actor_ms": 1e3 * float(np.median(res["actor_seconds"])),
        "kl": float(np.median(res["kl"])),
        "wall_s": time.perf_counter() - t,
        "curve_steps": list(map(int, res["steps"])), "curve_returns": list(map(float, res["returns"])),
    }


def micro(reps: int = 20) -> str:
    """Best-of-`reps` wall time of each actor step on a fixed batch of 512 (8 envs x 64 steps),
    64-64 tanh policies: CartPole (4 obs, 2 actions) and Pendulum (3 obs, 1-D Gaussian)."""
    from fisherkit.rl import CategoricalPolicy, GaussianPolicy, natural_direction

    rows = ["| policy | P | score_mean (g) | rank1 direction | rankB direction (B=512) | "
            "cg direction (10 FVPs) | one FVP |", "|---|---|---|---|---|---|---|"]
    rng = np.random.default_rng(0)
    for name, pol in (("CartPole categorical", CategoricalPolicy.init(4, 2, seed=0)),
                      ("Pendulum Gaussian", GaussianPolicy.init(3, 1, seed=0))):
        X = rng.standard_normal((512, pol.obs_dim))
        A = pol.act(X, rng)
        adv = rng.standard_normal(512)
        g = pol.score_mean(X, A, adv)

        def best(fn):
            fn()
            ts = []
            for _ in range(reps):
                t = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t)
            return 1e3 * min(ts)

        t_g = best(lambda: pol.score_mean(X, A, adv))
        t_1 = best(lambda: natural_direction(pol, X, A, g, "rank1", damping=0.1, rng=rng))
        t_b = best(lambda: natural_direction(pol, X, A, g, "rankB", damping=0.1))
        t_c = best(lambda: natural_direction(pol, X, A, g, "cg", cg_iters=10))
        t_f = best(lambda: pol.fisher_vector_product(X, g))
        rows.append(f"| {name} | {pol.n_params} | {t_g:.2f} ms | {t_1:.3f} ms | {t_b:.1f} ms | {t_c:.1f} ms | "
                    f"{t_f:.2f} ms |")
    return "\n".join(rows)


def sweep(env: str, steps: int, seeds: int, out: Path, stem: str) -> str:
    """benchmarks/results/rl_npg.md: rank1 over damping lambda in {0.01, 0.1, 1} at a fixed ratio lr/lambda
    (0.3 and 1.0) and the three psi choices, against plain SGD policy gradient with lr equal to
    that ratio (the lambda -> infinity limit of the rank-1 step)."""
    rows = []
    configs = [("pg", {"optimizer": "sgd", "lr": ratio}, f"pg SGD lr={ratio:g}") for ratio in (0.3, 1.0)]
    for ratio in (0.3, 1.0):
        for lam in (0.01, 0.1, 1.0):
            for psi in ("single", "mean", "advantage"):
                configs.append(("rank1", {"damping": lam, "lr": ratio * lam, "psi": psi},
                                f"rank1 psi={psi} lambda={lam:g} lr={ratio * lam:g}"))
    lines = ["| config | final return (mean +- std) | mean return over the run | seeds reaching threshold |",
             "|---|---|---|---|"]
    for algo, hp, label in configs:
        fin, alls, hits = [], [], 0
        for s in range(seeds):
            res = train(env, algo, steps=steps, seed=s, **hp)
            fin.append(res.final_return(10))
            alls.append(float(np.mean(res["returns"])))
            hits += int(np.isfinite(steps_to_threshold(res, THRESHOLDS.get(env, np.inf))))
            rows.append({"config": label, "seed": s, "final": fin[-1], "mean_all": alls[-1]})
        line = (f"| {label} | {np.mean(fin):.1f} +- {np.std(fin, ddof=1) if seeds > 1 else 0:.1f} | "
                f"{np.mean(alls):.1f} | {hits}/{seeds} |")
        print(line, flush=True)
        lines.append(line)
    with open(out / f"{stem}_sweep.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["config", "seed", "final", "mean_all"])
        w.writeheader()
        w.writerows(rows)
    table = "\n".join(lines)
    (out / f"{stem}_sweep.md").write_text(f"<!-- {env}, {steps} steps, seeds 0-{seeds - 1} -->\n{table}\n")
    return table


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 seeds and the reduced budgets")
    ap.add_argument("--envs", default=",".join(THRESHOLDS), help="comma-separated env ids")
    ap.add_argument("--algos", default=",".join(ALGOS))
    ap.add_argument("--seeds", type=int, default=None, help="evaluation seeds (default 5, quick 3)")
    ap.add_argument("--steps", type=int, default=None, help="override the budget of every env")
    ap.add_argument("--no-tune", action="store_true", help="use the middle grid value, skip tuning")
    ap.add_argument("--tune-steps-frac", type=float, default=1.0, help="tuning budget as a fraction of the budget")
    ap.add_argument("--threads", type=int, default=1, help="fisherkit threads (default 1: small matrices)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--rank1-kl", action="store_true",
                    help="rank1 with the KL step length sqrt(2 max_kl / d^T F_hat d) (grid over max_kl)")
    ap.add_argument("--sweep", action="store_true",
                    help="only the rank-1 damping/psi sweep (benchmarks/results/rl_npg.md) on the first env")
    ap.add_argument("--micro-only", action="store_true", help="only the fixed-batch actor-step timings")
    ap.add_argument("--tag", default="", help="suffix for the output names (rl_npg_<tag>.*)")
    args = ap.parse_args(argv)
    fisherkit.set_num_threads(args.threads)
    if args.rank1_kl:
        GRID["rank1"] = ("max_kl", [0.003, 0.01, 0.03])
    envs = [e for e in args.envs.split(",") if e]
    algos = [a for a in args.algos.split(",") if a]
    n_seeds = args.seeds or (3 if args.quick else 5)
    budgets = BUDGET_QUICK if args.quick else BUDGET_FULL
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    stem = "rl_npg" + (f"_{args.tag}" if args.tag else "")
    if args.sweep:
        env = envs[0]
        sweep(env, args.steps or budgets.get(env, 100_000), n_seeds, out, stem)
        return 0
    mic = micro()
    print(mic, flush=True)
    (out / f"{stem}_micro.md").write_text(
        f"<!-- benchmarks/rl_npg.py, fisherkit threads {args.threads}, best of 20 -->\n{mic}\n")
    if args.micro_only:
        return 0

    tuning, chosen, runs = [], {}, []
    for env in envs:
        steps = args.steps or budgets.get(env, 100_000)
        for algo in algos:
            knob, grid = GRID[algo]
            if args.no_tune:
                chosen[(env, algo)] = grid[1]
            else:
                tsteps = max(1, int(steps * args.tune_steps_frac))
                scores = []
                for v in grid:
                    r = one(env, algo, tsteps, TUNE_SEED, knob, v)
                    tuning.append(r)
                    scores.append(r["final"] + r["mean_all"])  # final return, ties broken by speed
                    print(f"tune {env} {algo} {knob}={v:g}: final {r['final']:.1f} ({r['wall_s']:.0f}s)", flush=True)
                chosen[(env, algo)] = grid[int(np.nanargmax(scores))]
            for s in range(n_seeds):
                r = one(env, algo, steps, s, knob, chosen[(env, algo)])
                runs.append(r)
                print(f"eval {env} {algo} {knob}={chosen[(env, algo)]:g} seed {s}: final {r['final']:.1f} "
                      f"to_thr {r['to_thr']:.0f} upd {r['upd_ms']:.1f} ms actor {r['actor_ms']:.2f} ms "
                      f"({r['wall_s']:.0f}s)", flush=True)

    fields = ["env", "algo", "seed", "knob", "value", "final", "mean_all", "to_thr", "upd_ms", "actor_ms", "kl", "wall_s"]
    for name, rows in ((f"{stem}.csv", runs), (f"{stem}_tuning.csv", tuning)):
        with open(out / name, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
    with open(out / f"{stem}_curves.json", "w") as fh:
        json.dump([{k: r[k] for k in ("env", "algo", "seed", "curve_steps", "curve_returns")} for r in runs], fh)

    lines = ["| env | method | tuned | final return (mean +- std) | seeds reaching threshold | "
             "steps to threshold (mean of those) | update ms (median) | actor step ms (median) |",
             "|---|---|---|---|---|---|---|---|"]
    for env in envs:
        for algo in algos:
            rs = [r for r in runs if r["env"] == env and r["algo"] == algo]
            f = np.array([r["final"] for r in rs])
            th = np.array([r["to_thr"] for r in rs])
            hit = th[np.isfinite(th)]
            knob = GRID[algo][0]
            lines.append(
                f"| {env} | {algo} | {knob}={chosen[(env, algo)]:g} | {f.mean():.1f} +- {f.std(ddof=1) if f.size > 1 else 0:.1f} | "
                f"{hit.size}/{th.size} | {hit.mean():.0f} |" if hit.size else
                f"| {env} | {algo} | {knob}={chosen[(env, algo)]:g} | {f.mean():.1f} +- {f.std(ddof=1) if f.size > 1 else 0:.1f} | "
                f"0/{th.size} | - |")
            lines[-1] += (f" {np.median([r['upd_ms'] for r in rs]):.1f} | "
                          f"{np.median([r['actor_ms'] for r in rs]):.2f} |")
    table = "\n".join(lines)
    print(table)
    (out / f"{stem}_table.md").write_text(
        f"<!-- generated by benchmarks/rl_npg.py {' '.join(argv or sys.argv[1:])}; "
        f"{platform.machine()} {platform.python_version()}, fisherkit {fisherkit.__version__}, "
        f"threads {args.threads}, total {time.perf_counter() - t_all:.0f} s -->\n" + table + "\n")

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return 0
    fig, axes = plt.subplots(1, len(envs), figsize=(5 * len(envs), 3.6), squeeze=False)
    for ax, env in zip(axes[0], envs):
        steps = args.steps or budgets.get(env, 100_000)
        grid_x = np.linspace(0, steps, 60)
        for algo in algos:
            curves = []
            for r in runs:
                if r["env"] == env and r["algo"] == algo and len(r["curve_returns"]) >= 10:
                    s, v = np.asarray(r["curve_steps"]), np.asarray(r["curve_returns"])
                    sm = np.convolve(v, np.ones(10) / 10, mode="valid")
                    curves.append(np.interp(grid_x, s[9:], sm, left=np.nan))
            if curves:
                c = np.array(curves)
                m = np.nanmean(c, axis=0)
                sd = np.nanstd(c, axis=0)
                ax.plot(grid_x, m, label=f"{algo} ({GRID[algo][0]}={chosen[(env, algo)]:g})")
                ax.fill_between(grid_x, m - sd, m + sd, alpha=0.15)
        if env in THRESHOLDS:
            ax.axhline(THRESHOLDS[env], color="k", lw=0.5, ls="--")
        ax.set_title(f"{env} ({n_seeds} seeds, mean +- std)")
        ax.set_xlabel("environment steps")
        ax.set_ylabel("return (mean of 10 episodes)")
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(out / f"{stem}.png", dpi=110)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
