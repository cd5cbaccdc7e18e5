// The flat parameter layout and the offsets of every result shape (layout.hpp).
#include "fisherkit/layout.hpp"

#include <limits>
#include <string>

#include "fisherkit/error.hpp"

namespace fisherkit {

namespace {

constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();

std::int64_t mul(std::int64_t a, std::int64_t b, const char* what) {
  if (a != 0 && b > kMax / a)
    throw TooLarge(std::string("the ") + what + " of this network does not fit in 64-bit indices");
  return a * b;
}

std::int64_t add(std::int64_t a, std::int64_t b, const char* what) {
  if (b > kMax - a)
    throw TooLarge(std::string("the ") + what + " of this network does not fit in 64-bit indices");
  return a + b;
}

}  // namespace

Layout::Layout(std::vector<LayerDims> layers) : dims_(std::move(layers)) {
  FISHERKIT_CHECK(!dims_.empty(), "an MLP needs at least one layer");
  for (size_t i = 0; i < dims_.size(); ++i) {
    const LayerDims& d = dims_[i];
    FISHERKIT_CHECK(d.n_out > 0 && d.n_in > 0, "layer ", i, " must have n_out, n_in >= 1, got (", d.n_out,
                    ", ", d.n_in, ")");
    FISHERKIT_CHECK(i == 0 || d.n_in == dims_[i - 1].n_out, "layer shapes do not chain: layer ", i, " has ",
                    d.n_in, " inputs but layer ", i - 1, " has ", dims_[i - 1].n_out, " outputs");
    const std::int64_t k = d.n_in + (d.bias ? 1 : 0);
    const std::int64_t p = mul(d.n_out, k, "parameter count");
    params_.push_back(add(params_.back(), p, "parameter count"));
    unit_off_.push_back(add(unit_off_.back(), mul(d.n_out, mul(k, k, "unit-block size"), "unit-block size"),
                            "unit-block size"));
    layer_off_.push_back(add(layer_off_.back(), mul(p, p, "layer-block size"), "layer-block size"));
    kfac_off_.push_back(add(kfac_off_.back(), add(mul(k, k, "Kronecker-factor size"),
                                                  mul(d.n_out, d.n_out, "Kronecker-factor size"),
                                                  "Kronecker-factor size"),
                            "Kronecker-factor size"));
  }
}

std::int64_t Layout::size(Shape shape) const {
  switch (shape) {
    case Shape::diag: return n_params();
    case Shape::full: return mul(n_params(), n_params(), "full Fisher size");
    case Shape::unit: return unit_off_.back();
    case Shape::layer: return layer_off_.back();
    case Shape::kfac: return kfac_off_.back();
  }
  return 0;
}

std::int64_t Layout::offset(Shape shape, std::int64_t l) const {
  const size_t i = static_cast<size_t>(l - 1);
  switch (shape) {
    case Shape::diag: return params_[i];
    case Shape::full: return 0;
    case Shape::unit: return unit_off_[i];
    case Shape::layer: return layer_off_[i];
    case Shape::kfac: return kfac_off_[i];
  }
  return 0;
}

}  // namespace fisherkit
