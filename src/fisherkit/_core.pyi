"""
fisherkit's compiled core (private; use the fisherkit package)
"""
from __future__ import annotations
import collections.abc
import typing
__all__: list[str] = ['blas_name', 'cublas_library', 'cuda_compiled', 'cuda_device_count', 'dpr2_inverse', 'dpr2_rows_solve', 'dpr2_solve', 'ekfac_diagonal', 'fisher', 'fisher_vector_product', 'fisher_workspace', 'forward', 'head_covariance', 'head_fourth_moment', 'head_layer_block', 'head_log_likelihood', 'head_mean', 'head_quadratic', 'head_sample', 'head_spectral_constants', 'head_third_cumulant', 'head_unit_scalars', 'jvp', 'kfac_error_sums', 'kfac_factors', 'kfac_variance_sum', 'layout', 'log_likelihood', 'nll_gradient', 'num_threads', 'openmp_enabled', 'output_gram', 'output_hessians', 'output_jacobian', 'per_sample_grads', 'quasi_diagonal_solve', 'rank1_solve', 'rankb_solve', 'set_num_threads', 'unit_block_solve', 'unit_sample_space_solve', 'unit_statistics', 'variance_sum', 'version']
def blas_name() -> str:
    ...
def cublas_library() -> str:
    ...
def cuda_compiled() -> bool:
    ...
def cuda_device_count() -> int:
    ...
def dpr2_inverse(d: typing.Any, U: typing.Any, S: typing.Any, damping: typing.SupportsFloat | typing.SupportsIndex, out: typing.Any) -> None:
    ...
def dpr2_rows_solve(a: typing.Any, W: typing.Any, S: typing.Any, q: typing.Any, rhs: typing.Any, out: typing.Any, ux: typing.Any) -> None:
    """
    Per row b: (a_b I + U S_b U^T) x = rhs_b - U q_b with U = [1, W_b]; out (B, n), ux (B, 2) = U^T x. float64.
    """
def dpr2_solve(d: typing.Any, U: typing.Any, S: typing.Any, rhs: typing.Any, k: typing.SupportsInt | typing.SupportsIndex, damping: typing.SupportsFloat | typing.SupportsIndex, out: typing.Any, status: typing.Any = None) -> None:
    ...
def ekfac_diagonal(weights: collections.abc.Sequence, biases: collections.abc.Sequence, activations: collections.abc.Sequence[str], head: str, sigma: typing.SupportsFloat | typing.SupportsIndex, X: typing.Any, y: typing.Any, estimator: str, samples: typing.SupportsInt | typing.SupportsIndex, seed: typing.SupportsInt | typing.SupportsIndex, chunk: typing.SupportsInt | typing.SupportsIndex, index_offset: typing.SupportsInt | typing.SupportsIndex, bases: typing.Any, out: typing.Any, progress: typing.Any = None) -> None:
    """
    The EKFAC diagonal (P values, per layer n_out x k row-major) in the eigenbases `bases` ('kfac' layout).
    """
def fisher(weights: collections.abc.Sequence, biases: collections.abc.Sequence, activations: collections.abc.Sequence[str], head: str, sigma: typing.SupportsFloat | typing.SupportsIndex, X: typing.Any, y: typing.Any, estimator: str, shape: str, samples: typing.SupportsInt | typing.SupportsIndex, seed: typing.SupportsInt | typing.SupportsIndex, chunk: typing.SupportsInt | typing.SupportsIndex, index_offset: typing.SupportsInt | typing.SupportsIndex, out: typing.Any, progress: typing.Any = None, layers: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex] = []) -> None:
    ...
def fisher_vector_product(weights: collections.abc.Sequence, biases: collections.abc.Sequence, activations: collections.abc.Sequence[str], head: str, sigma: typing.SupportsFloat | typing.SupportsIndex, X: typing.Any, V: typing.Any, out: typing.Any, chunk: typing.SupportsInt | typing.SupportsIndex = 0, progress: typing.Any = None) -> None:
    ...
