// GPU entry points. Declared identically in every build: a build without CUDA defines them
// to throw fisherkit::Unavailable("fisherkit was built without CUDA"). Views must carry
// Device::cuda; `stream` is a cudaStream_t passed as void* (nullptr: the default stream).
// The element maths is the same host-and-device code as the CPU path (detail/*.hpp).
#pragma once
#include <cstdint>

#include "fisherkit/heads.hpp"
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

}  // namespace fisherkit::cuda
