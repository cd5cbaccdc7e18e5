// The one table of operations that run on either device. Each entry is written once:
//   OP(T, return type, name, (parameters), (arguments), device of the call)
// (the parameters without the trailing `Stream stream`, which every operation takes). From
// it come the backend declarations name_cpu / name_cuda with identical signatures, the public
// functions (cpp/src/dispatch.cpp: the device of the views picks the backend), the backends'
// bodies (cpp/src/cpu/backend.cpp and cuda/backend_*.cu: the pass `passes::name_pass` run by
// that device's executor) and, in a build without CUDA, the stubs (cpp/src/no_cuda.cpp).
// Private to the library.
#pragma once
#include <cstdint>
#include <vector>

#include "fisherkit/accumulate.hpp"
#include "fisherkit/dpr2.hpp"
#include "fisherkit/heads.hpp"
#include "fisherkit/kfac.hpp"
#include "fisherkit/mlp.hpp"
#include "fisherkit/natgrad.hpp"
#include "fisherkit/variance.hpp"

#define FISHERKIT_UNPAREN(...) __VA_ARGS__
#define FISHERKIT_WITH_STREAM(...) (__VA_ARGS__, Stream stream)

// Passes of cpp/src/passes (the same code for both executors).
#define FISHERKIT_MLP_OPS(OP, T)                                                                                  \
  OP(T, void, forward, (const Mlp<T>& mlp, MatrixView<const T> X, MatrixView<T> out, std::int64_t chunk),          \
     (mlp, X, out, chunk), mlp.device())                                                                           \
  OP(T, void, log_likelihood,                                                                                      \
     (const Mlp<T>& mlp, const Head& head, MatrixView<const T> X, MatrixView<const T> y, VectorView<T> out,        \
      std::int64_t chunk),                                                                                         \
     (mlp, head, X, y, out, chunk), mlp.device())                                                                  \
  OP(T, void, per_sample_grads,                                                                                    \
     (const Mlp<T>& mlp, const Head& head, MatrixView<const T> X, MatrixView<const T> y, MatrixView<T> out,        \
      std::int64_t chunk),                                                                                         \
     (mlp, head, X, y, out, chunk), mlp.device())                                                                  \
  OP(T, double, nll_gradient,                                                                                      \
     (const Mlp<T>& mlp, const Head& head, MatrixView<const T> X, MatrixView<const T> y, VectorView<T> out,        \
      std::int64_t chunk),                                                                                         \
     (mlp, head, X, y, out, chunk), mlp.device())                                                                  \
  OP(T, void, output_jacobian, (const Mlp<T>& mlp, MatrixView<const T> X, MatrixView<T> out, std::int64_t chunk),  \
     (mlp, X, out, chunk), mlp.device())                                                                           \
  OP(T, void, jvp,                                                                                                 \
     (const Mlp<T>& mlp, MatrixView<const T> X, VectorView<const T> v, MatrixView<T> out1, MatrixView<T> out2,     \
      std::int64_t chunk),                                                                                         \
     (mlp, X, v, out1, out2, chunk), mlp.device())                                                                 \
  OP(T, void, fisher_vector_product,                                                                               \
     (const Mlp<T>& mlp, const Head& head, MatrixView<const T> X, MatrixView<const T> V, MatrixView<T> out,        \
      std::int64_t chunk),                                                                                         \
     (mlp, head, X, V, out, chunk), mlp.device())

#define FISHERKIT_FISHER_OPS(OP, T)                                                                               \
  OP(T, void, fisher,                                                                                              \
     (const Mlp<T>& mlp, const Head& head, MatrixView<const T> X, MatrixView<const T> y, const FisherOptions& opt,  \
      VectorView<T> out),                                                                                          \
     (mlp, head, X, y, opt, out), mlp.device())                                                                    \
  OP(T, void, output_hessians, (const Mlp<T>& mlp, MatrixView<const T> X, MatrixView<T> out, std::int64_t chunk),  \
     (mlp, X, out, chunk), mlp.device())

#define FISHERKIT_VARIANCE_OPS(OP, T)                                                                             \
  OP(T, void, variance_sum,                                                                                        \
     (const Mlp<T>& mlp, const Head& head, MatrixView<const T> X, Moment which, Shape shape, VectorView<T> out,     \
      std::int64_t chunk),                                                                                         \
     (mlp, head, X, which, shape, out, chunk), mlp.device())                                                       \
  OP(T, void, output_gram, (const Mlp<T>& mlp, MatrixView<const T> X, MatrixView<T> out, std::int64_t chunk),      \
     (mlp, X, out, chunk), mlp.device())                                                                           \
  OP(T, double, unit_statistics,                                                                                   \
     (const Mlp<T>& mlp, const Head& head, MatrixView<const T> X, MatrixView<const T> y,                           \
      const UnitStatsOptions& opt, const std::vector<UnitStats<T>>& stats, VectorView<T> grad),                    \
     (mlp, head, X, y, opt, stats, grad), mlp.device())