def fisher_workspace(weights: collections.abc.Sequence, biases: collections.abc.Sequence, activations: collections.abc.Sequence[str], X: typing.Any, estimator: str, shape: str, samples: typing.SupportsInt | typing.SupportsIndex, chunk: typing.SupportsInt | typing.SupportsIndex, layers: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex] = []) -> int:
    """
    Bytes of workspace fisher() allocates besides its result for these options and X's rows (host executor): one chunk's buffers (the result accumulates in place).
    """
def forward(weights: collections.abc.Sequence, biases: collections.abc.Sequence, activations: collections.abc.Sequence[str], X: typing.Any, out: typing.Any, chunk: typing.SupportsInt | typing.SupportsIndex = 0) -> None:
    ...
def head_covariance(head: str, sigma: typing.SupportsFloat | typing.SupportsIndex, H: typing.Any, out: typing.Any, sqrt: bool = False) -> None:
    ...
def head_fourth_moment(head: str, sigma: typing.SupportsFloat | typing.SupportsIndex, H: typing.Any, U: typing.Any, V: typing.Any, W: typing.Any, Z: typing.Any, out: typing.Any, cumulant: bool = False) -> None:
    """
    out[n] = K(H[n])(U[n], V[n], W[n], Z[n]), the 4th central moment of t (kappa4 when cumulant=True). All (N, C); out: (N,).
    """
def head_layer_block(head: str, sigma: typing.SupportsFloat | typing.SupportsIndex, H: typing.Any, G: typing.Any, T: typing.Any, U1: typing.Any, U2: typing.Any) -> None:
    """
    Layer-block U1, U2 (docs/maths/variance.rst#variance-layer-blocks). G: (N, C*n); T: (N, C*n*n) with entry (c, u, u') at column c*n*n + u*n + u'; U1, U2: (N, n*n). T and U2 may be None together.
    """
def head_log_likelihood(head: str, sigma: typing.SupportsFloat | typing.SupportsIndex, H: typing.Any, y: typing.Any, out: typing.Any) -> None:
    ...
def head_mean(head: str, sigma: typing.SupportsFloat | typing.SupportsIndex, H: typing.Any, out: typing.Any) -> None:
    ...
def head_quadratic(head: str, sigma: typing.SupportsFloat | typing.SupportsIndex, H: typing.Any, U: typing.Any, V: typing.Any, out: typing.Any) -> None:
    """
    out[n] = U[n]^T I(H[n]) V[n] (covariance of t). H, U, V: (N, C); out: (N,).
    """
def head_sample(head: str, sigma: typing.SupportsFloat | typing.SupportsIndex, H: typing.Any, seed: typing.SupportsInt | typing.SupportsIndex, samples: typing.SupportsInt | typing.SupportsIndex, out: typing.Any, index_offset: typing.SupportsInt | typing.SupportsIndex = 0) -> None:
    ...
def head_spectral_constants(head: str, sigma: typing.SupportsFloat | typing.SupportsIndex, H: typing.Any, out: typing.Any) -> None:
    """
    out (N, 4) = (lambda_min, lambda_max, k_min, k_max) per row (docs/maths/heads.rst#heads-spectral-constants); the min columns are exact or lower bounds, the max columns exact or upper bounds.
    """
def head_third_cumulant(head: str, sigma: typing.SupportsFloat | typing.SupportsIndex, H: typing.Any, U: typing.Any, V: typing.Any, W: typing.Any, out: typing.Any) -> None:
    """
    out[n] = kappa3(H[n])(U[n], V[n], W[n]). All (N, C); out: (N,).
    """
def head_unit_scalars(head: str, sigma: typing.SupportsFloat | typing.SupportsIndex, H: typing.Any, G: typing.Any, Tdiag: typing.Any, q: typing.Any, r: typing.Any, w: typing.Any, c: typing.Any) -> None:
    """
    Per-unit q, r, w, c (docs/maths/variance.rst#variance-per-unit-scalars). H: (N, C); G, Tdiag: (N, C*n) with entry (c, u) at column c*n + u; q, r, w, c: (N, n). Tdiag, w, c may be None together.
    """
