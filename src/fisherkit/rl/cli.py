"""``fisherkit rl``: train an actor-critic on a Gymnasium environment from the command line.

    fisherkit rl --env CartPole-v1 --algo rank1 --steps 100000 --seed 0 [--out DIR]

Prints a plain-text progress bar (updated in place), a summary, and writes the learning
curve to ``DIR/rl_<env>_<algo>_seed<seed>.csv`` (episode, env step, return) and, when
matplotlib is installed, a ``.png`` next to it.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any, TextIO

import numpy as np


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``rl`` sub-command on an argparse sub-parsers object."""
    from .trainer import ALGOS, PSI_CHOICES

    p = subparsers.add_parser("rl", help="train an actor-critic with (natural) policy gradients on Gymnasium",
                              description="On-policy actor-critic on a Gymnasium environment; the actor step is "
                                          "plain policy gradient (pg), the rank-1 Sherman-Morrison natural step "
                                          "(rank1), the rank-B damped empirical-Fisher step (rankB) or conjugate "
                                          "gradient on exact Fisher-vector products (cg). Needs gymnasium.")
    p.add_argument("--env", default="CartPole-v1", help="Gymnasium environment id (default CartPole-v1)")
    p.add_argument("--algo", default="rank1", choices=list(ALGOS), help="actor step (default rank1)")
    p.add_argument("--steps", type=int, default=100_000, help="environment steps (default 100000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=".", help="folder for the learning-curve CSV/PNG (default: current)")
    p.add_argument("--lr", type=float, default=None, help="actor step size (default per algorithm)")
    p.add_argument("--damping", type=float, default=None, help="lambda of rank1/rankB (default 0.1)")
    p.add_argument("--psi", default=None, choices=list(PSI_CHOICES), help="rank1 score choice (default single)")
    p.add_argument("--max-kl", type=float, default=None, help="KL step length (cg default 0.01; opt-in otherwise)")
    p.add_argument("--n-envs", type=int, default=None, help="parallel environments (default 8)")
    p.add_argument("--n-steps", type=int, default=None, help="rollout steps per environment per update (64)")
    p.add_argument("--threads", type=int, default=None,
                   help="fisherkit threads (default: unchanged; 1 is usually fastest for 64-wide networks)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


class _Progress:
    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self.stream, self.width = stream, width

    def __call__(self, info: dict[str, Any]) -> None:
        # the last rollout may run past the requested count (whole rollouts); the bar stops at it
        step = min(info["step"], info["steps"])
        frac = step / max(1, info["steps"])
        filled = int(round(frac * self.width))
        bar = "#" * filled + "-" * (self.width - filled)
        mr = info["mean_return"]
        mr_s = "   n/a" if np.isnan(mr) else f"{mr:8.1f}"
        self.stream.write(f"\r[{bar}] {step:>9d}/{info['steps']} steps  {info['episodes']:>6d} episodes  "
                          f"mean return (last 10) {mr_s}  {info['elapsed']:6.1f}s")
        self.stream.flush()


def write_curve(result: Any, out_dir: str | Path) -> tuple[Path, Path | None]:
    """Write ``rl_<env>_<algo>_seed<seed>.csv`` (and a PNG if matplotlib imports) into out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"rl_{result['env_id'].replace('/', '_')}_{result['algo']}_seed{result['seed']}"
    csv_path = out / f"{stem}.csv"
    with open(csv_path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["episode", "env_step", "return"])
        for i, (s, r) in enumerate(zip(result["steps"], result["returns"])):
            w.writerow([i + 1, s, f"{r:.6g}"])
    png_path = None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return csv_path, None
    steps = np.asarray(result["steps"], dtype=float)
    rets = np.asarray(result["returns"], dtype=float)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if rets.size:
        ax.plot(steps, rets, ".", ms=2, alpha=0.3, label="episode return")
        k = min(10, rets.size)
        smooth = np.convolve(rets, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1:], smooth, "-", label=f"mean of last {k}")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("return")
    ax.set_title(f"{result['env_id']} {result['algo']} seed {result['seed']}")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    png_path = out / f"{stem}.png"
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return csv_path, png_path


def run(args: argparse.Namespace, stream: TextIO | None = None) -> int:
    """Execute ``fisherkit rl`` with parsed arguments; returns the exit status."""
    stream = stream if stream is not None else sys.stdout
    try:
        import gymnasium  # noqa: F401
    except ImportError:
        print("fisherkit rl needs gymnasium: pip install 'fisherkit[rl]' (or pip install gymnasium)",
              file=sys.stderr)
        return 2
    from .trainer import train

    hp = {"lr": args.lr, "damping": args.damping, "psi": args.psi, "max_kl": args.max_kl,
          "n_envs": args.n_envs, "n_steps": args.n_steps}
    hp = {k: v for k, v in hp.items() if v is not None}
    if getattr(args, "threads", None) is not None:
        if args.threads < 1:
            print("fisherkit rl: --threads must be >= 1", file=sys.stderr)
            return 2
        from ..info import set_num_threads

        set_num_threads(args.threads)
    progress = None if args.quiet else _Progress(stream)
    try:
        result = train(args.env, args.algo, steps=args.steps, seed=args.seed, callback=progress, **hp)
    except (ValueError, TypeError) as exc:
        print(f"\nfisherkit rl: {exc}", file=sys.stderr)
        return 2
    if progress is not None:
        stream.write("\n")
    ups = np.asarray(result["update_seconds"])
    acts = np.asarray(result["actor_seconds"])
    rets = np.asarray(result["returns"])
    print(f"env {result['env_id']}  algo {result['algo']}  seed {result['seed']}", file=stream)
    print(f"  environment steps  {result['total_steps']}", file=stream)
    print(f"  episodes           {rets.size}", file=stream)
    if rets.size:
        print(f"  final return       {result.final_return(10):.2f} (mean of the last {min(10, rets.size)} episodes)",
              file=stream)
        print(f"  best return        {rets.max():.2f}", file=stream)
    print(f"  updates            {ups.size}  (median {1e3 * np.median(ups):.2f} ms per update, "
          f"actor step {1e3 * np.median(acts):.2f} ms)", file=stream)
    print(f"  wall time          {result['wall_seconds']:.1f} s", file=stream)
    csv_path, png_path = write_curve(result, args.out)
    print(f"  learning curve     {csv_path}" + (f" and {png_path}" if png_path else " (no PNG: matplotlib missing)"),
          file=stream)
    return 0
