"""The ``fisherkit`` command: ``info``, ``demo``, and ``--cmake-dir`` for C++ users."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from .info import cmake_dir, include_dir, info


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fisherkit",
        description="Fisher information matrices of MLPs: estimators, variances, natural gradients.",
    )
    p.add_argument("--cmake-dir", action="store_true",
                   help="print the folder for find_package(fisherkit CONFIG) and exit")
    p.add_argument("--include-dir", action="store_true", help="print the C++ include folder and exit")
    sub = p.add_subparsers(dest="command")
    pi = sub.add_parser("info", help="print the build: version, BLAS, threads, CUDA")
    pi.add_argument("--json", action="store_true", help="machine-readable output")
    pd = sub.add_parser("demo", help="run the main job on the built-in data and print a report")
    pd.add_argument("--data", default="spirals", choices=["spirals", "digits"],
                    help="built-in spirals (default; generated, no downloads) or scikit-learn's digits")
    pd.add_argument("--seed", type=int, default=0)
    pd.add_argument("--quick", action="store_true", help="smaller sizes (for tests)")
    from .rl import cli as _rl_cli  # safe without gymnasium: it is imported when rl runs

    _rl_cli.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.cmake_dir:
        print(cmake_dir())
        return 0
    if args.include_dir:
        print(include_dir())
        return 0
    if args.command == "info":
        facts = info()
        if args.json:
            print(json.dumps(facts, indent=2))
        else:
            for k, v in facts.items():
                print(f"{k:>14}: {v}")
        return 0
    if args.command == "demo":
        from .demo import run

        return run(data=args.data, seed=args.seed, quick=args.quick, out=sys.stdout)
    if args.command == "rl":
        from .rl.cli import run as run_rl

        return run_rl(args)
    _parser().print_help()
    return 0
