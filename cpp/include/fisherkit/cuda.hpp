// GPU entry points. Declared identically in every build: a build without CUDA defines them
// to throw fisherkit::Unavailable("fisherkit was built without CUDA"). Views must carry
// Device::cuda; `stream` is a cudaStream_t passed as void* (nullptr: the default stream).
// The element maths is the same host-and-device code as the CPU path (detail/*.hpp).
#pragma once
#include <cstdint>

#include "fisherkit/accumulate.hpp"
#include "fisherkit/heads.hpp"
#include "fisherkit/mlp.hpp"
#include "fisherkit/variance.hpp"
#include "fisherkit/view.hpp"

namespace fisherkit::cuda {

using Stream = void*;

/// out[n] = log p(y_n | h_n) on the device. Labels are not validated on the device (the
/// caller validates them; see check_labels).
template <class T>
void head_log_likelihood_cuda(const Head& head, MatrixView<const T> H, MatrixView<const T> y,
                              VectorView<T> out, Stream stream);
/// out (N x C) = E[y | h] on the device.
template <class T>
void head_mean_cuda(const Head& head, MatrixView<const T> H, MatrixView<T> out, Stream stream);
/// out (N*S x label_cols): the same counter-based draws as head_sample on the host.
template <class T>
void head_sample_cuda(const Head& head, MatrixView<const T> H, std::uint64_t seed, std::int64_t S,
                      MatrixView<T> out, std::int64_t index_offset, Stream stream);

// The MLP passes on the device: the same arguments, layout, validation and results (to
// floating-point tolerance) as the host functions of mlp.hpp, accumulate.hpp and
// variance.hpp, with the MLP's weights, X, y and out in CUDA memory. The work is queued on
// `stream`; only argument checks read back (a flag) before returning. GEMMs run in cuBLAS,
// loaded at run time (libcublas.so.13/.12, or the path in FISHERKIT_CUBLAS).

template <class T>
void forward_cuda(const Mlp<T>& mlp, MatrixView<const T> X, MatrixView<T> out, std::int64_t chunk,
                  Stream stream);
template <class T>
void log_likelihood_cuda(const Mlp<T>& mlp, const Head& head, MatrixView<const T> X,
                         MatrixView<const T> y, VectorView<T> out, std::int64_t chunk, Stream stream);
template <class T>
void per_sample_grads_cuda(const Mlp<T>& mlp, const Head& head, MatrixView<const T> X,
                           MatrixView<const T> y, MatrixView<T> out, std::int64_t chunk, Stream stream);
/// Returns the mean NLL (this one synchronises the stream to read it).
template <class T>
double nll_gradient_cuda(const Mlp<T>& mlp, const Head& head, MatrixView<const T> X,
                         MatrixView<const T> y, VectorView<T> out, std::int64_t chunk, Stream stream);
/// Every estimator in every shape except the Hessian estimator's "layer" and "full" shapes.
template <class T>
void fisher_cuda(const Mlp<T>& mlp, const Head& head, MatrixView<const T> X, MatrixView<const T> y,
                 const FisherOptions& opt, VectorView<T> out, Stream stream);
template <class T>
void variance_sum_cuda(const Mlp<T>& mlp, const Head& head, MatrixView<const T> X, Moment which,
                       Shape shape, VectorView<T> out, std::int64_t chunk, Stream stream);

}  // namespace fisherkit::cuda