def jvp(weights: collections.abc.Sequence, biases: collections.abc.Sequence, activations: collections.abc.Sequence[str], X: typing.Any, v: typing.Any, out1: typing.Any, out2: typing.Any, chunk: typing.SupportsInt | typing.SupportsIndex = 0) -> None:
    ...
def kfac_error_sums(weights: collections.abc.Sequence, biases: collections.abc.Sequence, activations: collections.abc.Sequence[str], head: str, sigma: typing.SupportsFloat | typing.SupportsIndex, X: typing.Any, y: typing.Any, estimator: str, samples: typing.SupportsInt | typing.SupportsIndex, seed: typing.SupportsInt | typing.SupportsIndex, chunk: typing.SupportsInt | typing.SupportsIndex, index_offset: typing.SupportsInt | typing.SupportsIndex, factors: typing.Any, bases: typing.Any, keep_bytes: typing.SupportsInt | typing.SupportsIndex, sq: typing.Any, cross: typing.Any, diag: typing.Any, progress: typing.Any = None) -> None:
    """
    Per layer ||F_l||_F^2 into `sq` (L float64 values); with `factors` and `cross` also <F_l, G_l (x) A_l>; with `bases` and `diag` also the EKFAC diagonal (P values), from the same pass.
    """
def kfac_factors(weights: collections.abc.Sequence, biases: collections.abc.Sequence, activations: collections.abc.Sequence[str], head: str, sigma: typing.SupportsFloat | typing.SupportsIndex, X: typing.Any, y: typing.Any, estimator: str, samples: typing.SupportsInt | typing.SupportsIndex, seed: typing.SupportsInt | typing.SupportsIndex, chunk: typing.SupportsInt | typing.SupportsIndex, index_offset: typing.SupportsInt | typing.SupportsIndex, out: typing.Any, progress: typing.Any = None) -> None:
    """
    The Kronecker factors A_l, G_l of every layer into `out` (the 'kfac' layout).
    """
def kfac_variance_sum(weights: collections.abc.Sequence, biases: collections.abc.Sequence, activations: collections.abc.Sequence[str], head: str, sigma: typing.SupportsFloat | typing.SupportsIndex, X: typing.Any, bases: typing.Any, out: typing.Any, chunk: typing.SupportsInt | typing.SupportsIndex = 0, progress: typing.Any = None) -> None:
    """
    Sum over inputs of the single-draw variance of the score estimator's G_l entries ('kfac' layout), or with `bases` of its EKFAC diagonal (P values).
    """
def layout(n_out: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], n_in: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], bias: collections.abc.Sequence[bool]) -> dict:
    """
    The flat parameter layout (layout.hpp): n_params, per layer param_offset and unit_width (n_in + bias), and per shape the result size and each layer's offset.
    """
def log_likelihood(weights: collections.abc.Sequence, biases: collections.abc.Sequence, activations: collections.abc.Sequence[str], head: str, sigma: typing.SupportsFloat | typing.SupportsIndex, X: typing.Any, y: typing.Any, out: typing.Any, chunk: typing.SupportsInt | typing.SupportsIndex = 0) -> None:
    ...
def nll_gradient(weights: collections.abc.Sequence, biases: collections.abc.Sequence, activations: collections.abc.Sequence[str], head: str, sigma: typing.SupportsFloat | typing.SupportsIndex, X: typing.Any, y: typing.Any, out: typing.Any, chunk: typing.SupportsInt | typing.SupportsIndex = 0) -> float:
    ...
def num_threads() -> int:
    ...
def openmp_enabled() -> bool:
    ...
def output_gram(weights: collections.abc.Sequence, biases: collections.abc.Sequence, activations: collections.abc.Sequence[str], X: typing.Any, out: typing.Any, chunk: typing.SupportsInt | typing.SupportsIndex = 0) -> None:
    ...
