"""fisherkit: the Fisher information matrix of multilayer perceptrons.

A compiled engine (C++ with BLAS and OpenMP, CUDA optional) behind a NumPy/CuPy API:
estimate the FIM of an MLP (exact, score, Hessian and empirical estimators; full, layer,
unit, diagonal and Kronecker-factored shapes), say how good an estimate is, and use it for natural gradients.
"""
from __future__ import annotations

from ._loader import _core
from . import heads
from . import linalg
from . import meanfield
from . import natgrad
from . import optim
from . import plot
from . import rl
from . import distributed  # noqa: F401 - registers the Dask implementations; imports Dask only when used
from .structure import BlockStructure, block_structure
from ._backend import get_array_module
from .model import MLP
from .fisher import fisher, fisher_vector_product
from .matrices import Dense, Diagonal, FisherMatrix, LayerBlocks, UnitBlocks
from .kronecker import EKFAC, KFAC
from .kfac import KFACError, kfac_error
from .variance import (
    Recommendation,
    covariance,
    directional_variance,
    monte_carlo_variance,
    recommend,
    samples_needed,
    variance,
    variance_bounds,
)
from .info import info, set_num_threads, num_threads, cmake_dir, include_dir
from .report import Report, report

__version__ = _core.version()

__all__ = [
    "MLP",
    "fisher",
    "fisher_vector_product",
    "variance",
    "covariance",
    "variance_bounds",
    "recommend",
    "Recommendation",
    "samples_needed",
    "monte_carlo_variance",
    "directional_variance",
    "FisherMatrix",
    "Dense",
    "LayerBlocks",
    "UnitBlocks",
    "Diagonal",
    "KFAC",
    "EKFAC",
    "kfac_error",
    "KFACError",
    "heads",
    "linalg",
    "meanfield",
    "natgrad",
    "optim",
    "plot",
    "report",
    "Report",
    "rl",
    "block_structure",
    "BlockStructure",
    "info",
    "set_num_threads",
    "num_threads",
    "cmake_dir",
    "include_dir",
    "get_array_module",
    "__version__",
]
