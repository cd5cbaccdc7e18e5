// An MLP described by views of its weights, and the per-sample passes over it.
//
// Network (docs/maths/conventions.rst#conventions-network): z_l = W_l a_{l-1} + b_l, a_l = phi_l(z_l) for hidden layers, and the
// output h = z_L is the head's natural parameter (no output non-linearity). A layer may have
// no bias. Parameters are flattened layer by layer: W_l row-major (n_out x n_in), then b_l
// (layout.hpp).
//
// Every function streams over chunks of `chunk` samples (0 picks a size whose workspace fits
// the executor's budget: 32 MiB on the host) and allocates only that documented per-chunk
// workspace; outputs are views the caller owns. float and double. Every function runs where
// its views live (Device::host: OpenMP loops and OpenBLAS; Device::cuda: kernels and cuBLAS
// on `stream`), the same algorithm on both; a build without CUDA throws Unavailable for GPU
// views. Views need unit column stride.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "fisherkit/detail/activations.hpp"
#include "fisherkit/heads.hpp"
#include "fisherkit/layout.hpp"
#include "fisherkit/view.hpp"

namespace fisherkit {

/// One affine layer: weight (n_out x n_in) and bias (n_out); a bias view with no data
/// (data == nullptr, size 0) means the layer has no bias.
template <class T>
struct Layer {
  MatrixView<const T> weight;
  VectorView<const T> bias;
};

/// Parse "identity", "relu", "tanh", "sigmoid", "softplus", "erf", "gelu", "silu".
Activation parse_activation(const std::string& name);
const char* activation_name(Activation a);

/// A validated, non-owning MLP. The constructor checks that the layer shapes chain, that
/// there is one activation per hidden layer, that all views live on one device with unit
/// column stride. It does not scan values (the passes check that weights are finite).
template <class T>
class Mlp {
 public:
  Mlp(std::vector<Layer<T>> layers, std::vector<Activation> activations);

  std::int64_t n_layers() const { return static_cast<std::int64_t>(layers_.size()); }
  std::int64_t input_dim() const { return widths_.front(); }
  std::int64_t output_dim() const { return widths_.back(); }
  /// widths()[0] = input dim, widths()[l] = n_l (units of layer l, l = 1..L).
  const std::vector<std::int64_t>& widths() const { return widths_; }
  /// The flat parameter layout and the offsets of every result shape.
  const Layout& layout() const { return layout_; }
  std::int64_t n_params() const { return layout_.n_params(); }
  /// Offset of W_l (l = 1..L) in the flat parameter vector; b_l (if any) follows at
  /// param_offset(l) + n_l * n_{l-1}.
  std::int64_t param_offset(std::int64_t l) const { return layout_.param_offset(l); }
  const Layer<T>& layer(std::int64_t l) const { return layers_[static_cast<size_t>(l - 1)]; }
  bool has_bias(std::int64_t l) const { return layout_.dims(l).bias; }
  /// Activation after layer l (l = 1..L-1).
  Activation activation(std::int64_t l) const { return activations_[static_cast<size_t>(l - 1)]; }
  /// Where the weights live: every layer's views carry the same device (checked).
  Device device() const { return device_; }

 private:
  std::vector<Layer<T>> layers_;
  std::vector<Activation> activations_;
  std::vector<std::int64_t> widths_;
  Layout layout_;
  Device device_ = Device::host;
};

/// Outputs h (N x C) for inputs X (N x n_0). Cost: one GEMM per layer.
template <class T>
void forward(const Mlp<T>& mlp, MatrixView<const T> X, MatrixView<T> out, std::int64_t chunk = 0,
             Stream stream = nullptr);

/// log p(y_n | x_n) per sample (out: N). y: N x 1 class indices (categorical) or N x C.
template <class T>
void log_likelihood(const Mlp<T>& mlp, const Head& head, MatrixView<const T> X,
                    MatrixView<const T> y, VectorView<T> out, std::int64_t chunk = 0,
                    Stream stream = nullptr);

/// Per-sample gradients of the negative log-likelihood, out: N x P in the flat order.
/// Cost: forward + one backward GEMM per layer + N*P writes.
template <class T>
void per_sample_grads(const Mlp<T>& mlp, const Head& head, MatrixView<const T> X,
                      MatrixView<const T> y, MatrixView<T> out, std::int64_t chunk = 0,
                      Stream stream = nullptr);

/// Gradient of the mean negative log-likelihood (1/N) sum_n -log p(y_n|x_n), out: P.
/// Cost: forward + backward + one GEMM per layer (never forms per-sample gradients).
/// Returns the mean negative log-likelihood (on the GPU this synchronises the stream).
template <class T>
double nll_gradient(const Mlp<T>& mlp, const Head& head, MatrixView<const T> X,
                    MatrixView<const T> y, VectorView<T> out, std::int64_t chunk = 0,
                    Stream stream = nullptr);

/// Output Jacobian dh/dtheta per sample, out: N x (C * P), row n holding the C x P matrix
/// row-major. For small problems only (the caller checks the memory budget).
template <class T>
void output_jacobian(const Mlp<T>& mlp, MatrixView<const T> X, MatrixView<T> out,
                     std::int64_t chunk = 0, Stream stream = nullptr);

/// Directional derivatives of the outputs along a parameter direction v (P, flat order):
/// out1 (N x C) = J_n v by forward-mode tangent propagation, and, when out2 has data,
/// out2 (N x C) = v^T H_{n,c} v (the second directional derivative, forward over forward).
/// Cost: about two forward passes (three with out2).
template <class T>
void jvp(const Mlp<T>& mlp, MatrixView<const T> X, VectorView<const T> v, MatrixView<T> out1,
         MatrixView<T> out2 = {}, std::int64_t chunk = 0, Stream stream = nullptr);

/// Exact Fisher times k vectors at once, out (P x k) = (1/N) sum_n J_n^T I(h_n) J_n V for
/// V (P x k), streamed: one tangent forward pass of k directions and one backward pass of k
/// rows per input, in one pass over X; no Jacobian or matrix is formed.
template <class T>
void fisher_vector_product(const Mlp<T>& mlp, const Head& head, MatrixView<const T> X,
                           MatrixView<const T> V, MatrixView<T> out, std::int64_t chunk = 0,
                           Stream stream = nullptr);

/// Set the threads used by fisherkit's OpenMP loops and by its BLAS (0: the default).
void set_num_threads(int n);
int num_threads();

/// Build facts: version, BLAS, OpenMP threads, CUDA compiled in.
std::string version();
std::string blas_name();
bool openmp_enabled();
bool cuda_compiled();
/// Number of visible CUDA devices (0 when built without CUDA or when no driver/device).
int cuda_device_count();
/// Where cuBLAS was loaded from for the GPU path ("" before the first GPU GEMM, or when it
/// could not be found, or without CUDA).
std::string cublas_library();

}  // namespace fisherkit
