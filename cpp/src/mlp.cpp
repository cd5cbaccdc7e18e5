// MLP construction, validation and the per-sample passes (forward, log-likelihood,
// per-sample gradients, mean-NLL gradient, output Jacobian).
#include "fisherkit/mlp.hpp"

#include <cmath>
#include <string>
#include <vector>

#include "engine.hpp"
#include "validate.hpp"

namespace fisherkit {

Activation parse_activation(const std::string& name) {
  if (name == "identity" || name == "linear") return Activation::identity;
  if (name == "relu") return Activation::relu;
  if (name == "tanh") return Activation::tanh;
  if (name == "sigmoid") return Activation::sigmoid;
  if (name == "softplus") return Activation::softplus;
  if (name == "erf") return Activation::erf;
  detail::fail("unknown activation '", name,
               "'; expected one of identity, relu, tanh, sigmoid, softplus, erf");
}

const char* activation_name(Activation a) {
  switch (a) {
    case Activation::identity: return "identity";
    case Activation::relu: return "relu";
    case Activation::tanh: return "tanh";
    case Activation::sigmoid: return "sigmoid";
    case Activation::softplus: return "softplus";
    case Activation::erf: return "erf";
  }
  return "?";
}

template <class T>
Mlp<T>::Mlp(std::vector<Layer<T>> layers, std::vector<Activation> activations)
    : layers_(std::move(layers)), activations_(std::move(activations)) {
  FISHERKIT_CHECK(!layers_.empty(), "argument 'layers' is empty; an MLP needs at least one layer");
  FISHERKIT_CHECK(activations_.size() + 1 == layers_.size(), "argument 'activations' must have ",
                  layers_.size() - 1, " entries (one per hidden layer), got ", activations_.size());
  widths_.push_back(layers_[0].weight.cols);
  offsets_.push_back(0);
  device_ = layers_[0].weight.device;
  for (size_t l = 0; l < layers_.size(); ++l) {
    const auto& W = layers_[l].weight;
    const auto& b = layers_[l].bias;
    const std::string wn = "layers[" + std::to_string(l) + "].weight";
    const std::string bn = "layers[" + std::to_string(l) + "].bias";
    FISHERKIT_CHECK(W.device == device_ && b.device == device_, "arguments 'layers[0].weight' and '",
                    W.device != device_ ? wn : bn, "' live on different devices (",
                    device_ == Device::cuda ? "GPU" : "host", " and ",
                    device_ == Device::cuda ? "host" : "GPU", "); an MLP's weights must all be on one");
    FISHERKIT_CHECK(W.rows > 0 && W.cols > 0, "argument '", wn, "' must be non-empty, got shape (",
                    W.rows, ", ", W.cols, ")");
    FISHERKIT_CHECK(W.col_stride == 1 || W.cols == 1, "argument '", wn,
                    "' must have unit column stride (row-major)");
    FISHERKIT_CHECK(W.cols == widths_.back(), "layer shapes do not chain: '", wn, "' has ", W.cols,
                    " columns but the previous layer has ", widths_.back(), " outputs");
    FISHERKIT_CHECK(b.size == W.rows, "argument '", bn, "' must have ", W.rows,
                    " entries (rows of ", wn, "), got ", b.size);
    FISHERKIT_CHECK(W.rows == 1 || W.row_stride >= W.cols, "argument '", wn,
                    "' has overlapping rows (row_stride=", W.row_stride, " < cols=", W.cols, ")");
    if (W.rows == 1) layers_[l].weight.row_stride = W.cols;  // any stride is valid for one row
    widths_.push_back(W.rows);
    offsets_.push_back(offsets_.back() + W.rows * W.cols + W.rows);
  }
}

template <class T>
void Mlp<T>::check_finite() const {
  detail::check_host(layers_[0].weight, "layers[0].weight");
  for (size_t l = 0; l < layers_.size(); ++l) {
    const auto& W = layers_[l].weight;
    for (std::int64_t i = 0; i < W.rows; ++i)
      for (std::int64_t j = 0; j < W.cols; ++j)
        FISHERKIT_CHECK(std::isfinite(W(i, j)), "argument 'layers[", l,
                        "].weight' contains NaN or Inf (at [", i, ", ", j, "])");
    const auto& b = layers_[l].bias;
    for (std::int64_t i = 0; i < b.size; ++i)
      FISHERKIT_CHECK(std::isfinite(b[i]), "argument 'layers[", l,
                      "].bias' contains NaN or Inf (at [", i, "])");
  }
}

namespace {

using detail::ForwardCache;

template <class T>
std::int64_t forward_bytes(const Mlp<T>& mlp, std::int64_t M) {
  return static_cast<std::int64_t>(sizeof(T)) *
         (4 * detail::sum_widths(mlp) + 2 * M * detail::max_width(mlp));
}

}  // namespace

template <class T>
void forward(const Mlp<T>& mlp, MatrixView<const T> X, MatrixView<T> out, std::int64_t chunk) {
  detail::check_inputs(mlp, X, "X");
  detail::check_host(out, "out");
  detail::check_shape(out, X.rows, mlp.output_dim(), "out");
  const std::int64_t N = X.rows, C = mlp.output_dim();
  chunk = detail::pick_chunk(chunk, N, forward_bytes(mlp, 1));
  ForwardCache<T> f;
  for (std::int64_t s0 = 0; s0 < N; s0 += chunk) {
    const std::int64_t n = std::min(chunk, N - s0);
    detail::forward_chunk(mlp, X.rows_slice(s0, n), f, false, false);
    const T* h = f.z[mlp.n_layers()].data();
    for (std::int64_t s = 0; s < n; ++s)
      for (std::int64_t c = 0; c < C; ++c) out(s0 + s, c) = h[s * C + c];
  }
}

template <class T>
void log_likelihood(const Mlp<T>& mlp, const Head& head, MatrixView<const T> X,
                    MatrixView<const T> y, VectorView<T> out, std::int64_t chunk) {
  detail::check_inputs(mlp, X, "X");
  check_head(head, mlp.output_dim());
  check_labels(head, y, X.rows, mlp.output_dim(), "y");
  detail::check_host(out, "out");
  FISHERKIT_CHECK(out.size == X.rows, "argument 'out' must have ", X.rows, " entries, got ", out.size);
  const std::int64_t N = X.rows, C = mlp.output_dim();
  chunk = detail::pick_chunk(chunk, N, forward_bytes(mlp, 1));
  ForwardCache<T> f;
  for (std::int64_t s0 = 0; s0 < N; s0 += chunk) {
    const std::int64_t n = std::min(chunk, N - s0);
    detail::forward_chunk(mlp, X.rows_slice(s0, n), f, false, false);
    const T* h = f.z[mlp.n_layers()].data();
    for (std::int64_t s = 0; s < n; ++s)
      out[s0 + s] = detail::head_log_likelihood(head.kind, T(head.sigma), h + s * C, y.row(s0 + s), C);
  }
}

namespace {

/// Forward one chunk and fill D (n x C) with the NLL residuals eta - t(y).
template <class T>
double residual_chunk(const Mlp<T>& mlp, const Head& head, MatrixView<const T> Xc,
                      MatrixView<const T> yc, ForwardCache<T>& f, std::vector<T>& D) {
  const std::int64_t n = Xc.rows, C = mlp.output_dim();
  detail::forward_chunk(mlp, Xc, f, true, false);
  const T* h = f.z[mlp.n_layers()].data();
  D.resize(static_cast<size_t>(n * C));
  double nll = 0.0;
  for (std::int64_t s = 0; s < n; ++s) {
    detail::head_residual(head.kind, T(head.sigma), h + s * C, yc.row(s), C, D.data() + s * C);
    nll -= double(detail::head_log_likelihood(head.kind, T(head.sigma), h + s * C, yc.row(s), C));
  }
  return nll;
}

}  // namespace

template <class T>
void per_sample_grads(const Mlp<T>& mlp, const Head& head, MatrixView<const T> X,
                      MatrixView<const T> y, MatrixView<T> out, std::int64_t chunk) {
  detail::check_inputs(mlp, X, "X");
  check_head(head, mlp.output_dim());
  check_labels(head, y, X.rows, mlp.output_dim(), "y");
  detail::check_host(out, "out");
  detail::check_shape(out, X.rows, mlp.n_params(), "out");
  detail::check_rows_unit_stride(out, "out");
  const std::int64_t N = X.rows;
  chunk = detail::pick_chunk(chunk, N, forward_bytes(mlp, 1));
  ForwardCache<T> f;
  std::vector<T> D, buf;
  for (std::int64_t s0 = 0; s0 < N; s0 += chunk) {
    const std::int64_t n = std::min(chunk, N - s0);
    residual_chunk(mlp, head, X.rows_slice(s0, n), y.rows_slice(s0, n), f, D);
    detail::backward_chunk(mlp, f, D, buf, 1, [&](std::int64_t l, const T* Dl, std::int64_t no) {
      const std::int64_t ni = mlp.widths()[l - 1], off = mlp.param_offset(l);
      const T* A = f.act(l - 1);
      const std::int64_t lda = f.act_ld(mlp, l - 1);
      detail::parallel_for(n, no * ni, [&](std::int64_t s) {
        T* o = out.row(s0 + s) + off;
        const T* a = A + s * lda;
        const T* d = Dl + s * no;
        for (std::int64_t u = 0; u < no; ++u) {
          const T du = d[u];
          T* ou = o + u * ni;
          for (std::int64_t j = 0; j < ni; ++j) ou[j] = du * a[j];
        }
        T* ob = o + no * ni;
        for (std::int64_t u = 0; u < no; ++u) ob[u] = d[u];
      });
    });
  }
}

/// acc (P, float64) += sum over the chunk of J_n^T D_n for top rows D (n x C), one row per
/// sample: per layer a GEMM D_l^T abar. D and buf are consumed.
template <class T>
void accumulate_vjp(const Mlp<T>& mlp, const ForwardCache<T>& f, std::vector<T>& D,
                    std::vector<T>& buf, std::vector<double>& acc, std::vector<T>& tmp) {
  const std::int64_t n = f.n;
  detail::backward_chunk(mlp, f, D, buf, 1, [&](std::int64_t l, const T* Dl, std::int64_t no) {
    const std::int64_t ni = mlp.widths()[l - 1], off = mlp.param_offset(l);
    tmp.resize(static_cast<size_t>(no * ni));
    // dW = D^T A over the chunk, summed in T, then added to the float64 accumulator.
    blas::gemm(true, false, no, ni, n, T(1), Dl, no, f.act(l - 1), f.act_ld(mlp, l - 1), T(0),
               tmp.data(), ni);
    for (std::int64_t k = 0; k < no * ni; ++k) acc[off + k] += double(tmp[k]);
    for (std::int64_t s = 0; s < n; ++s)
      for (std::int64_t u = 0; u < no; ++u) acc[off + no * ni + u] += double(Dl[s * no + u]);
  });
}

template <class T>
double nll_gradient(const Mlp<T>& mlp, const Head& head, MatrixView<const T> X,
                    MatrixView<const T> y, VectorView<T> out, std::int64_t chunk) {
  detail::check_inputs(mlp, X, "X");
  check_head(head, mlp.output_dim());
  check_labels(head, y, X.rows, mlp.output_dim(), "y");
  detail::check_host(out, "out");
  FISHERKIT_CHECK(out.size == mlp.n_params(), "argument 'out' must have ", mlp.n_params(),
                  " entries, got ", out.size);
  const std::int64_t N = X.rows, P = mlp.n_params();
  chunk = detail::pick_chunk(chunk, N, forward_bytes(mlp, 1));
  std::vector<double> acc(static_cast<size_t>(P), 0.0);
  std::vector<T> tmp;
  ForwardCache<T> f;
  std::vector<T> D, buf;
  double nll = 0.0;
  for (std::int64_t s0 = 0; s0 < N; s0 += chunk) {
    const std::int64_t n = std::min(chunk, N - s0);
    nll += residual_chunk(mlp, head, X.rows_slice(s0, n), y.rows_slice(s0, n), f, D);
    accumulate_vjp(mlp, f, D, buf, acc, tmp);
  }
  for (std::int64_t i = 0; i < P; ++i) out[i] = T(acc[i] / double(N));
  return nll / double(N);
}

namespace {

/// Tangent (and second-order tangent) forward pass along v for one chunk whose forward
/// state f is computed (with phi', and phi'' when dd is wanted). d: n x C first
/// derivatives of h; dd (optional): second derivatives.
template <class T>
void tangent_chunk(const Mlp<T>& mlp, const ForwardCache<T>& f, const T* v, std::vector<T>& d,
                   std::vector<T>* dd, std::vector<T>& scratch) {
  const std::int64_t L = mlp.n_layers(), n = f.n;
  const auto& w = mlp.widths();
  std::vector<T> da, dda;  // tangent (and 2nd-order tangent) of a_{l-1}; empty: zero (input)
  for (std::int64_t l = 1; l <= L; ++l) {
    const std::int64_t no = w[l], ni = w[l - 1], off = mlp.param_offset(l);
    const T* Wd = v + off;           // dW_l, row-major no x ni
    const T* bd = v + off + no * ni;  // db_l
    const auto& W = mlp.layer(l).weight;
    std::vector<T> dz(static_cast<size_t>(n * no)), ddz;
    // dz = a_{l-1} dW^T + da_{l-1} W^T + db
    blas::gemm(false, true, n, no, ni, T(1), f.act(l - 1), f.act_ld(mlp, l - 1), Wd, ni, T(0),
               dz.data(), no);
    if (!da.empty())
      blas::gemm(false, true, n, no, ni, T(1), da.data(), ni, W.data, W.row_stride, T(1), dz.data(), no);
    for (std::int64_t s = 0; s < n; ++s)
      for (std::int64_t u = 0; u < no; ++u) dz[s * no + u] += bd[u];
    if (dd) {
      // ddz = 2 da_{l-1} dW^T + dda_{l-1} W^T
      ddz.assign(static_cast<size_t>(n * no), T(0));
      if (!da.empty())
        blas::gemm(false, true, n, no, ni, T(2), da.data(), ni, Wd, ni, T(0), ddz.data(), no);
      if (!dda.empty())
        blas::gemm(false, true, n, no, ni, T(1), dda.data(), ni, W.data, W.row_stride, T(1), ddz.data(), no);
    }
    if (l == L) {
      d.swap(dz);
      if (dd) dd->swap(ddz);
      break;
    }
    const T* g1 = f.d1[l].data();
    da.resize(dz.size());
    for (size_t k = 0; k < dz.size(); ++k) da[k] = g1[k] * dz[k];
    if (dd) {
      const T* g2 = f.d2[l].data();
      dda.resize(dz.size());
      for (size_t k = 0; k < dz.size(); ++k) dda[k] = g2[k] * dz[k] * dz[k] + g1[k] * ddz[k];
    }
  }
  (void)scratch;
}

template <class T>
void check_direction(const Mlp<T>& mlp, VectorView<const T> v) {
  detail::check_host(v, "v");
  FISHERKIT_CHECK(v.size == mlp.n_params(), "argument 'v' must have ", mlp.n_params(),
                  " entries (one per parameter), got ", v.size);
  FISHERKIT_CHECK(v.stride == 1, "argument 'v' must be contiguous");
  for (std::int64_t i = 0; i < v.size; ++i)
    FISHERKIT_CHECK(std::isfinite(v[i]), "argument 'v' contains NaN or Inf (at [", i, "])");
}

}  // namespace

template <class T>
void jvp(const Mlp<T>& mlp, MatrixView<const T> X, VectorView<const T> v, MatrixView<T> out1,
         MatrixView<T> out2, std::int64_t chunk) {
  detail::check_inputs(mlp, X, "X");
  check_direction(mlp, v);
  const std::int64_t N = X.rows, C = mlp.output_dim();
  detail::check_host(out1, "out1");
  detail::check_shape(out1, N, C, "out1");
  const bool second = out2.data != nullptr;
  if (second) {
    detail::check_host(out2, "out2");
    detail::check_shape(out2, N, C, "out2");
  }
  chunk = detail::pick_chunk(chunk, N, forward_bytes(mlp, 3));
  ForwardCache<T> f;
  std::vector<T> d, dd, scratch;
  for (std::int64_t s0 = 0; s0 < N; s0 += chunk) {
    const std::int64_t n = std::min(chunk, N - s0);
    detail::forward_chunk(mlp, X.rows_slice(s0, n), f, true, second);
    tangent_chunk(mlp, f, v.data, d, second ? &dd : static_cast<std::vector<T>*>(nullptr), scratch);
    for (std::int64_t s = 0; s < n; ++s)
      for (std::int64_t c = 0; c < C; ++c) {
        out1(s0 + s, c) = d[s * C + c];
        if (second) out2(s0 + s, c) = dd[s * C + c];
      }
  }
}

template <class T>
void fisher_vector_product(const Mlp<T>& mlp, const Head& head, MatrixView<const T> X,
                           VectorView<const T> v, VectorView<T> out, std::int64_t chunk) {
  detail::check_inputs(mlp, X, "X");
  check_head(head, mlp.output_dim());
  check_direction(mlp, v);
  detail::check_host(out, "out");
  FISHERKIT_CHECK(out.size == mlp.n_params(), "argument 'out' must have ", mlp.n_params(), " entries");
  const std::int64_t N = X.rows, C = mlp.output_dim(), P = mlp.n_params();
  chunk = detail::pick_chunk(chunk, N, forward_bytes(mlp, 3));
  std::vector<double> acc(static_cast<size_t>(P), 0.0);
  ForwardCache<T> f;
  std::vector<T> d, D, buf, tmp, scratch, I(static_cast<size_t>(C * C));
  for (std::int64_t s0 = 0; s0 < N; s0 += chunk) {
    const std::int64_t n = std::min(chunk, N - s0);
    detail::forward_chunk(mlp, X.rows_slice(s0, n), f, true, false);
    tangent_chunk(mlp, f, v.data, d, static_cast<std::vector<T>*>(nullptr), scratch);
    const T* h = f.z[mlp.n_layers()].data();
    D.assign(static_cast<size_t>(n * C), T(0));
    for (std::int64_t s = 0; s < n; ++s) {  // D_n = I(h_n) J_n v
      detail::head_covariance(head.kind, T(head.sigma), h + s * C, C, I.data());
      for (std::int64_t a = 0; a < C; ++a) {
        T acc_a = T(0);
        for (std::int64_t b = 0; b < C; ++b) acc_a += I[a * C + b] * d[s * C + b];
        D[s * C + a] = acc_a;
      }
    }
    accumulate_vjp(mlp, f, D, buf, acc, tmp);
  }
  for (std::int64_t i = 0; i < P; ++i) out[i] = T(acc[i] / double(N));
}

template <class T>
void output_jacobian(const Mlp<T>& mlp, MatrixView<const T> X, MatrixView<T> out,
                     std::int64_t chunk) {
  detail::check_inputs(mlp, X, "X");
  const std::int64_t N = X.rows, C = mlp.output_dim(), P = mlp.n_params();
  detail::check_host(out, "out");
  detail::check_shape(out, N, C * P, "out");
  detail::check_rows_unit_stride(out, "out");
  chunk = detail::pick_chunk(chunk, N, forward_bytes(mlp, C));
  ForwardCache<T> f;
  std::vector<T> D, buf;
  for (std::int64_t s0 = 0; s0 < N; s0 += chunk) {
    const std::int64_t n = std::min(chunk, N - s0);
    detail::forward_chunk(mlp, X.rows_slice(s0, n), f, true, false);
    D.assign(static_cast<size_t>(n * C * C), T(0));
    for (std::int64_t s = 0; s < n; ++s)
      for (std::int64_t c = 0; c < C; ++c) D[(s * C + c) * C + c] = T(1);
    detail::backward_chunk(mlp, f, D, buf, C, [&](std::int64_t l, const T* Dl, std::int64_t no) {
      const std::int64_t ni = mlp.widths()[l - 1], off = mlp.param_offset(l);
      const T* A = f.act(l - 1);
      const std::int64_t lda = f.act_ld(mlp, l - 1);
      detail::parallel_for(n * C, no * ni, [&](std::int64_t r) {
        const std::int64_t s = r / C, c = r % C;
        T* o = out.row(s0 + s) + c * P + off;
        const T* a = A + s * lda;
        const T* d = Dl + r * no;
        for (std::int64_t u = 0; u < no; ++u)
          for (std::int64_t j = 0; j < ni; ++j) o[u * ni + j] = d[u] * a[j];
        for (std::int64_t u = 0; u < no; ++u) o[no * ni + u] = d[u];
      });
    });
  }
}

#define FISHERKIT_INSTANTIATE_MLP(T)                                                            \
  template class Mlp<T>;                                                                        \
  template void forward<T>(const Mlp<T>&, MatrixView<const T>, MatrixView<T>, std::int64_t);     \
  template void log_likelihood<T>(const Mlp<T>&, const Head&, MatrixView<const T>,              \
                                  MatrixView<const T>, VectorView<T>, std::int64_t);            \
  template void per_sample_grads<T>(const Mlp<T>&, const Head&, MatrixView<const T>,            \
                                    MatrixView<const T>, MatrixView<T>, std::int64_t);          \
  template double nll_gradient<T>(const Mlp<T>&, const Head&, MatrixView<const T>,              \
                                  MatrixView<const T>, VectorView<T>, std::int64_t);            \
  template void output_jacobian<T>(const Mlp<T>&, MatrixView<const T>, MatrixView<T>, std::int64_t); \
  template void jvp<T>(const Mlp<T>&, MatrixView<const T>, VectorView<const T>, MatrixView<T>,   \
                       MatrixView<T>, std::int64_t);                                            \
  template void fisher_vector_product<T>(const Mlp<T>&, const Head&, MatrixView<const T>,        \
                                         VectorView<const T>, VectorView<T>, std::int64_t);

FISHERKIT_INSTANTIATE_MLP(float)
FISHERKIT_INSTANTIATE_MLP(double)

}  // namespace fisherkit
