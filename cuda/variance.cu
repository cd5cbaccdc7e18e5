// Closed-form variances (fourth-moment terms) on the device: the portable passes with the
// CUDA executor. The per-unit scalars are detail/moments.hpp's, one thread per (sample,
// unit); their accumulation is the Fisher passes' diagonal / unit-block GEMMs.
#include "exec.cuh"
#include "fisherkit/cuda.hpp"
#include "xpu/passes.hpp"

namespace fisherkit::cuda {

template <class T>
void variance_sum_cuda(const Mlp<T>& mlp, const Head& head, MatrixView<const T> X, Moment which,
                       Shape shape, VectorView<T> out, std::int64_t chunk, Stream stream) {
  detail::CudaExec x(stream);
  xpu::variance_pass(x, mlp, head, X, which, shape, out, chunk);
}

template void variance_sum_cuda<float>(const Mlp<float>&, const Head&, MatrixView<const float>, Moment,
                                       Shape, VectorView<float>, std::int64_t, Stream);
template void variance_sum_cuda<double>(const Mlp<double>&, const Head&, MatrixView<const double>, Moment,
                                        Shape, VectorView<double>, std::int64_t, Stream);

}  // namespace fisherkit::cuda
