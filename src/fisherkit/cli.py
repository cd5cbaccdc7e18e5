"""The ``fisherkit`` command: ``report``, ``demo``, ``rl``, ``info``, and ``--cmake-dir`` for C++ users."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from ._loader import _core
from .info import cmake_dir, include_dir, info


def _positive_int_list(text: str) -> list[int]:
    try:
        sizes = [int(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer widths such as 784,128,10, got {text!r}")
    if len(sizes) < 2 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected at least two positive widths, got {text!r}")
    return sizes


def _add_report_parser(sub: argparse._SubParsersAction) -> None:
    from .report import ESTIMATORS

    pr = sub.add_parser(
        "report", help="a Fisher health report of your MLP on your data (report.html, results.npz, summary.json)",
        description="Write a self-contained page on the Fisher information of MODEL over DATA: the exact diagonal "
                    "and unit blocks, the spectrum, how noisy the sampled estimators are, the unit-wise block "
                    "structure and natural-gradient preconditioners, within a time limit.")
    pr.add_argument("model", metavar="MODEL",
                    help="a fisherkit .npz (MLP.to_npz), or a torch.save file of an nn.Sequential MLP or its "
                         "state_dict (needs torch; a state_dict also needs --arch and --activation)")
    pr.add_argument("data", metavar="DATA",
                    help=".npy (memory-mapped, read in chunks), .npz (arrays X and y) or .csv (numeric columns, "
                         "optional header line)")
    pr.add_argument("--labels", metavar="COLUMN|KEY",
                    help="the label column(s) of a .csv (header name or index) or .npy (index), comma-separated; "
                         "the label array of a .npz (default: y, labels, target)")
    pr.add_argument("--out", metavar="DIR", default="fisherkit-report",
                    help="folder to write into (default ./fisherkit-report; a previous report there is replaced)")
    pr.add_argument("--estimators", nargs="+", choices=ESTIMATORS, default=list(ESTIMATORS),
                    help="sampled estimators whose quality is measured (default: both)")
    pr.add_argument("--samples", type=int, default=1, metavar="S",
                    help="label draws per input the estimator standard deviations are for (default 1)")
    pr.add_argument("--max-seconds", type=float, default=300.0, metavar="T",
                    help="time limit for the whole report; sections use fewer inputs or are skipped to fit "
                         "(default 300, at least 5)")
    pr.add_argument("--seed", type=int, default=0, help="seed of input subsets and label draws (default 0)")
    pr.add_argument("--quiet", action="store_true", help="no progress bar")
    pr.add_argument("--arch", type=_positive_int_list, metavar="N0,N1,...",
                    help="layer widths of a PyTorch state_dict MODEL")
    pr.add_argument("--activation", metavar="NAME[,NAME...]",
                    help="hidden activation(s) of a PyTorch state_dict MODEL: identity, relu, tanh, sigmoid, softplus, erf, gelu, silu")
    pr.add_argument("--head", choices=("categorical", "gaussian", "bernoulli", "poisson"),
                    help="output head of a PyTorch MODEL (default categorical)")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fisherkit",
        description="Fisher information matrices of MLPs: estimators, variances, natural gradients.",
    )
    p.add_argument("--version", action="version", version=f"fisherkit {_core.version()}")
    p.add_argument("--cmake-dir", action="store_true",
                   help="print the folder for find_package(fisherkit CONFIG) and exit")
    p.add_argument("--include-dir", action="store_true", help="print the C++ include folder and exit")
    sub = p.add_subparsers(dest="command")
    _add_report_parser(sub)
    pd = sub.add_parser("demo", help="train a network on built-in data and write its report to ./fisherkit-demo")
    pd.add_argument("--data", default="spirals", choices=["spirals", "digits"],
                    help="built-in spirals (default; generated, no downloads) or scikit-learn's digits")
    pd.add_argument("--seed", type=int, default=0)
    pd.add_argument("--out", metavar="DIR", default="fisherkit-demo", help="folder to write into (default ./fisherkit-demo)")
    pd.add_argument("--max-seconds", type=float, default=120.0, metavar="T", help="time limit of the report (default 120)")
    pd.add_argument("--quick", action="store_true", help="smaller data and network (for tests)")
    pd.add_argument("--quiet", action="store_true", help="no progress bar")
    pi = sub.add_parser("info", help="print the build: version, BLAS, threads, CUDA")
    pi.add_argument("--json", action="store_true", help="machine-readable output")
    from .rl import cli as _rl_cli  # safe without gymnasium: it is imported when rl runs

    _rl_cli.add_parser(sub)
    return p


def _run_report(args: argparse.Namespace) -> int:
    from ._data import InputError, load_data, load_model
    from .report import report

    model = load_model(args.model, arch=args.arch, activation=args.activation, head=args.head)
    X, y, desc = load_data(args.data, labels=args.labels)
    if y is None and X.shape[1] == model.input_dim + (1 if model.head == "categorical" else model.output_dim):
        raise InputError(f"DATA '{args.data}' has {X.shape[1]} columns but the model takes {model.input_dim} inputs; "
                         "if the others are the labels, name them with --labels COLUMN")
    labels = f", labels {desc['labels']}" if desc.get("labels") else ""
    rep = report(model, X, y, out=args.out, estimators=args.estimators, samples=args.samples,
                 max_seconds=args.max_seconds, seed=args.seed, quiet=args.quiet,
                 source=f"{desc['source']}, {desc['format']}{labels}")
    print(rep.summary())
    from pathlib import Path

    print(f"page: {(Path(args.out) / 'report.html').resolve()}")
    return 0


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
    if args.command in ("report", "demo"):
        from ._data import InputError

        try:
            if args.command == "report":
                return _run_report(args)
            from .demo import run

            return run(data=args.data, seed=args.seed, quick=args.quick, out_dir=args.out,
                       max_seconds=args.max_seconds, quiet=args.quiet, out=sys.stdout)
        except (InputError, ImportError) as exc:
            print(f"fisherkit {args.command}: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"fisherkit {args.command}: interrupted; nothing was written", file=sys.stderr)
            return 130
    if args.command == "rl":
        from .rl.cli import run as run_rl

        return run_rl(args)
    _parser().print_help()
    return 0
