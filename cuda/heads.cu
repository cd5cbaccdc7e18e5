// Head kernels: one thread per row, calling the same detail/heads.hpp functions as the
// CPU loops.
#include <cstdint>

#include "common.cuh"
#include "fisherkit/cuda.hpp"
#include "fisherkit/detail/heads.hpp"
#include "fisherkit/mlp.hpp"

namespace fisherkit {

bool cuda_compiled() { return true; }

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

namespace cuda {
namespace {

template <class T>
__global__ void loglik_kernel(HeadKind kind, T sigma, MatrixView<const T> H, MatrixView<const T> y,
                              VectorView<T> out) {
  const std::int64_t n = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (n >= H.rows) return;
  out[n] = fisherkit::detail::head_log_likelihood(kind, sigma, H.row(n), y.row(n), H.cols);
}

template <class T>
__global__ void mean_kernel(HeadKind kind, MatrixView<const T> H, MatrixView<T> out) {
  const std::int64_t n = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (n >= H.rows) return;
  fisherkit::detail::head_mean(kind, H.row(n), H.cols, out.row(n));
}

template <class T>
__global__ void sample_kernel(HeadKind kind, T sigma, MatrixView<const T> H, std::uint64_t seed,
                              std::int64_t S, MatrixView<T> out, std::int64_t offset) {
  const std::int64_t r = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (r >= H.rows * S) return;
  const std::int64_t n = r / S, s = r % S;
  fisherkit::detail::Philox4x32 rng(seed, static_cast<std::uint64_t>(offset + n),
                                    static_cast<std::uint32_t>(s), 0);
  fisherkit::detail::head_sample(kind, sigma, H.row(n), H.cols, rng, out.row(r));
}

constexpr unsigned kThreads = 128;

}  // namespace

template <class T>
void head_log_likelihood_cuda(const Head& head, MatrixView<const T> H, MatrixView<const T> y,
                              VectorView<T> out, Stream stream) {
  detail::check_device(H, "H");
  detail::check_device(y, "y");
  detail::check_device(out, "out");
  check_head(head, H.cols);
  FISHERKIT_CHECK(out.size == H.rows && y.rows == H.rows, "arguments 'y' and 'out' must have ",
                  H.rows, " rows");
  if (H.rows == 0) return;
  loglik_kernel<T><<<detail::blocks_for(H.rows, kThreads), kThreads, 0,
                     static_cast<cudaStream_t>(stream)>>>(head.kind, T(head.sigma), H, y, out);
  detail::check_cuda(cudaGetLastError(), "head_log_likelihood_cuda");
}

template <class T>
void head_mean_cuda(const Head& head, MatrixView<const T> H, MatrixView<T> out, Stream stream) {
  detail::check_device(H, "H");
  detail::check_device(out, "out");
  check_head(head, H.cols);
  fisherkit::detail::check_shape(out, H.rows, H.cols, "out");
  if (H.rows == 0) return;
  mean_kernel<T><<<detail::blocks_for(H.rows, kThreads), kThreads, 0,
                   static_cast<cudaStream_t>(stream)>>>(head.kind, H, out);
  detail::check_cuda(cudaGetLastError(), "head_mean_cuda");
}

template <class T>
void head_sample_cuda(const Head& head, MatrixView<const T> H, std::uint64_t seed, std::int64_t S,
                      MatrixView<T> out, std::int64_t index_offset, Stream stream) {
  detail::check_device(H, "H");
  detail::check_device(out, "out");
  check_head(head, H.cols);
  FISHERKIT_CHECK(S >= 1, "argument 'samples' must be >= 1, got ", S);
  fisherkit::detail::check_shape(out, H.rows * S, fisherkit::detail::head_label_cols(head.kind, H.cols),
                                 "out");
  if (H.rows == 0) return;
  sample_kernel<T><<<detail::blocks_for(H.rows * S, kThreads), kThreads, 0,
                     static_cast<cudaStream_t>(stream)>>>(head.kind, T(head.sigma), H, seed, S, out,
                                                          index_offset);
  detail::check_cuda(cudaGetLastError(), "head_sample_cuda");
}

#define FISHERKIT_INSTANTIATE_CUDA_HEADS(T)                                                    \
  template void head_log_likelihood_cuda<T>(const Head&, MatrixView<const T>,                  \
                                            MatrixView<const T>, VectorView<T>, Stream);       \
  template void head_mean_cuda<T>(const Head&, MatrixView<const T>, MatrixView<T>, Stream);    \
  template void head_sample_cuda<T>(const Head&, MatrixView<const T>, std::uint64_t,           \
                                    std::int64_t, MatrixView<T>, std::int64_t, Stream);
FISHERKIT_INSTANTIATE_CUDA_HEADS(float)
FISHERKIT_INSTANTIATE_CUDA_HEADS(double)

}  // namespace cuda
}  // namespace fisherkit
