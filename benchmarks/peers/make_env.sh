#!/usr/bin/env bash
# Make a virtual environment for benchmarks/bench_peers.py: PyTorch (CPU) and the four
# peer libraries beside fisherkit, kept apart from the development environment.
#
#   bash benchmarks/peers/make_env.sh [ENV_DIR]       (default: .venv-peers in the repository)
#   ENV_DIR/bin/python benchmarks/bench_peers.py
#
# Why the install is in steps: BackPACK, curvlinops and NNGeometry declare torchvision as a
# dependency, and resolving it pulls a newer torch with gigabytes of CUDA wheels. So torch
# is installed first at the exact CPU build this project measures with (torch==2.13.0), and
# the peers and their small pure-Python dependencies after it with --no-deps. Nothing here
# needs torchvision: the peers import it only for their image examples.
#
# Environment: PYTHON (default python3) makes the environment; FISHERKIT_EDITABLE=1 installs
# fisherkit in editable mode (a development checkout) instead of building a wheel.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
env_dir="${1:-$repo/.venv-peers}"
python="${PYTHON:-python3}"

echo "# making $env_dir"
"$python" -m venv "$env_dir"
pip=("$env_dir/bin/python" -m pip install --disable-pip-version-check)

# 1. fisherkit's own runtime and the benchmark's needs (threadpoolctl: NumPy's BLAS at one
#    thread; matplotlib: the bar chart; scipy: SYRK for the roofline, and curvlinops needs it).
"${pip[@]}" numpy scipy threadpoolctl matplotlib

# 2. PyTorch, CPU only, at the version the results were measured with. Any other spec
#    resolves to a CUDA build.
"${pip[@]}" "torch==2.13.0"

# 3. The peers, without their dependencies (torchvision), then the dependencies their
#    imports actually need. All of these are pure Python and depend only on torch, NumPy,
#    SciPy or each other.
"${pip[@]}" --no-deps backpack-for-pytorch curvlinops-for-pytorch nngeometry
"${pip[@]}" --no-deps einops unfoldNd opt-einsum einconv linear_operator tqdm packaging
# ASDL is published as 'asdfghjkl' (its module is 'asdl'); the PyPI name 'asdl' may belong
# to another project, so take it only if asdfghjkl will not install, and check the module
# below either way.
if ! "${pip[@]}" --no-deps asdfghjkl; then
    echo "# asdfghjkl did not install; trying the name 'asdl'"
    "${pip[@]}" --no-deps asdl || echo "# ASDL is not installed: bench_peers.py skips its columns"
fi

# 4. fisherkit itself, built from this checkout.
if [[ "${FISHERKIT_EDITABLE:-0}" == 1 ]]; then
    "${pip[@]}" scikit-build-core pybind11 scipy-openblas32 cmake ninja
    "${pip[@]}" --no-build-isolation -e "$repo" -Cbuild-dir=build/peers
else
    "${pip[@]}" "$repo"
fi

# 5. Say what imports. A peer that does not import is skipped by the benchmark, not fatal.
"$env_dir/bin/python" - <<'EOF'
import importlib
import torch
print(f"# torch {torch.__version__} (cuda: {torch.version.cuda})")
for mod, dist in (("fisherkit", "fisherkit"), ("backpack", "backpack-for-pytorch"),
                  ("curvlinops", "curvlinops-for-pytorch"), ("nngeometry", "nngeometry"),
                  ("asdl", "asdfghjkl")):
    try:
        m = importlib.import_module(mod)
    except Exception as exc:  # noqa: BLE001 - report every failure, go on
        print(f"# {mod}: does not import ({type(exc).__name__}: {exc})")
        continue
    if mod == "asdl" and not hasattr(m, "get_fisher_maker"):
        print("# asdl: the installed module is not ASDL (no get_fisher_maker)")
        continue
    from importlib.metadata import PackageNotFoundError, version
    try:
        v = version(dist)
    except PackageNotFoundError:
        v = getattr(m, "__version__", "?")
    print(f"# {mod} {v}: ok")
EOF
echo "# done: $env_dir/bin/python benchmarks/bench_peers.py"
