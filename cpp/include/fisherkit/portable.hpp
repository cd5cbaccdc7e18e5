// The CUDA backend's algorithms run on the host. The GPU passes (cuda.hpp) are written once
// against an executor: device buffers, kernels and cuBLAS on the GPU; vectors, OpenMP
// loops and OpenBLAS here. These functions run that same code with the host executor, so
// the GPU algorithms are checked, line for line, on machines without a GPU. They take host
// memory and give the results of the host functions (mlp.hpp, accumulate.hpp,
// variance.hpp) to floating-point tolerance; the host functions are the faster CPU path.
#pragma once
#include <cstdint>

#include "fisherkit/accumulate.hpp"
#include "fisherkit/heads.hpp"
#include "fisherkit/mlp.hpp"
#include "fisherkit/variance.hpp"
#include "fisherkit/view.hpp"

namespace fisherkit::portable {

template <class T>
void forward(const Mlp<T>& mlp, MatrixView<const T> X, MatrixView<T> out, std::int64_t chunk = 0);
template <class T>
void log_likelihood(const Mlp<T>& mlp, const Head& head, MatrixView<const T> X, MatrixView<const T> y,
                    VectorView<T> out, std::int64_t chunk = 0);
template <class T>
void per_sample_grads(const Mlp<T>& mlp, const Head& head, MatrixView<const T> X,
                      MatrixView<const T> y, MatrixView<T> out, std::int64_t chunk = 0);
template <class T>
double nll_gradient(const Mlp<T>& mlp, const Head& head, MatrixView<const T> X, MatrixView<const T> y,
                    VectorView<T> out, std::int64_t chunk = 0);
template <class T>
void fisher(const Mlp<T>& mlp, const Head& head, MatrixView<const T> X, MatrixView<const T> y,
            const FisherOptions& opt, VectorView<T> out);
template <class T>
void variance_sum(const Mlp<T>& mlp, const Head& head, MatrixView<const T> X, Moment which, Shape shape,
                  VectorView<T> out, std::int64_t chunk = 0);

}  // namespace fisherkit::portable
