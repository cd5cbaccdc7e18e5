// Batched diagonal-plus-rank-2 solve on the GPU: one CTA per block, the five per-block
// reductions (K = U^T D^-1 U, t = U^T D^-1 r) in double through warp shuffles and shared
// memory, the 2 x 2 solve by thread 0, then the element-wise update. The maths is the
// host-and-device code of detail/dpr2.hpp, exactly what the CPU path runs.
#include <cmath>
#include <cstdint>

#include "common.cuh"
#include "fisherkit/detail/dpr2.hpp"
#include "fisherkit/dpr2.hpp"
#include "passes/table.hpp"

namespace fisherkit {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

/// Sum v[0..N) over the CTA; the totals land in out[0..N) (shared) for every thread.
template <int N>
__device__ void block_sum(double (&v)[N], double* scratch, double* out) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int i = 0; i < N; ++i)
    for (int off = 16; off > 0; off >>= 1) v[i] += __shfl_down_sync(0xffffffffu, v[i], off);
  if (lane == 0)
#pragma unroll
    for (int i = 0; i < N; ++i) scratch[i * kWarps + warp] = v[i];
  __syncthreads();
  if (warp == 0) {
#pragma unroll
    for (int i = 0; i < N; ++i) {
      double s = lane < kWarps ? scratch[i * kWarps + lane] : 0.0;
      for (int off = 16; off > 0; off >>= 1) s += __shfl_down_sync(0xffffffffu, s, off);
      if (lane == 0) out[i] = s;
    }
  }
  __syncthreads();
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    dpr2_kernel(MatrixView<const T> d, MatrixView<const T> U, MatrixView<const T> S,
                MatrixView<const T> rhs, std::int64_t k, double eps, MatrixView<T> out,
                VectorView<int> status) {
  __shared__ double scratch[6 * kWarps];
  __shared__ double tot[6];
  __shared__ double y[2];
  __shared__ int st_shared;
  const std::int64_t b = blockIdx.x;
  const std::int64_t n = d.cols;
  const T* db = d.row(b);
  const T* ub = U.row(b);
  const T* rb = rhs.row(b);
  T* xb = out.row(b);

  // Pass 1: K and the first right-hand side's t, with the diagonal check.
  double v[6] = {0, 0, 0, 0, 0, 0};
  for (std::int64_t j = threadIdx.x; j < n; j += blockDim.x) {
    const double dj = static_cast<double>(db[j]) + eps;
    if (!fisherkit::detail::dpr2_diag_ok(dj)) v[5] += 1.0;
    fisherkit::detail::Dpr2Gram g;
    const double u0 = ub[2 * j], u1 = ub[2 * j + 1];
    fisherkit::detail::dpr2_gram_add(g, dj, u0, u1);
    v[0] += g.k00;
    v[1] += g.k01;
    v[2] += g.k11;
    const double r = rb[j * k];
    const double inv = 1.0 / dj;
    v[3] += u0 * inv * r;
    v[4] += u1 * inv * r;
  }
  block_sum(v, scratch, tot);

  fisherkit::detail::Dpr2Small m;
  if (threadIdx.x == 0) {
    int st = fisherkit::detail::dpr2_ok;
    if (tot[5] > 0.0) {
      st = fisherkit::detail::dpr2_bad_diagonal;
    } else {
      fisherkit::detail::Dpr2Gram g;
      g.k00 = tot[0];
      g.k01 = tot[1];
      g.k11 = tot[2];
      st = fisherkit::detail::dpr2_small_setup(m, S(b, 0), S(b, 1), S(b, 2), S(b, 3), g);
      if (st == fisherkit::detail::dpr2_ok) {
        double y0, y1;
        fisherkit::detail::dpr2_small_solve(m, tot[3], tot[4], y0, y1);
        if (!(isfinite(y0) && isfinite(y1))) st = fisherkit::detail::dpr2_non_finite;
        y[0] = y0;
        y[1] = y1;
      }
    }
    st_shared = st;
    if (status.size > 0) status[b] = st;
  }
  __syncthreads();
  if (st_shared != fisherkit::detail::dpr2_ok) {
    const T nan = static_cast<T>(NAN);
    for (std::int64_t j = threadIdx.x; j < n * k; j += blockDim.x) xb[j] = nan;
    return;
  }
  // Thread 0 keeps the 2 x 2 system m for the remaining right-hand sides.
  for (std::int64_t c = 0; c < k; ++c) {
    if (c > 0) {
      double w[2] = {0, 0};
      for (std::int64_t j = threadIdx.x; j < n; j += blockDim.x) {
        const double dj = static_cast<double>(db[j]) + eps;
        const double r = rb[j * k + c];
        w[0] += ub[2 * j] / dj * r;
        w[1] += ub[2 * j + 1] / dj * r;
      }
      block_sum(w, scratch, tot);
      if (threadIdx.x == 0) {
        double y0, y1;
        fisherkit::detail::dpr2_small_solve(m, tot[0], tot[1], y0, y1);
        y[0] = y0;
        y[1] = y1;
        if (!(isfinite(y0) && isfinite(y1))) {
          st_shared = fisherkit::detail::dpr2_non_finite;
          if (status.size > 0) status[b] = st_shared;
        }
      }
    }
    __syncthreads();
    const double y0 = y[0], y1 = y[1];
    for (std::int64_t j = threadIdx.x; j < n; j += blockDim.x)
      xb[j * k + c] = fisherkit::detail::dpr2_apply<T>(rb[j * k + c], ub[2 * j], ub[2 * j + 1],
                                                      static_cast<double>(db[j]) + eps, y0, y1);
    __syncthreads();
  }
}

}  // namespace

}  // namespace cuda

