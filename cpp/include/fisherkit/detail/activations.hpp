// Activation functions with first and second derivatives (the Hessian estimator needs
// phi''). Shared by the CPU loops and the CUDA kernels.
#pragma once
#include "fisherkit/detail/hd.hpp"
#include "fisherkit/detail/math.hpp"

namespace fisherkit {

/// Hidden-layer non-linearities. The output layer is always linear (the head applies
/// softmax / sigmoid / exp).
enum class Activation : int { identity = 0, relu = 1, tanh = 2, sigmoid = 3, softplus = 4, erf = 5, gelu = 6, silu = 7 };

namespace detail {

/// phi(z), phi'(z), phi''(z). relu'' is 0 and relu'(0) is taken as 0.
/// erf means phi(z) = erf(z); gelu is z Phi(z) with the normal CDF Phi (PyTorch's GELU with
/// approximate="none"); silu is z sigmoid(z).
/// GELU, z Phi(z), and its first two derivatives from Phi(z) and phi(z) (the normal cdf and
/// pdf at z), which each caller evaluates its own way (one scalar here, a vectorised loop in
/// activations_simd.cpp).
template <class T>
FISHERKIT_HD void gelu_from(T z, T cdf, T pdf, T* f, T* d1, T* d2) {
  *f = z * cdf; *d1 = cdf + z * pdf; *d2 = pdf * (T(2) - z * z);
}

/// SiLU, z sigma(z), and its first two derivatives from s = sigma(z).
template <class T>
FISHERKIT_HD void silu_from(T z, T s, T* f, T* d1, T* d2) {
  const T v = s * (T(1) - s);
  *f = z * s; *d1 = s + z * v; *d2 = v * (T(2) + z * (T(1) - T(2) * s));
}

template <class T>
FISHERKIT_HD void activation_eval(Activation a, T z, T* f, T* d1, T* d2) {
  switch (a) {
    case Activation::identity:
      *f = z; *d1 = T(1); *d2 = T(0);
      return;
    case Activation::relu:
      *f = z > T(0) ? z : T(0); *d1 = z > T(0) ? T(1) : T(0); *d2 = T(0);
      return;
    case Activation::tanh: {
      const T t = fk_tanh(z);
      const T s = T(1) - t * t;
      *f = t; *d1 = s; *d2 = T(-2) * t * s;
      return;
    }
    case Activation::sigmoid: {
      const T s = sigmoid(z);
      const T v = s * (T(1) - s);
      *f = s; *d1 = v; *d2 = v * (T(1) - T(2) * s);
      return;
    }
    case Activation::softplus: {
      const T s = sigmoid(z);
      *f = softplus(z); *d1 = s; *d2 = s * (T(1) - s);
      return;
    }
    case Activation::erf: {
      const T g = T(1.1283791670955126) * fk_exp(-z * z);  // 2/sqrt(pi) e^{-z^2}
      *f = fk_erf(z); *d1 = g; *d2 = T(-2) * z * g;
      return;
    }
    case Activation::gelu:
      gelu_from(z, T(0.5) * (T(1) + fk_erf(z * T(0.7071067811865476))),
                T(0.3989422804014327) * fk_exp(T(-0.5) * z * z), f, d1, d2);
      return;
    case Activation::silu:
      silu_from(z, sigmoid(z), f, d1, d2);
      return;
  }
  *f = z; *d1 = T(1); *d2 = T(0);
}

template <class T>
FISHERKIT_HD T activation_value(Activation a, T z) {
  T f, d1, d2;
  activation_eval(a, z, &f, &d1, &d2);
  return f;
}

}  // namespace detail
}  // namespace fisherkit
