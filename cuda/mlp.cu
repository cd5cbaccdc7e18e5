// MLP passes on the device: the portable passes (cpp/src/xpu/passes.hpp) with the CUDA
// executor (exec.cuh).
#include "exec.cuh"
#include "fisherkit/cuda.hpp"
#include "xpu/passes.hpp"

namespace fisherkit::cuda {

template <class T>
void forward_cuda(const Mlp<T>& mlp, MatrixView<const T> X, MatrixView<T> out, std::int64_t chunk,
                  Stream stream) {
  detail::CudaExec x(stream);
  xpu::forward_pass(x, mlp, X, out, chunk);
}
template <class T>
void log_likelihood_cuda(const Mlp<T>& mlp, const Head& head, MatrixView<const T> X,
                         MatrixView<const T> y, VectorView<T> out, std::int64_t chunk, Stream stream) {
  detail::CudaExec x(stream);
  xpu::log_likelihood_pass(x, mlp, head, X, y, out, chunk);
}
template <class T>
void per_sample_grads_cuda(const Mlp<T>& mlp, const Head& head, MatrixView<const T> X,
                           MatrixView<const T> y, MatrixView<T> out, std::int64_t chunk, Stream stream) {
  detail::CudaExec x(stream);
  xpu::per_sample_grads_pass(x, mlp, head, X, y, out, chunk);
}
template <class T>
double nll_gradient_cuda(const Mlp<T>& mlp, const Head& head, MatrixView<const T> X,
                         MatrixView<const T> y, VectorView<T> out, std::int64_t chunk, Stream stream) {
  detail::CudaExec x(stream);
  return xpu::nll_gradient_pass(x, mlp, head, X, y, out, chunk);
}

#define FISHERKIT_INSTANTIATE_MLP_CUDA(T)                                                          \
  template void forward_cuda<T>(const Mlp<T>&, MatrixView<const T>, MatrixView<T>, std::int64_t,   \
                                Stream);                                                           \
  template void log_likelihood_cuda<T>(const Mlp<T>&, const Head&, MatrixView<const T>,            \
                                       MatrixView<const T>, VectorView<T>, std::int64_t, Stream);  \
  template void per_sample_grads_cuda<T>(const Mlp<T>&, const Head&, MatrixView<const T>,          \
                                         MatrixView<const T>, MatrixView<T>, std::int64_t, Stream); \
  template double nll_gradient_cuda<T>(const Mlp<T>&, const Head&, MatrixView<const T>,            \
                                       MatrixView<const T>, VectorView<T>, std::int64_t, Stream);
FISHERKIT_INSTANTIATE_MLP_CUDA(float)
FISHERKIT_INSTANTIATE_MLP_CUDA(double)

}  // namespace fisherkit::cuda
