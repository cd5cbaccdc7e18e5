// fisherkit::portable: the portable passes (xpu/passes.hpp) with the host executor.
#include "fisherkit/portable.hpp"

#include "xpu/host_exec.hpp"
#include "xpu/passes.hpp"

namespace fisherkit::portable {

template <class T>
void forward(const Mlp<T>& mlp, MatrixView<const T> X, MatrixView<T> out, std::int64_t chunk) {
  xpu::HostExec x;
  xpu::forward_pass(x, mlp, X, out, chunk);
}
template <class T>
void log_likelihood(const Mlp<T>& mlp, const Head& head, MatrixView<const T> X, MatrixView<const T> y,
                    VectorView<T> out, std::int64_t chunk) {
  xpu::HostExec x;
  xpu::log_likelihood_pass(x, mlp, head, X, y, out, chunk);
}
template <class T>
void per_sample_grads(const Mlp<T>& mlp, const Head& head, MatrixView<const T> X,
                      MatrixView<const T> y, MatrixView<T> out, std::int64_t chunk) {
  xpu::HostExec x;
  xpu::per_sample_grads_pass(x, mlp, head, X, y, out, chunk);
}
template <class T>
double nll_gradient(const Mlp<T>& mlp, const Head& head, MatrixView<const T> X, MatrixView<const T> y,
                    VectorView<T> out, std::int64_t chunk) {
  xpu::HostExec x;
  return xpu::nll_gradient_pass(x, mlp, head, X, y, out, chunk);
}
template <class T>
void fisher(const Mlp<T>& mlp, const Head& head, MatrixView<const T> X, MatrixView<const T> y,
            const FisherOptions& opt, VectorView<T> out) {
  xpu::HostExec x;
  xpu::fisher_pass(x, mlp, head, X, y, opt, out);
}
template <class T>
void variance_sum(const Mlp<T>& mlp, const Head& head, MatrixView<const T> X, Moment which, Shape shape,
                  VectorView<T> out, std::int64_t chunk) {
  xpu::HostExec x;
  xpu::variance_pass(x, mlp, head, X, which, shape, out, chunk);
}

#define FISHERKIT_INSTANTIATE_PORTABLE(T)                                                         \
  template void forward<T>(const Mlp<T>&, MatrixView<const T>, MatrixView<T>, std::int64_t);      \
  template void log_likelihood<T>(const Mlp<T>&, const Head&, MatrixView<const T>,                \
                                  MatrixView<const T>, VectorView<T>, std::int64_t);              \
  template void per_sample_grads<T>(const Mlp<T>&, const Head&, MatrixView<const T>,              \
                                    MatrixView<const T>, MatrixView<T>, std::int64_t);            \
  template double nll_gradient<T>(const Mlp<T>&, const Head&, MatrixView<const T>,                \
                                  MatrixView<const T>, VectorView<T>, std::int64_t);              \
  template void fisher<T>(const Mlp<T>&, const Head&, MatrixView<const T>, MatrixView<const T>,   \
                          const FisherOptions&, VectorView<T>);                                   \
  template void variance_sum<T>(const Mlp<T>&, const Head&, MatrixView<const T>, Moment, Shape,   \
                                VectorView<T>, std::int64_t);
FISHERKIT_INSTANTIATE_PORTABLE(float)
FISHERKIT_INSTANTIATE_PORTABLE(double)

}  // namespace fisherkit::portable