#define FISHERKIT_KFAC_OPS(OP, T)                                                                                 \
  OP(T, void, kfac_factors,                                                                                        \
     (const Mlp<T>& mlp, const Head& head, MatrixView<const T> X, MatrixView<const T> y, const FisherOptions& opt,  \
      VectorView<T> out),                                                                                          \
     (mlp, head, X, y, opt, out), mlp.device())                                                                    \
  OP(T, void, ekfac_diagonal,                                                                                      \
     (const Mlp<T>& mlp, const Head& head, MatrixView<const T> X, MatrixView<const T> y, const FisherOptions& opt,  \
      VectorView<const T> bases, VectorView<T> out),                                                               \
     (mlp, head, X, y, opt, bases, out), mlp.device())                                                             \
  OP(T, void, kfac_error_sums,                                                                                     \
     (const Mlp<T>& mlp, const Head& head, MatrixView<const T> X, MatrixView<const T> y, const FisherOptions& opt,  \
      VectorView<const T> factors, VectorView<const T> bases, std::int64_t keep_bytes, VectorView<double> sq,       \
      VectorView<double> cross, VectorView<T> diag),                                                               \
     (mlp, head, X, y, opt, factors, bases, keep_bytes, sq, cross, diag), mlp.device())                            \
  OP(T, void, kfac_variance_sum,                                                                                   \
     (const Mlp<T>& mlp, const Head& head, MatrixView<const T> X, VectorView<const T> bases, VectorView<T> out,     \
      std::int64_t chunk),                                                                                         \
     (mlp, head, X, bases, out, chunk), mlp.device())

#define FISHERKIT_HEAD_OPS(OP, T)                                                                                 \
  OP(T, void, head_log_likelihood,                                                                                 \
     (const Head& head, MatrixView<const T> H, MatrixView<const T> y, VectorView<T> out), (head, H, y, out),       \
     H.device)                                                                                                     \
  OP(T, void, head_mean, (const Head& head, MatrixView<const T> H, MatrixView<T> out), (head, H, out), H.device)   \
  OP(T, void, head_covariance, (const Head& head, MatrixView<const T> H, MatrixView<T> out, bool sqrt),            \
     (head, H, out, sqrt), H.device)                                                                               \
  OP(T, void, head_sample,                                                                                         \
     (const Head& head, MatrixView<const T> H, std::uint64_t seed, std::int64_t S, MatrixView<T> out,              \
      std::int64_t index_offset),                                                                                  \
     (head, H, seed, S, out, index_offset), H.device)

#define FISHERKIT_PASS_OPS(OP, T)                                                          \
  FISHERKIT_MLP_OPS(OP, T) FISHERKIT_FISHER_OPS(OP, T) FISHERKIT_VARIANCE_OPS(OP, T) FISHERKIT_KFAC_OPS(OP, T) \
  FISHERKIT_HEAD_OPS(OP, T)

// Custom kernels: written separately for each device (cpp/src/dpr2.cpp, cuda/dpr2.cu), the
// same table gives their declarations, the dispatch and the stubs.
#define FISHERKIT_KERNEL_OPS(OP, T)                                                                                \
  OP(T, void, dpr2_solve,                                                                                          \
     (MatrixView<const T> d, MatrixView<const T> U, MatrixView<const T> S, MatrixView<const T> rhs,                \
      std::int64_t k, double damping, MatrixView<T> out, VectorView<int> status),                                 \
     (d, U, S, rhs, k, damping, out, status), d.device)

#define FISHERKIT_ALL_OPS(OP, T) FISHERKIT_PASS_OPS(OP, T) FISHERKIT_KERNEL_OPS(OP, T)

#define FISHERKIT_DECLARE_BACKENDS(T_, R, name, params, args, dev)  \
  template <class T>                                                 \
  R name##_cpu FISHERKIT_WITH_STREAM params;                         \
  template <class T>                                                 \
  R name##_cuda FISHERKIT_WITH_STREAM params;

namespace fisherkit {
FISHERKIT_ALL_OPS(FISHERKIT_DECLARE_BACKENDS, T)
}  // namespace fisherkit

/// Define and instantiate name_<backend> for every pass of TABLE: construct the executor
/// (MAKE_EXEC, which may use `stream`) and run passes::name_pass with it.
#define FISHERKIT_DEFINE_PASS(T_, R, name, params, args, dev, SUFFIX, MAKE_EXEC) \
  template <class T>                                                             \
  R name##SUFFIX FISHERKIT_WITH_STREAM params {                                  \
    (void)stream;                                                                \
    MAKE_EXEC;                                                                   \
    return passes::name##_pass(x, FISHERKIT_UNPAREN args);                       \
  }
#define FISHERKIT_INSTANTIATE(T_, R, name, params, args, dev, SUFFIX) template R name##SUFFIX<T_> FISHERKIT_WITH_STREAM params;
