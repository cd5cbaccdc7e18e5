// The flat parameter layout of an MLP and where each result shape puts every layer's values.
// This is the only definition: the passes index through it, and Python reads it from
// fisherkit._core.layout.
//
// Parameters, layer by layer (l = 1..L): W_l row-major (n_out x n_in), then b_l (n_out) when
// the layer has a bias. A unit u of layer l owns row u of W_l and b_l[u]; its augmented input
// is abar = (a_{l-1}, 1) with a bias, a_{l-1} without, of width k_l = n_in + bias.
//
// Result shapes (flat outputs, all blocks concatenated in layer order):
//   diag   P values, in the parameter order
//   unit   per layer n_out blocks of k_l x k_l (row-major), unit u's entries in the order
//          (W_l[u, 0..n_in-1], b_l[u])
//   layer  per layer one D_l x D_l block, D_l = n_out k_l, in that layer's parameter order
//   full   P x P, row-major
//   kfac   per layer the Kronecker factors A_l (k_l x k_l, the augmented-input moment)
//          then G_l (n_out x n_out, the output-gradient moment), both row-major
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "fisherkit/detail/hd.hpp"

namespace fisherkit {

enum class Shape : int { full = 0, layer = 1, unit = 2, diag = 3, kfac = 4 };

/// Dimensions of one affine layer.
struct LayerDims {
  std::int64_t n_out = 0;
  std::int64_t n_in = 0;
  bool bias = true;
};

class Layout {
 public:
  Layout() = default;
  /// Throws Error when a layer is empty or the layers do not chain, TooLarge when a result
  /// size overflows 64-bit integers.
  explicit Layout(std::vector<LayerDims> layers);

  std::int64_t n_layers() const { return static_cast<std::int64_t>(dims_.size()); }
  /// Layer l = 1..L.
  const LayerDims& dims(std::int64_t l) const { return dims_[static_cast<std::size_t>(l - 1)]; }
  std::int64_t n_params() const { return params_.back(); }
  /// Offset of W_l in the flat parameter vector; b_l follows at param_offset(l) + n_out n_in.
  std::int64_t param_offset(std::int64_t l) const { return params_[static_cast<std::size_t>(l - 1)]; }
  /// Parameters of layer l: n_out k_l.
  std::int64_t layer_params(std::int64_t l) const { return dims(l).n_out * unit_width(l); }
  /// k_l = n_in + (bias ? 1 : 0): the augmented input width, the side of a unit block.
  std::int64_t unit_width(std::int64_t l) const { return dims(l).n_in + (dims(l).bias ? 1 : 0); }
  /// Values of the flat result of `shape`.
  std::int64_t size(Shape shape) const;
  /// Where layer l's values start in the flat result of `shape` (full: 0 for every layer).
  std::int64_t offset(Shape shape, std::int64_t l) const;
  /// Index, within layer l's parameters, of weight (u, j) (j < n_in) or of bias u (j == n_in).
  /// Host and device: the passes' element loops call it on either executor.
  static FISHERKIT_HD std::int64_t local_index(std::int64_t u, std::int64_t j, std::int64_t n_out,
                                  std::int64_t n_in) {
    return j < n_in ? u * n_in + j : n_out * n_in + u;
  }

 private:
  std::vector<LayerDims> dims_;
  std::vector<std::int64_t> params_{0};
  std::vector<std::int64_t> unit_off_{0}, layer_off_{0}, kfac_off_{0};
};

}  // namespace fisherkit
