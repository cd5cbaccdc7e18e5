"""How unit-wise block diagonal is the Fisher of a random MLP as it widens? Amari, Karakida
and Oizumi (2019) show that the Fisher of a wide random network is unit-wise block diagonal
up to off-block terms of small order; this measures it with ``fisherkit.block_structure``.

    python benchmarks/fig_block_diagonal.py            # a few minutes on 2 cores
    python benchmarks/fig_block_diagonal.py --widths 32,64,128 --inputs 800   # quicker

Random tanh networks with 3 hidden layers of width n (W ~ N(0, 1.5 / fan-in), b ~ N(0, 0.01)),
Gaussian inputs x ~ N(0, I_n) and a Gaussian head with unit variance, n in 32..512, with
many outputs (K = n) and with one (K = 1). Per class of parameter pairs (block_structure's
classes: same unit, other units of the layer with the same or another input index, other
layers, adjacent layers) it reports:

* the RMS of the normalised entries C_ab = F_ab / sqrt(F_aa F_bb), from sampled pairs with
  the Monte Carlo bias of the N-input mean removed; and the slope of log RMS against log n;
* the normalised off-block mass: the class's sum of C_ab^2 (its number of pairs times the
  RMS squared) over the in-block sum (the P diagonal ones plus the same-unit pairs), i.e.
  the off-block to in-block mass of the correlation matrix of the Fisher; and its slope.

The sampled estimate is checked against every pair of the dense Fisher at n = 32.
Writes benchmarks/results/fig_block_diagonal.png and fig_block_diagonal.md.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np

import fisherkit as fk
from fisherkit.structure import CLASSES

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
DEPTH = 3


def class_sizes(sizes: list[int]) -> dict[str, float]:
    """Ordered pairs (a != b) per class for layer widths `sizes`."""
    units = [(sizes[l + 1], sizes[l] + 1) for l in range(len(sizes) - 1)]  # (m units, block size k)
    D = [m * k for m, k in units]
    P = sum(D)
    same_input = sum(k * m * (m - 1) for m, k in units)
    other_input = sum(m * (m - 1) * k * (k - 1) for m, k in units)
    return {"same_unit": float(sum(m * k * (k - 1) for m, k in units)),
            "same_layer": float(same_input + other_input),
            "same_layer_same_input": float(same_input), "same_layer_other_input": float(other_input),
            "across_layers": float(P * P - sum(d * d for d in D)),
            "adjacent_layers": float(2 * sum(a * b for a, b in zip(D[:-1], D[1:]))), "P": float(P)}


def network(n: int, K: int, seed: int) -> fk.MLP:
    return fk.MLP.init([n] * (DEPTH + 1) + [K], activation="tanh", head="gaussian", seed=seed,
                       weight_std=np.sqrt(1.5), bias_std=0.1)


def masses(rms: dict[str, float], sizes: list[int]) -> dict[str, float]:
    """Normalised mass of each off-block class over the in-block mass."""
    cs = class_sizes(sizes)
    inb = cs["P"] + cs["same_unit"] * rms["same_unit"] ** 2
    # the same-layer mass from its two sub-classes, whose entries differ by orders of magnitude
    out = {"same_layer": (cs["same_layer_same_input"] * rms["same_layer_same_input"] ** 2
                          + cs["same_layer_other_input"] * rms["same_layer_other_input"] ** 2) / inb,
           "across_layers": cs["across_layers"] * rms["across_layers"] ** 2 / inb}
    out["off_block"] = out["same_layer"] + out["across_layers"]
    return out


def slope(ns: list[int], v: list[float]) -> float:
    ok = np.isfinite(v) & (np.asarray(v) > 0)
    return float(np.polyfit(np.log(np.asarray(ns)[ok]), np.log(np.asarray(v)[ok]), 1)[0]) if ok.sum() >= 2 else \
        float("nan")


def exact_check(n: int, inputs: int, pairs: int, seed: int) -> list[str]:
    """Every pair of the dense Fisher against the sampled estimate, same inputs."""
    model = network(n, n, seed)
    X = np.random.default_rng(seed + 1).standard_normal((inputs, n))
    full = fk.block_structure(model, X)
    samp = fk.block_structure(model, X, pairs=pairs, seed=seed)
    m_full = masses(full.rms, model.sizes)
    m_samp = masses(samp.rms, model.sizes)
    rows = ["| class | RMS, every pair | RMS, sampled | normalised mass, every pair | normalised mass, sampled |",
            "|---|---|---|---|---|"]
    for c in CLASSES:
        mf = m_full.get(c, float("nan"))
        ms = m_samp.get(c, float("nan"))
        rows.append(f"| {c} | {full.rms[c]:.4f} | {samp.rms[c]:.4f} | {mf:.3g} | {ms:.3g} |")
    rows.append(f"| off-block total | | | {m_full['off_block']:.3g} | {m_samp['off_block']:.3g} |")
    rows.append("")
    rows.append(f"The sampled off-block mass is {100 * (m_samp['off_block'] / m_full['off_block'] - 1):+.0f}% off the "
                "value from every pair: the masses in the table above carry an error of that order (the slopes less, since "
                "every width is sampled the same way).")
    rows.append("")
    rows.append(f"(The raw mass ratios of block_structure, sum F_ab^2 / in-block sum F_ab^2, for this network: "
                f"same layer {full.ratio['same_layer']:.3g}, across layers {full.ratio['across_layers']:.3g}.)")
    return rows


def figure(ns, res, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.ticker
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    for K, style in (("n", "-"), ("1", "--")):
        for i, c in enumerate(("same_unit", "same_layer_same_input", "same_layer_other_input", "adjacent_layers")):
            a1.loglog(ns, [res[K][n]["rms"][c] for n in ns], style, marker="o", color=f"C{i}",
                      label=f"{c.replace('_', ' ')}, K={K}")
        for i, c in enumerate(("same_layer", "across_layers", "off_block")):
            a2.loglog(ns, [res[K][n]["mass"][c] for n in ns], style, marker="s", color=f"C{i + 4}",
                      label=f"{c.replace('_', ' ')}, K={K}")
    ref = np.asarray(ns, float)
    a1.loglog(ref, 0.5 * res["n"][ns[0]]["rms"]["same_layer_same_input"] * (ref / ref[0]) ** -0.5, ":", color="0.5",
              label="slope -1/2")
    a1.set_xlabel("width n")
    a1.set_ylabel("RMS of F_ab / sqrt(F_aa F_bb)")
    a1.set_title("normalised entries per class of pairs")
    a1.legend(fontsize="x-small", frameon=False, ncol=2)
    for ax in (a1, a2):
        ax.set_xticks(ns)
        ax.set_xticklabels([str(n) for n in ns])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    a2.set_xlabel("width n")
    a2.set_ylabel("off-block / in-block mass (normalised)")
    a2.set_title("off-block mass of the correlation matrix")
    a2.legend(fontsize="x-small", frameon=False)
    fig.suptitle(f"random tanh MLPs, {DEPTH} hidden layers of width n, K outputs (solid K = n, dashed K = 1)",
                 fontsize="medium")
    fig.savefig(path, dpi=72)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--widths", default="32,64,128,256,512")
    p.add_argument("--inputs", type=int, default=1500)
    p.add_argument("--pairs", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=RESULTS)
    args = p.parse_args(argv)
    ns = [int(w) for w in args.widths.split(",")]
    t0 = time.perf_counter()
    res: dict[str, dict[int, dict]] = {"n": {}, "1": {}}
    for n in ns:
        for K in ("n", "1"):
            model = network(n, n if K == "n" else 1, args.seed)
            X = np.random.default_rng(args.seed + 1).standard_normal((args.inputs, n))
            t = time.perf_counter()
            bs = fk.block_structure(model, X, pairs=args.pairs, seed=args.seed)
            res[K][n] = {"rms": bs.rms, "mass": masses(bs.rms, model.sizes), "P": model.n_params}
            print(f"n={n:4d} K={K}: P={model.n_params:8d}  " + "  ".join(f"{c} {bs.rms[c]:.4f}" for c in CLASSES)
                  + f"  off-block mass {res[K][n]['mass']['off_block']:.3g}  ({time.perf_counter() - t:.1f} s)")
    check = exact_check(ns[0], min(args.inputs, 500), args.pairs, args.seed)
    os.makedirs(args.out, exist_ok=True)
    png = os.path.join(args.out, "fig_block_diagonal.png")
    figure(ns, res, png)
    lines = ["# Unit-wise block diagonality of the Fisher of random MLPs", "",
             f"`python benchmarks/fig_block_diagonal.py` (widths {args.widths}, {args.inputs} inputs, {args.pairs} "
             f"sampled pairs per class, seed {args.seed}; {time.perf_counter() - t0:.0f} s). Figure: "
             "`fig_block_diagonal.png`.", "",
             f"Random tanh MLPs with {DEPTH} hidden layers of width n (W ~ N(0, 1.5/fan-in), b ~ N(0, 0.01)), "
             "x ~ N(0, I_n), Gaussian head (unit variance), K = n or K = 1 outputs. RMS: of the normalised entries "
             "F_ab / sqrt(F_aa F_bb) over sampled pairs of each class (Monte Carlo bias removed); mass: the class's "
             "sum of squared normalised entries (pairs x RMS^2) over the in-block sum (P diagonal ones plus the "
             "same-unit pairs).", "",
             "| n | K | P | same unit | other units, same input | other units, other input | adjacent layers | "
             "mass: same layer | mass: other layers | mass: off-block |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for K in ("n", "1"):
        for n in ns:
            r = res[K][n]
            lines.append(f"| {n} | {n if K == 'n' else 1} | {r['P']} | {r['rms']['same_unit']:.4f} | "
                         f"{r['rms']['same_layer_same_input']:.4f} | {r['rms']['same_layer_other_input']:.4f} | "
                         f"{r['rms']['adjacent_layers']:.4f} | {r['mass']['same_layer']:.3g} | "
                         f"{r['mass']['across_layers']:.3g} | {r['mass']['off_block']:.3g} |")
    lines += ["", "Fitted slopes of log(value) against log(n):", "",
              "| K | same unit | other units, same input | other units, other input | adjacent layers | "
              "mass: same layer | mass: other layers | mass: off-block |", "|---|---|---|---|---|---|---|---|"]
    slopes = {}
    for K in ("n", "1"):
        sl = {c: slope(ns, [res[K][n]["rms"][c] for n in ns]) for c in CLASSES}
        sm = {c: slope(ns, [res[K][n]["mass"][c] for n in ns]) for c in ("same_layer", "across_layers", "off_block")}
        slopes[K] = (sl, sm)
        lines.append(f"| {K} | {sl['same_unit']:.2f} | {sl['same_layer_same_input']:.2f} | "
                     f"{sl['same_layer_other_input']:.2f} | {sl['adjacent_layers']:.2f} | {sm['same_layer']:.2f} | "
                     f"{sm['across_layers']:.2f} | {sm['off_block']:.2f} |")
    sl_n, sm_n = slopes["n"]
    sl_1, sm_1 = slopes["1"]
    lines += ["", f"## The sampled estimate against every pair (n = {ns[0]}, K = {ns[0]}, "
              f"{min(args.inputs, 500)} inputs)", ""] + check
    lines += ["", "## Against the paper's claim", "",
              "Amari, Karakida and Oizumi state that the Fisher of a wide random network is unit-wise block "
              "diagonal up to off-block terms of small order, between layers and between units of a layer.", "",
              f"* **Element-wise, with many outputs: {'matches' if sl_n['same_layer_same_input'] <= -0.3 else 'does NOT match'}.** "
              f"With K = n the largest off-block class (other units of the layer, same input index) has slope "
              f"{sl_n['same_layer_same_input']:.2f} in log-log (n^-1/2 would be -0.5), other units with other inputs "
              f"{sl_n['same_layer_other_input']:.2f}, adjacent layers {sl_n['adjacent_layers']:.2f}.",
              f"* **With one output: the documented caveat, "
              f"{'reproduced' if sl_1['same_layer_same_input'] > -0.15 else 'NOT reproduced'}.** With K = 1 the "
              f"same-input class has slope {sl_1['same_layer_same_input']:.2f} (RMS about "
              f"{res['1'][ns[-1]]['rms']['same_layer_same_input']:.2f} at n = {ns[-1]}): all units see one coherent "
              "backpropagated signal, so unit-wise block diagonality is not an element-wise property of "
              f"scalar-output networks; the normalised off-block mass grows with slope {sm_1['off_block']:.2f}.",
              f"* **As mass rather than element size: "
              f"{'it does not decay' if sm_n['off_block'] > -0.25 else 'it decays'}.** With K = n the normalised "
              f"off-block mass has slope {sm_n['off_block']:.2f} (same layer {sm_n['same_layer']:.2f}, other layers "
              f"{sm_n['across_layers']:.2f}) and is {res['n'][ns[-1]]['mass']['off_block']:.2g} times the in-block "
              f"mass at n = {ns[-1]}: a row has O(n) times more off-block pairs than in-block ones, which offsets "
              "the shrinking entries. Small elements do not make the off-block part a small matrix, which is one "
              "reason why the unit-block natural gradient is not the exact one (the preconditioners section of "
              "fisherkit report measures the gap on a given network).",
              "* Not compared: the paper's own numbers and order symbol, which we could not read."]
    md = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "fig_block_diagonal.md"), "w") as fh:
        fh.write(md)
    print(md)
    print(f"wrote {png} ({os.path.getsize(png) // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
