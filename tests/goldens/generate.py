"""Golden outputs of fisherkit's public functions, for refactors that must not change results.

    python tests/goldens/generate.py record before.npz     # on the code before the change
    python tests/goldens/generate.py compare before.npz    # on the code after it

``record`` calls every public function on a fixed set of networks (every head, every
activation, float32 and float64, every estimator and shape) and saves the outputs to an
``.npz``. ``compare`` recomputes them and reports, per key, the largest relative difference
(scaled by the largest magnitude of the recorded array). It exits non-zero when a float64
key differs by more than ``--tol64`` (default 1e-13) or a float32 key by more than
``--tol32`` (default 1e-5), or when a key is missing. The goldens are not committed: they are
regenerated from the code they guard.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Iterator

import numpy as np

import fisherkit as fk
from fisherkit import linalg, meanfield, natgrad

NETS = [
    # name, sizes, activations, head, sigma
    ("cat_tanh", [5, 7, 3], ["tanh"], "categorical", 1.0),
    ("gauss_relu_sigmoid", [4, 6, 5, 3], ["relu", "sigmoid"], "gaussian", 0.7),
    ("bern_softplus_tanh_erf", [3, 5, 4, 6, 2], ["softplus", "tanh", "erf"], "bernoulli", 1.0),
    ("pois_tanh", [2, 1, 3], ["tanh"], "poisson", 1.0),
    ("cat_identity_relu", [6, 4, 5, 4], ["identity", "relu"], "categorical", 1.0),
    ("gauss_linear", [3, 2], [], "gaussian", 1.3),
]
ESTIMATORS = ("exact", "score", "hessian", "empirical")
SHAPES = ("full", "layer", "unit", "diag")


def _flat(obj: Any) -> np.ndarray:
    """A result as one float64 vector (matrix objects through their blocks)."""
    if isinstance(obj, fk.FisherMatrix):
        return np.concatenate([np.asarray(b, dtype=np.float64).ravel() for b in obj.blocks])
    if isinstance(obj, (list, tuple)):
        return np.concatenate([_flat(o) for o in obj]) if obj else np.zeros(0)
    return np.asarray(obj, dtype=np.float64).ravel()


def cases() -> Iterator[tuple[str, Callable[[], Any]]]:
    for name, sizes, acts, head, sigma in NETS:
        for dt in (np.float64, np.float32):
            tag = f"{name}/{np.dtype(dt).name}"
            m = fk.MLP.init(sizes, activation=acts or "tanh", head=head, seed=len(name), dtype=dt,
                            sigma=sigma, bias_std=0.3)
            rng = np.random.default_rng(len(name) + 1)
            X = rng.normal(size=(23, sizes[0])).astype(dt)
            y = fk.heads.sample(head, m.forward(X), seed=5, sigma=sigma)[:, 0]
            v = rng.normal(size=m.n_params).astype(dt)
            V = rng.normal(size=(m.n_params, 3)).astype(dt)
            yield f"{tag}/forward", lambda m=m, X=X: m.forward(X, chunk=5)
            yield f"{tag}/predict", lambda m=m, X=X: m.predict(X)
            yield f"{tag}/log_likelihood", lambda m=m, X=X, y=y: m.log_likelihood(X, y, chunk=4)
            yield f"{tag}/gradient", lambda m=m, X=X, y=y: np.append(m.gradient(X, y, chunk=6)[1], m.gradient(X, y)[0])
            yield f"{tag}/per_sample_grads", lambda m=m, X=X, y=y: m.per_sample_grads(X, y, chunk=7)
            yield f"{tag}/jacobian", lambda m=m, X=X: m.jacobian(X[:5])
            yield f"{tag}/jvp", lambda m=m, X=X, v=v: m.jvp(X, v, second_order=True, chunk=6)
            yield f"{tag}/fvp", lambda m=m, X=X, v=v: fk.fisher_vector_product(m, X, v)
            yield f"{tag}/fvp_k", lambda m=m, X=X, V=V: fk.fisher_vector_product(m, X, V)
            for est in ESTIMATORS:
                for shape in SHAPES:
                    yield (f"{tag}/fisher/{est}/{shape}",
                           lambda m=m, X=X, y=y, est=est, shape=shape:
                           fk.fisher(m, X, y, estimator=est, shape=shape, samples=3, seed=11, chunk=7))
            for est in ("score", "hessian"):
                for shape in ("diag", "unit", "layer", "full"):
                    yield (f"{tag}/variance/{est}/{shape}",
                           lambda m=m, X=X, est=est, shape=shape:
                           fk.variance(m, X, estimator=est, shape=shape, samples=2, chunk=8))
                yield (f"{tag}/variance/{est}/diag_pop",
                       lambda m=m, X=X, est=est: fk.variance(m, X, estimator=est, shape="diag", population=True))
                yield (f"{tag}/variance/{est}/trace",
                       lambda m=m, X=X, est=est: fk.variance(m, X[:9], estimator=est, shape="trace"))
                yield (f"{tag}/variance_bounds/{est}",
                       lambda m=m, X=X, est=est: fk.variance_bounds(m, X, estimator=est))
                yield (f"{tag}/directional_variance/{est}",
                       lambda m=m, X=X, v=v, est=est: fk.directional_variance(m, X, v, est, population=True))
                yield (f"{tag}/samples_needed/{est}",
                       lambda m=m, X=X, est=est: fk.samples_needed(m, X, 0.3, 0.9, est, per_parameter=True))
            yield f"{tag}/covariance/unit", lambda m=m, X=X: fk.covariance(m, X, shape="unit")
            yield f"{tag}/covariance/layer", lambda m=m, X=X: fk.covariance(m, X, shape="layer")

            def rec(m=m, X=X) -> np.ndarray:
                r = fk.recommend(m, X, shape="unit")
                return np.concatenate([r.v_score, r.v_hessian, r.cov, r.alpha, r.v_mix, r.hessian_wins])

            yield f"{tag}/recommend", rec
            yield (f"{tag}/monte_carlo_variance",
                   lambda m=m, X=X: fk.monte_carlo_variance(m, X, "score", "unit", replicates=3, seed=2))
            g = m.gradient(X, y)[1]
            for method in natgrad.METHODS:
                for est in natgrad.ESTIMATORS:
                    if method == "full" and est == "bpm":
                        continue
                    yield (f"{tag}/natgrad/{method}/{est}",
                           lambda m=m, X=X, y=y, g=g, method=method, est=est:
                           natgrad.natural_gradient(m, X, g, method=method, damping=0.1, estimator=est, y=y,
                                                    samples=2, seed=3))
            yield (f"{tag}/natgrad/unit_sample_space",
                   lambda m=m, X=X, g=g: natgrad.natural_gradient(m, X[:3], g, method="unit", damping=0.1))
            g2, b2 = natgrad.unit_weights(m, X, estimator="score", samples=2, seed=4)
            yield f"{tag}/unit_weights", lambda g2=g2, b2=b2: list(g2) + list(b2)
            yield f"{tag}/layer_inputs", lambda m=m, X=X: natgrad.layer_inputs(m, X)
            if m.n_params <= 80:
                def bs(m=m, X=X) -> np.ndarray:
                    r = fk.block_structure(m, X)
                    return np.array([r.rms[c] for c in r.rms] + [r.ratio[c] for c in r.ratio])

                yield f"{tag}/block_structure", bs

            def bs_sampled(m=m, X=X) -> np.ndarray:
                r = fk.block_structure(m, X, pairs=20, seed=1, chunk=6)
                return np.array([r.rms[c] for c in r.rms])

            yield f"{tag}/block_structure_sampled", bs_sampled
    rng = np.random.default_rng(9)
    for dt in (np.float64, np.float32):
        d = rng.uniform(0.5, 2, (4, 6)).astype(dt)
        U = rng.normal(size=(4, 6, 2)).astype(dt)
        S = rng.normal(size=(4, 2, 2)).astype(dt)
        r = rng.normal(size=(4, 6)).astype(dt)
        tag = np.dtype(dt).name
        yield f"linalg/{tag}/dpr2_solve", lambda: linalg.dpr2_solve(d, U, S, r, damping=0.3)
        yield f"linalg/{tag}/dpr2_inverse", lambda: linalg.dpr2_inverse(d, U, S, damping=0.3)
        psi = rng.normal(size=(3, 7)).astype(dt)
        gg = rng.normal(size=(3, 7)).astype(dt)
        yield f"linalg/{tag}/rank1_solve", lambda: linalg.rank1_solve(psi, gg, 0.5)
        yield f"linalg/{tag}/rankb_solve", lambda: linalg.rankb_solve(psi, gg, 0.5)
    for act in meanfield.ACTIVATIONS:
        s = np.linspace(0.0, 3.0, 7)
        c = np.linspace(-1.0, 1.0, 7)
        yield f"meanfield/{act}/unit_moments", lambda act=act: meanfield.unit_moments(act, s, c)
        yield f"meanfield/{act}/forward", lambda act=act: list(meanfield.meanfield_forward(1.5, 0.1, act, 3))


def record(path: str) -> int:
    out = {}
    for key, fn in cases():
        out[key] = _flat(fn())
    np.savez_compressed(path, **out)
    print(f"recorded {len(out)} outputs to {path}")
    return 0


def compare(path: str, tol64: float, tol32: float) -> int:
    gold = np.load(path)
    seen, bad, worst = set(), [], {"float64": 0.0, "float32": 0.0}
    for key, fn in cases():
        seen.add(key)
        if key not in gold:
            bad.append(f"{key}: not in the goldens")
            continue
        want = gold[key]
        got = _flat(fn())
        if got.shape != want.shape:
            bad.append(f"{key}: shape {got.shape} != {want.shape}")
            continue
        finite = np.isfinite(want)
        scale = max(float(np.abs(want[finite]).max(initial=0.0)), 1e-300)
        # NaN and Inf entries must be reproduced exactly (NaN where NaN was recorded)
        same = (~finite) & ((got == want) | (np.isnan(got) & np.isnan(want)))
        diff = np.where(same, 0.0, np.abs(got - want))
        diff = np.where(np.isnan(diff), np.inf, diff)
        rel = float(diff.max(initial=0.0)) / scale if want.size else 0.0
        kind = "float32" if "/float32" in key else "float64"
        tol = tol32 if kind == "float32" else tol64
        worst[kind] = max(worst[kind], rel)
        if not rel <= tol:
            bad.append(f"{key}: max relative difference {rel:.3e} > {tol:.0e}")
    missing = sorted(set(gold.files) - seen)
    bad += [f"{k}: recorded but no longer computed" for k in missing]
    print(f"compared {len(seen)} outputs; worst relative difference: float64 {worst['float64']:.3e}, "
          f"float32 {worst['float32']:.3e}")
    for line in bad:
        print("  " + line)
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=("record", "compare"))
    ap.add_argument("path")
    ap.add_argument("--tol64", type=float, default=1e-13)
    ap.add_argument("--tol32", type=float, default=1e-5)
    args = ap.parse_args(argv)
    if args.mode == "record":
        return record(args.path)
    return compare(args.path, args.tol64, args.tol32)


if __name__ == "__main__":
    sys.exit(main())