template <class T>
void dpr2_solve_cuda(MatrixView<const T> d, MatrixView<const T> U, MatrixView<const T> S,
                     MatrixView<const T> rhs, std::int64_t k, double damping, MatrixView<T> out,
                     VectorView<int> status, Stream stream) {
  cuda::detail::check_device(d, "d");
  cuda::detail::check_device(U, "U");
  cuda::detail::check_device(S, "S");
  cuda::detail::check_device(rhs, "rhs");
  cuda::detail::check_device(out, "out");
  FISHERKIT_CHECK(d.cols >= 1, "argument 'd' must have at least one column (block size n >= 1)");
  FISHERKIT_CHECK(k >= 1, "argument 'k' (right-hand sides per block) must be >= 1, got ", k);
  FISHERKIT_CHECK(std::isfinite(damping) && damping >= 0.0,
                  "argument 'damping' must be a finite number >= 0, got ", damping);
  const std::int64_t B = d.rows, n = d.cols;
  fisherkit::detail::check_rows_unit_stride(d, "d");
  fisherkit::detail::check_shape(U, B, 2 * n, "U");
  fisherkit::detail::check_rows_unit_stride(U, "U");
  fisherkit::detail::check_shape(S, B, 4, "S");
  fisherkit::detail::check_shape(rhs, B, n * k, "rhs");
  fisherkit::detail::check_rows_unit_stride(rhs, "rhs");
  fisherkit::detail::check_shape(out, B, n * k, "out");
  fisherkit::detail::check_rows_unit_stride(out, "out");
  if (status.size > 0) {
    cuda::detail::check_device(status, "status");
    FISHERKIT_CHECK(status.size == B, "argument 'status' must have ", B, " entries or none, got ",
                    status.size);
  }
  if (B == 0) return;
  FISHERKIT_CHECK(B <= 2147483647LL, "argument 'd' has too many blocks for one launch (", B, ")");
  cuda::dpr2_kernel<T><<<static_cast<unsigned>(B), cuda::kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      d, U, S, rhs, k, damping, out, status);
  cuda::detail::check_cuda(cudaGetLastError(), "dpr2_solve_cuda");
}

#define FISHERKIT_DPR2_CUDA_INSTANTIATE(T_, R, name, params, args, dev) \
  FISHERKIT_INSTANTIATE(T_, R, name, params, args, dev, _cuda)
FISHERKIT_KERNEL_OPS(FISHERKIT_DPR2_CUDA_INSTANTIATE, float)
FISHERKIT_KERNEL_OPS(FISHERKIT_DPR2_CUDA_INSTANTIATE, double)

}  // namespace fisherkit
