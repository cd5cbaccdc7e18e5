// Names of the enumerations of the public API, parsed and printed in one place.
#include <string>

#include "fisherkit/accumulate.hpp"
#include "fisherkit/heads.hpp"
#include "fisherkit/mlp.hpp"
#include "fisherkit/natgrad.hpp"
#include "fisherkit/variance.hpp"

namespace fisherkit {

Activation parse_activation(const std::string& name) {
  if (name == "identity" || name == "linear") return Activation::identity;
  if (name == "relu") return Activation::relu;
  if (name == "tanh") return Activation::tanh;
  if (name == "sigmoid") return Activation::sigmoid;
  if (name == "softplus") return Activation::softplus;
  if (name == "erf") return Activation::erf;
  if (name == "gelu") return Activation::gelu;
  if (name == "silu") return Activation::silu;
  detail::fail("unknown activation '", name,
               "'; expected one of identity, relu, tanh, sigmoid, softplus, erf, gelu, silu");
}

const char* activation_name(Activation a) {
  switch (a) {
    case Activation::identity: return "identity";
    case Activation::relu: return "relu";
    case Activation::tanh: return "tanh";
    case Activation::sigmoid: return "sigmoid";
    case Activation::softplus: return "softplus";
    case Activation::erf: return "erf";
    case Activation::gelu: return "gelu";
    case Activation::silu: return "silu";
  }
  return "?";
}

Estimator parse_estimator(const std::string& name) {
  if (name == "exact") return Estimator::exact;
  if (name == "score") return Estimator::score;
  if (name == "hessian") return Estimator::hessian;
  if (name == "empirical") return Estimator::empirical;
  detail::fail("unknown estimator '", name, "'; expected one of exact, score, hessian, empirical");
}

const char* estimator_name(Estimator e) {
  switch (e) {
    case Estimator::exact: return "exact";
    case Estimator::score: return "score";
    case Estimator::hessian: return "hessian";
    case Estimator::empirical: return "empirical";
  }
  return "?";
}

Shape parse_shape(const std::string& name) {
  if (name == "full") return Shape::full;
  if (name == "layer") return Shape::layer;
  if (name == "unit") return Shape::unit;
  if (name == "diag") return Shape::diag;
  if (name == "kfac") return Shape::kfac;
  detail::fail("unknown shape '", name, "'; expected one of full, layer, unit, diag, kfac");
}

const char* shape_name(Shape s) {
  switch (s) {
    case Shape::full: return "full";
    case Shape::layer: return "layer";
    case Shape::unit: return "unit";
    case Shape::diag: return "diag";
    case Shape::kfac: return "kfac";
  }
  return "?";
}

Moment parse_moment(const std::string& name) {
  if (name == "v1") return Moment::v1;
  if (name == "v2") return Moment::v2;
  if (name == "c12") return Moment::c12;
  if (name == "fsq") return Moment::fsq;
  if (name == "v1_lower") return Moment::v1_lower;
  if (name == "v1_upper") return Moment::v1_upper;
  if (name == "v2_lower") return Moment::v2_lower;
  if (name == "v2_upper") return Moment::v2_upper;
  detail::fail("unknown moment '", name, "'; expected one of v1, v2, c12, fsq, v1_lower, v1_upper, v2_lower, "
               "v2_upper");
}

Metric parse_metric(const std::string& name) {
  if (name == "exact") return Metric::exact;
  if (name == "score") return Metric::score;
  if (name == "empirical") return Metric::empirical;
  if (name == "bpm") return Metric::bpm;
  detail::fail("unknown metric '", name, "'; expected one of exact, score, empirical, bpm");
}

HeadKind parse_head(const std::string& name) {
  if (name == "gaussian" || name == "normal") return HeadKind::gaussian;
  if (name == "categorical" || name == "softmax") return HeadKind::categorical;
  if (name == "bernoulli") return HeadKind::bernoulli;
  if (name == "poisson") return HeadKind::poisson;
  detail::fail("unknown head '", name, "'; expected one of gaussian, categorical, bernoulli, poisson");
}

const char* head_name(HeadKind k) {
  switch (k) {
    case HeadKind::gaussian: return "gaussian";
    case HeadKind::categorical: return "categorical";
    case HeadKind::bernoulli: return "bernoulli";
    case HeadKind::poisson: return "poisson";
  }
  return "?";
}

}  // namespace fisherkit
