// Fisher estimators x shapes on the device: the portable passes with the CUDA executor.
// Diagonal: one GEMM of per-unit weights against the squared augmented inputs a chunk;
// unit blocks: strided-batched GEMMs abar^T (w_u o abar) over groups of units; layer and
// full: the Gram of pseudo-gradient rows.
#include "exec.cuh"
#include "fisherkit/cuda.hpp"
#include "xpu/passes.hpp"

namespace fisherkit::cuda {

template <class T>
void fisher_cuda(const Mlp<T>& mlp, const Head& head, MatrixView<const T> X, MatrixView<const T> y,
                 const FisherOptions& opt, VectorView<T> out, Stream stream) {
  detail::CudaExec x(stream);
  xpu::fisher_pass(x, mlp, head, X, y, opt, out);
}

template void fisher_cuda<float>(const Mlp<float>&, const Head&, MatrixView<const float>,
                                 MatrixView<const float>, const FisherOptions&, VectorView<float>, Stream);
template void fisher_cuda<double>(const Mlp<double>&, const Head&, MatrixView<const double>,
                                  MatrixView<const double>, const FisherOptions&, VectorView<double>, Stream);

}  // namespace fisherkit::cuda