def output_hessians(weights: collections.abc.Sequence, biases: collections.abc.Sequence, activations: collections.abc.Sequence[str], X: typing.Any, out: typing.Any, chunk: typing.SupportsInt | typing.SupportsIndex = 0, progress: typing.Any = None) -> None:
    ...
def output_jacobian(weights: collections.abc.Sequence, biases: collections.abc.Sequence, activations: collections.abc.Sequence[str], X: typing.Any, out: typing.Any, chunk: typing.SupportsInt | typing.SupportsIndex = 0) -> None:
    ...
def per_sample_grads(weights: collections.abc.Sequence, biases: collections.abc.Sequence, activations: collections.abc.Sequence[str], head: str, sigma: typing.SupportsFloat | typing.SupportsIndex, X: typing.Any, y: typing.Any, out: typing.Any, chunk: typing.SupportsInt | typing.SupportsIndex = 0, progress: typing.Any = None) -> None:
    ...
def quasi_diagonal_solve(m00: typing.Any, m0i: typing.Any, mii: typing.Any, gW: typing.Any, gb: typing.Any, damping: typing.SupportsFloat | typing.SupportsIndex, dW: typing.Any, db: typing.Any) -> None:
    """
    Ollivier's quasi-diagonal update (m0i None: the diagonal update). float64.
    """
def rank1_solve(psi: typing.Any, g: typing.Any, damping: typing.SupportsFloat | typing.SupportsIndex, out: typing.Any) -> None:
    ...
def rankb_solve(Psi: typing.Any, g: typing.Any, damping: typing.SupportsFloat | typing.SupportsIndex, out: typing.Any) -> None:
    ...
def set_num_threads(n: typing.SupportsInt | typing.SupportsIndex) -> None:
    ...
def unit_block_solve(blocks: typing.Any, rhs: typing.Any, damping: typing.SupportsFloat | typing.SupportsIndex, out: typing.Any, nrhs: typing.SupportsInt | typing.SupportsIndex = 1, status: typing.Any = None) -> None:
    """
    (blocks + damping I)^-1 rhs per block by Cholesky; blocks (B, k*k), rhs/out (B, k*nrhs), float64.
    """
def unit_sample_space_solve(xt: typing.Any, g2: typing.Any, rhs: typing.Any, damping: typing.SupportsFloat | typing.SupportsIndex, out: typing.Any) -> None:
    """
    Exact unit blocks in sample space: xt (N, k), g2 (N, m), rhs/out (m, k), float64.
    """
def unit_statistics(weights: collections.abc.Sequence, biases: collections.abc.Sequence, activations: collections.abc.Sequence[str], head: str, sigma: typing.SupportsFloat | typing.SupportsIndex, X: typing.Any, y: typing.Any, metric: str, samples: typing.SupportsInt | typing.SupportsIndex, seed: typing.SupportsInt | typing.SupportsIndex, index_offset: typing.SupportsInt | typing.SupportsIndex, chunk: typing.SupportsInt | typing.SupportsIndex, layers: list, grad: typing.Any, progress: typing.Any = None) -> float:
    """
    Per-layer unit statistics (natgrad.hpp): `layers` is one dict per layer of preallocated outputs (keys inputs, g2, b2, rows of the model's dtype; g2_sum, b2_sum, x_sum, x_sq, x_gram, qd1, qd2, blocks in float64). With `grad` (P values) also the mean-NLL gradient; returns the mean NLL (0 without grad).
    """
def variance_sum(weights: collections.abc.Sequence, biases: collections.abc.Sequence, activations: collections.abc.Sequence[str], head: str, sigma: typing.SupportsFloat | typing.SupportsIndex, X: typing.Any, which: str, shape: str, chunk: typing.SupportsInt | typing.SupportsIndex, out: typing.Any, progress: typing.Any = None) -> None:
    ...
def version() -> str:
    ...
