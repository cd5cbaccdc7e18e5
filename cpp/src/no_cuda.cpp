// Compiled instead of cuda/*.cu when FISHERKIT_ENABLE_CUDA is off: the same public entry
// points, each throwing a clear error.
#include "fisherkit/cuda.hpp"
#include "fisherkit/mlp.hpp"

namespace fisherkit {

bool cuda_compiled() { return false; }
int cuda_device_count() { return 0; }
std::string cublas_library() { return ""; }

namespace cuda {
namespace {
[[noreturn]] void no_cuda() { throw Unavailable("fisherkit was built without CUDA"); }
}  // namespace

template <class T>
void head_log_likelihood_cuda(const Head&, MatrixView<const T>, MatrixView<const T>, VectorView<T>,
                              Stream) { no_cuda(); }
template <class T>
void head_mean_cuda(const Head&, MatrixView<const T>, MatrixView<T>, Stream) { no_cuda(); }
template <class T>
void head_sample_cuda(const Head&, MatrixView<const T>, std::uint64_t, std::int64_t, MatrixView<T>,
                      std::int64_t, Stream) { no_cuda(); }

template <class T>
void forward_cuda(const Mlp<T>&, MatrixView<const T>, MatrixView<T>, std::int64_t, Stream) { no_cuda(); }
template <class T>
void log_likelihood_cuda(const Mlp<T>&, const Head&, MatrixView<const T>, MatrixView<const T>,
                         VectorView<T>, std::int64_t, Stream) { no_cuda(); }
template <class T>
void per_sample_grads_cuda(const Mlp<T>&, const Head&, MatrixView<const T>, MatrixView<const T>,
                           MatrixView<T>, std::int64_t, Stream) { no_cuda(); }
template <class T>
double nll_gradient_cuda(const Mlp<T>&, const Head&, MatrixView<const T>, MatrixView<const T>,
                         VectorView<T>, std::int64_t, Stream) { no_cuda(); }
template <class T>
void fisher_cuda(const Mlp<T>&, const Head&, MatrixView<const T>, MatrixView<const T>,
                 const FisherOptions&, VectorView<T>, Stream) { no_cuda(); }
template <class T>
void variance_sum_cuda(const Mlp<T>&, const Head&, MatrixView<const T>, Moment, Shape, VectorView<T>,
                       std::int64_t, Stream) { no_cuda(); }

#define FISHERKIT_INSTANTIATE_CUDA_STUBS(T)                                                    \
  template void head_log_likelihood_cuda<T>(const Head&, MatrixView<const T>,                  \
                                            MatrixView<const T>, VectorView<T>, Stream);       \
  template void head_mean_cuda<T>(const Head&, MatrixView<const T>, MatrixView<T>, Stream);    \
  template void head_sample_cuda<T>(const Head&, MatrixView<const T>, std::uint64_t,           \
                                    std::int64_t, MatrixView<T>, std::int64_t, Stream);        \
  template void forward_cuda<T>(const Mlp<T>&, MatrixView<const T>, MatrixView<T>, std::int64_t,  \
                                Stream);                                                         \
  template void log_likelihood_cuda<T>(const Mlp<T>&, const Head&, MatrixView<const T>,          \
                                       MatrixView<const T>, VectorView<T>, std::int64_t, Stream); \
  template void per_sample_grads_cuda<T>(const Mlp<T>&, const Head&, MatrixView<const T>,        \
                                         MatrixView<const T>, MatrixView<T>, std::int64_t,       \
                                         Stream);                                                \
  template double nll_gradient_cuda<T>(const Mlp<T>&, const Head&, MatrixView<const T>,          \
                                       MatrixView<const T>, VectorView<T>, std::int64_t, Stream); \
  template void fisher_cuda<T>(const Mlp<T>&, const Head&, MatrixView<const T>,                  \
                               MatrixView<const T>, const FisherOptions&, VectorView<T>, Stream); \
  template void variance_sum_cuda<T>(const Mlp<T>&, const Head&, MatrixView<const T>, Moment,    \
                                     Shape, VectorView<T>, std::int64_t, Stream);
FISHERKIT_INSTANTIATE_CUDA_STUBS(float)
FISHERKIT_INSTANTIATE_CUDA_STUBS(double)

}  // namespace cuda
}  // namespace fisherkit
