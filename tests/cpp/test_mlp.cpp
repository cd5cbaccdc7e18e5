// The MLP passes (fisherkit/mlp.hpp), float and double: construction checks, forward
// against a hand loop, per-sample gradients and output Jacobians against central
// differences, the mean-NLL gradient against the mean of the per-sample gradients, and
// independence of the chunk size, the row stride of the inputs and the thread count.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "fisherkit/fisherkit.hpp"
#include "test_util.hpp"

namespace fk = fisherkit;
using fk::Activation;
using fk::HeadKind;

namespace {

const HeadKind kAllHeads[] = {HeadKind::gaussian, HeadKind::categorical, HeadKind::bernoulli,
                              HeadKind::poisson};

template <class T>
double ulp() {
  return std::is_same_v<T, float> ? 1.2e-7 : 2.3e-16;
}
template <class T>
T fd_step() {
  return std::is_same_v<T, float> ? T(1e-2) : T(1e-5);
}
template <class T>
double fd_tol() {
  return std::is_same_v<T, float> ? 3e-3 : 1e-7;
}

/// Uniform in [lo, hi) from a 64-bit engine (portable, unlike the std distributions).
double uniform(std::mt19937_64& g, double lo, double hi) {
  return lo + (hi - lo) * double(g() >> 11) * 1.1102230246251565e-16;
}

/// An MLP that owns its weights. The Mlp built by mlp() holds views into this storage, so
/// changing a parameter through param() changes what that Mlp computes.
template <class T>
struct Net {
  std::vector<std::int64_t> widths;
  std::vector<Activation> acts;
  std::vector<std::vector<T>> W, b;

  Net(std::vector<std::int64_t> w, std::vector<Activation> a, std::uint64_t seed)
      : widths(std::move(w)), acts(std::move(a)) {
    std::mt19937_64 g(seed);
    for (size_t l = 1; l < widths.size(); ++l) {
      const double s = 1.5 / std::sqrt(double(widths[l - 1]));
      W.emplace_back(widths[l] * widths[l - 1]);
      b.emplace_back(widths[l]);
      for (auto& v : W.back()) v = T(uniform(g, -s, s));
      for (auto& v : b.back()) v = T(uniform(g, -0.5, 0.5));
    }
  }
  std::int64_t L() const { return static_cast<std::int64_t>(W.size()); }
  std::int64_t C() const { return widths.back(); }
  std::int64_t P() const {
    std::int64_t p = 0;
    for (size_t l = 1; l < widths.size(); ++l) p += widths[l] * widths[l - 1] + widths[l];
    return p;
  }
  std::vector<fk::Layer<T>> layers() const {
    std::vector<fk::Layer<T>> out;
    for (size_t l = 0; l < W.size(); ++l)
      out.push_back({fk::matrix_view<const T>(W[l].data(), widths[l + 1], widths[l]),
                     fk::vector_view<const T>(b[l].data(), widths[l + 1])});
    return out;
  }
  fk::Mlp<T> mlp() const { return fk::Mlp<T>(layers(), acts); }
  /// Parameter p in the documented flat order: W_1 row-major, b_1, W_2, b_2, ...
  T& param(std::int64_t p) {
    for (size_t l = 0; l < W.size(); ++l) {
      const std::int64_t nw = static_cast<std::int64_t>(W[l].size()), nb = static_cast<std::int64_t>(b[l].size());
      if (p < nw) return W[l][p];
      p -= nw;
      if (p < nb) return b[l][p];
      p -= nb;
    }
    throw std::out_of_range("param");
  }

  /// The network output for one input, by explicit loops in double.
  std::vector<double> ref_forward(const T* x) const {
    std::vector<double> a(x, x + widths[0]);
    for (size_t l = 0; l < W.size(); ++l) {
      const std::int64_t no = widths[l + 1], ni = widths[l];
      std::vector<double> z(no);
      for (std::int64_t u = 0; u < no; ++u) {
        double s = double(b[l][u]);
        for (std::int64_t j = 0; j < ni; ++j) s += double(W[l][u * ni + j]) * a[j];
        z[u] = s;
      }
      if (l + 1 < W.size())
        for (auto& v : z) v = ref_phi(acts[l], v);
      a = z;
    }
    return a;
  }

  static double ref_phi(Activation act, double z) {
    switch (act) {
      case Activation::identity: return z;
      case Activation::relu: return z > 0 ? z : 0;
      case Activation::tanh: return std::tanh(z);
      case Activation::sigmoid: return 1 / (1 + std::exp(-z));
      case Activation::softplus: return std::log1p(std::exp(z));
      case Activation::erf: return std::erf(z);
    }
    return z;
  }
};

template <class T>
std::vector<T> random_matrix(std::int64_t rows, std::int64_t cols, std::uint64_t seed, double s = 1.0) {
  std::mt19937_64 g(seed);
  std::vector<T> m(rows * cols);
  for (auto& v : m) v = T(uniform(g, -s, s));
  return m;
}

/// Valid labels (N x label_cols) for a head with C outputs.
template <class T>
std::vector<T> labels(HeadKind k, std::int64_t N, std::int64_t C, std::uint64_t seed) {
  std::mt19937_64 g(seed);
  const std::int64_t yc = fk::detail::head_label_cols(k, C);
  std::vector<T> y(N * yc);
  for (auto& v : y) {
    const std::uint64_t r = g();
    switch (k) {
      case HeadKind::categorical: v = T(r % static_cast<std::uint64_t>(C)); break;
      case HeadKind::bernoulli: v = T(r % 2); break;
      case HeadKind::poisson: v = T(r % 5); break;
      case HeadKind::gaussian: v = T(uniform(g, -1.5, 1.5)); break;
    }
  }
  return y;
}

using fisherkit_test::contains;
using fisherkit_test::error_of;

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

struct Arch {
  std::vector<std::int64_t> widths;
  std::vector<Activation> acts;
};

/// Architectures for the derivative tests: smooth activations only (relu has a kink that
/// a central difference can straddle), odd widths, a width-1 bottleneck and no hidden layer.
const std::vector<Arch>& smooth_archs() {
  static const std::vector<Arch> a = {
      {{5, 7, 3}, {Activation::tanh}},
      {{4, 6, 5, 3}, {Activation::softplus, Activation::erf}},
      {{2, 1, 3}, {Activation::sigmoid}},
      {{3, 3}, {}},
      {{3, 2, 3}, {Activation::identity}},
  };
  return a;
}

template <class T>
fk::MatrixView<const T> cview(const std::vector<T>& v, std::int64_t rows, std::int64_t cols) {
  return fk::matrix_view<const T>(v.data(), rows, cols);
}

}  // namespace

// ------------------------------------------------------------------ construction

TEST_CASE_TEMPLATE("mlp: accessors describe the flat parameter layout", T, float, double) {
  Net<T> net({5, 7, 2, 3}, {Activation::tanh, Activation::relu}, 1);
  const fk::Mlp<T> m = net.mlp();
  CHECK(m.n_layers() == 3);
  CHECK(m.input_dim() == 5);
  CHECK(m.output_dim() == 3);
  CHECK(m.widths() == std::vector<std::int64_t>{5, 7, 2, 3});
  CHECK(m.n_params() == 7 * 5 + 7 + 2 * 7 + 2 + 3 * 2 + 3);
  CHECK(m.n_params() == net.P());
  CHECK(m.param_offset(1) == 0);
  CHECK(m.param_offset(2) == 42);
  CHECK(m.param_offset(3) == 58);
  CHECK(m.activation(1) == Activation::tanh);
  CHECK(m.activation(2) == Activation::relu);
  CHECK(m.layer(2).weight.rows == 2);
  CHECK(m.layer(2).weight.cols == 7);
  CHECK(&net.param(m.param_offset(2)) == net.W[1].data());
  CHECK(&net.param(m.param_offset(2) + 14) == net.b[1].data());
}

TEST_CASE_TEMPLATE("mlp: the constructor rejects bad shapes naming the argument", T, float, double) {
  const std::vector<T> w43(12, T(0.1)), w25(10, T(0.1)), w24(8, T(0.1)), b4(4, T(0)), b3(3, T(0)),
      b2(2, T(0));
  auto L = [](const std::vector<T>& w, std::int64_t r, std::int64_t c, const std::vector<T>& b,
              std::int64_t nb) {
    return fk::Layer<T>{fk::matrix_view<const T>(w.data(), r, c), fk::vector_view<const T>(b.data(), nb)};
  };
  std::string msg;

  SUBCASE("layer shapes that do not chain") {
    msg = error_of([&] { fk::Mlp<T>({L(w43, 4, 3, b4, 4), L(w25, 2, 5, b2, 2)}, {Activation::tanh}); });
    CHECK(contains(msg, "layers[1].weight"));
    CHECK(contains(msg, "chain"));
  }
  SUBCASE("too few activations") {
    msg = error_of([&] { fk::Mlp<T>({L(w43, 4, 3, b4, 4), L(w24, 2, 4, b2, 2)}, {}); });
    CHECK(contains(msg, "'activations'"));
  }
  SUBCASE("too many activations") {
    msg = error_of([&] {
      fk::Mlp<T>({L(w43, 4, 3, b4, 4), L(w24, 2, 4, b2, 2)}, {Activation::tanh, Activation::tanh});
    });
    CHECK(contains(msg, "'activations'"));
  }
  SUBCASE("a bias of the wrong size") {
    msg = error_of([&] { fk::Mlp<T>({L(w43, 4, 3, b3, 3), L(w24, 2, 4, b2, 2)}, {Activation::tanh}); });
    CHECK(contains(msg, "layers[0].bias"));
  }
  SUBCASE("a bias of the wrong size in the last layer") {
    msg = error_of([&] { fk::Mlp<T>({L(w43, 4, 3, b4, 4), L(w24, 2, 4, b3, 3)}, {Activation::tanh}); });
    CHECK(contains(msg, "layers[1].bias"));
  }
  SUBCASE("no layers") {
    msg = error_of([&] { fk::Mlp<T>({}, {}); });
    CHECK(contains(msg, "'layers'"));
  }
  SUBCASE("an empty weight") {
    msg = error_of([&] { fk::Mlp<T>({L(w43, 0, 3, b4, 0)}, {}); });
    CHECK(contains(msg, "layers[0].weight"));
  }
  SUBCASE("a weight that is not row-major") {
    fk::Layer<T> bad = L(w43, 4, 3, b4, 4);
    bad.weight.col_stride = 4;
    bad.weight.row_stride = 1;
    msg = error_of([&] { fk::Mlp<T>({bad}, {}); });
    CHECK(contains(msg, "layers[0].weight"));
  }
  SUBCASE("a CUDA view") {
    fk::Layer<T> bad = L(w43, 4, 3, b4, 4);
    bad.bias.device = fk::Device::cuda;
    msg = error_of([&] { fk::Mlp<T>({bad}, {}); });
    CHECK(contains(msg, "layers[0].bias"));
  }
  SUBCASE("a good network is accepted") {
    CHECK_NOTHROW(fk::Mlp<T>({L(w43, 4, 3, b4, 4), L(w24, 2, 4, b2, 2)}, {Activation::tanh}));
  }
}

// ------------------------------------------------------------------ forward

TEST_CASE_TEMPLATE("mlp: forward equals a hand loop for every activation", T, float, double) {
  const Activation all[] = {Activation::identity, Activation::relu, Activation::tanh,
                            Activation::sigmoid, Activation::softplus, Activation::erf};
  for (Activation act : all) {
    const std::string act_s = fk::activation_name(act);
    CAPTURE(act_s);
    Net<T> net({5, 7, 4, 3}, {act, act}, 11);
    const auto m = net.mlp();
    for (std::int64_t N : {1, 13}) {
      const auto X = random_matrix<T>(N, 5, 3 + N, 2.0);
      std::vector<T> H(N * 3);
      fk::forward<T>(m, cview(X, N, 5), fk::matrix_view(H.data(), N, 3));
      for (std::int64_t n = 0; n < N; ++n) {
        const auto ref = net.ref_forward(X.data() + n * 5);
        const double scale = std::max(1.0, max_abs(ref));
        for (std::int64_t c = 0; c < 3; ++c)
          CHECK(double(H[n * 3 + c]) == doctest::Approx(ref[c]).epsilon(200 * ulp<T>()).scale(scale));
      }
    }
  }
}

TEST_CASE_TEMPLATE("mlp: log_likelihood equals the head at the hand-loop output", T, float, double) {
  Net<T> net({4, 6, 3}, {Activation::tanh}, 5);
  const auto m = net.mlp();
  const std::int64_t N = 9;
  const auto X = random_matrix<T>(N, 4, 6);
  for (HeadKind k : kAllHeads) {
    const std::string head_s = fk::head_name(k);
    CAPTURE(head_s);
    const fk::Head head{k, 0.8};
    const auto y = labels<T>(k, N, 3, 17);
    const std::int64_t yc = fk::detail::head_label_cols(k, 3);
    std::vector<T> ll(N);
    fk::log_likelihood<T>(m, head, cview(X, N, 4), cview(y, N, yc), fk::vector_view(ll.data(), N));
    for (std::int64_t n = 0; n < N; ++n) {
      const auto h = net.ref_forward(X.data() + n * 4);
      const std::vector<double> yd(y.begin() + n * yc, y.begin() + (n + 1) * yc);
      const double ref = fk::detail::head_log_likelihood<double>(k, 0.8, h.data(), yd.data(), 3);
      CHECK(double(ll[n]) == doctest::Approx(ref).epsilon(500 * ulp<T>()).scale(1.0));
    }
  }
}

// ------------------------------------------------------------------ derivatives

TEST_CASE_TEMPLATE("mlp: per_sample_grads are finite differences of -log_likelihood", T, float, double) {
  const T eps = fd_step<T>();
  for (const Arch& arch : smooth_archs()) {
    for (HeadKind k : kAllHeads) {
      const std::string head_s = fk::head_name(k);
      CAPTURE(head_s);
      CAPTURE(arch.widths.size());
      CAPTURE(arch.widths[1]);
      Net<T> net(arch.widths, arch.acts, 21);
      const auto m = net.mlp();
      const std::int64_t N = 5, n0 = net.widths[0], C = net.C(), P = net.P();
      const auto X = random_matrix<T>(N, n0, 8);
      const auto y = labels<T>(k, N, C, 9);
      const std::int64_t yc = fk::detail::head_label_cols(k, C);
      const fk::Head head{k, 0.8};
      std::vector<T> G(N * P);
      fk::per_sample_grads<T>(m, head, cview(X, N, n0), cview(y, N, yc), fk::matrix_view(G.data(), N, P));
      std::vector<T> lp(N), lm(N);
      for (std::int64_t p = 0; p < P; ++p) {
        T& w = net.param(p);
        const T w0 = w;
        w = T(w0 + eps);
        const double wp = double(w);
        fk::log_likelihood<T>(m, head, cview(X, N, n0), cview(y, N, yc), fk::vector_view(lp.data(), N));
        w = T(w0 - eps);
        const double wm = double(w);
        fk::log_likelihood<T>(m, head, cview(X, N, n0), cview(y, N, yc), fk::vector_view(lm.data(), N));
        w = w0;
        for (std::int64_t n = 0; n < N; ++n) {
          const double fd = -(double(lp[n]) - double(lm[n])) / (wp - wm);
          CAPTURE(p);
          CAPTURE(n);
          CHECK(double(G[n * P + p]) == doctest::Approx(fd).epsilon(fd_tol<T>()).scale(1.0));
        }
      }
    }
  }
}

TEST_CASE_TEMPLATE("mlp: output_jacobian is the finite difference of forward", T, float, double) {
  const T eps = fd_step<T>();
  for (const Arch& arch : smooth_archs()) {
    CAPTURE(arch.widths.size());
    CAPTURE(arch.widths[1]);
    Net<T> net(arch.widths, arch.acts, 33);
    const auto m = net.mlp();
    const std::int64_t N = 4, n0 = net.widths[0], C = net.C(), P = net.P();
    const auto X = random_matrix<T>(N, n0, 34);
    std::vector<T> J(N * C * P);
    fk::output_jacobian<T>(m, cview(X, N, n0), fk::matrix_view(J.data(), N, C * P));
    std::vector<T> hp(N * C), hm(N * C);
    for (std::int64_t p = 0; p < P; ++p) {
      T& w = net.param(p);
      const T w0 = w;
      w = T(w0 + eps);
      const double wp = double(w);
      fk::forward<T>(m, cview(X, N, n0), fk::matrix_view(hp.data(), N, C));
      w = T(w0 - eps);
      const double wm = double(w);
      fk::forward<T>(m, cview(X, N, n0), fk::matrix_view(hm.data(), N, C));
      w = w0;
      for (std::int64_t n = 0; n < N; ++n)
        for (std::int64_t c = 0; c < C; ++c) {
          const double fd = (double(hp[n * C + c]) - double(hm[n * C + c])) / (wp - wm);
          CAPTURE(p);
          CAPTURE(n);
          CAPTURE(c);
          CHECK(double(J[n * C * P + c * P + p]) == doctest::Approx(fd).epsilon(fd_tol<T>()).scale(1.0));
        }
    }
  }
}

TEST_CASE_TEMPLATE("mlp: per-sample gradient = J^T residual (chain rule through the head)", T, float, double) {
  // Ties per_sample_grads, output_jacobian and the head residual together with relu in
  // the network (no finite differences involved, so the kink does not matter).
  Net<T> net({6, 5, 7, 4}, {Activation::relu, Activation::tanh}, 41);
  const auto m = net.mlp();
  const std::int64_t N = 11, C = 4, P = net.P();
  const auto X = random_matrix<T>(N, 6, 42, 2.0);
  for (HeadKind k : kAllHeads) {
    const std::string head_s = fk::head_name(k);
    CAPTURE(head_s);
    const auto y = labels<T>(k, N, C, 43);
    const std::int64_t yc = fk::detail::head_label_cols(k, C);
    const fk::Head head{k, 1.7};
    std::vector<T> G(N * P), J(N * C * P), H(N * C);
    fk::per_sample_grads<T>(m, head, cview(X, N, 6), cview(y, N, yc), fk::matrix_view(G.data(), N, P));
    fk::output_jacobian<T>(m, cview(X, N, 6), fk::matrix_view(J.data(), N, C * P));
    fk::forward<T>(m, cview(X, N, 6), fk::matrix_view(H.data(), N, C));
    for (std::int64_t n = 0; n < N; ++n) {
      std::vector<T> r(C);
      fk::detail::head_residual(k, T(1.7), H.data() + n * C, y.data() + n * yc, C, r.data());
      for (std::int64_t p = 0; p < P; ++p) {
        double ref = 0;
        for (std::int64_t c = 0; c < C; ++c)
          ref += double(J[n * C * P + c * P + p]) * double(r[c]);
        CHECK(double(G[n * P + p]) == doctest::Approx(ref).epsilon(200 * ulp<T>()).scale(1.0));
      }
    }
  }
}

TEST_CASE_TEMPLATE("mlp: nll_gradient is the mean of per_sample_grads", T, float, double) {
  Net<T> net({5, 8, 3}, {Activation::relu}, 51);
  const auto m = net.mlp();
  const std::int64_t N = 37, C = 3, P = net.P();
  const auto X = random_matrix<T>(N, 5, 52);
  for (HeadKind k : kAllHeads) {
    const std::string head_s = fk::head_name(k);
    CAPTURE(head_s);
    const auto y = labels<T>(k, N, C, 53);
    const std::int64_t yc = fk::detail::head_label_cols(k, C);
    const fk::Head head{k, 0.6};
    std::vector<T> G(N * P), ll(N);
    fk::per_sample_grads<T>(m, head, cview(X, N, 5), cview(y, N, yc), fk::matrix_view(G.data(), N, P));
    fk::log_likelihood<T>(m, head, cview(X, N, 5), cview(y, N, yc), fk::vector_view(ll.data(), N));
    std::vector<double> mean(P, 0.0);
    double nll = 0;
    for (std::int64_t n = 0; n < N; ++n) {
      nll -= double(ll[n]) / double(N);
      for (std::int64_t p = 0; p < P; ++p) mean[p] += double(G[n * P + p]) / double(N);
    }
    const double scale = std::max(1.0, max_abs(mean));
    for (std::int64_t chunk : {0, 1, 5, 37, 100}) {
      CAPTURE(chunk);
      std::vector<T> g(P);
      const double ret = fk::nll_gradient<T>(m, head, cview(X, N, 5), cview(y, N, yc), fk::vector_view(g.data(), P), chunk);
      CHECK(ret == doctest::Approx(nll).epsilon(100 * ulp<T>()).scale(1.0));
      for (std::int64_t p = 0; p < P; ++p)
        CHECK(double(g[p]) == doctest::Approx(mean[p]).epsilon(100 * ulp<T>()).scale(scale));
    }
  }
}

// ------------------------------------------------------------------ layout independence

namespace {

/// Every per-sample output of one configuration, for comparing configurations.
template <class T>
struct AllOutputs {
  std::vector<T> H, ll, G, J, g;
  double nll = 0;
};

template <class T>
AllOutputs<T> run_all(const fk::Mlp<T>& m, const fk::Head& head, fk::MatrixView<const T> X,
                      fk::MatrixView<const T> y, std::int64_t chunk) {
  const std::int64_t N = X.rows, C = m.output_dim(), P = m.n_params();
  AllOutputs<T> o;
  o.H.resize(N * C);
  o.ll.resize(N);
  o.G.resize(N * P);
  o.J.resize(N * C * P);
  o.g.resize(P);
  fk::forward<T>(m, X, fk::matrix_view(o.H.data(), N, C), chunk);
  fk::log_likelihood<T>(m, head, X, y, fk::vector_view(o.ll.data(), N), chunk);
  fk::per_sample_grads<T>(m, head, X, y, fk::matrix_view(o.G.data(), N, P), chunk);
  fk::output_jacobian<T>(m, X, fk::matrix_view(o.J.data(), N, C * P), chunk);
  o.nll = fk::nll_gradient<T>(m, head, X, y, fk::vector_view(o.g.data(), P), chunk);
  return o;
}

template <class T>
void check_close(const std::vector<T>& a, const std::vector<T>& b, double rel) {
  REQUIRE(a.size() == b.size());
  double scale = 1;
  for (T v : b) scale = std::max(scale, std::abs(double(v)));
  for (size_t i = 0; i < a.size(); ++i) {
    CAPTURE(i);
    CHECK(double(a[i]) == doctest::Approx(double(b[i])).epsilon(rel).scale(scale));
  }
}

template <class T>
void check_same(const AllOutputs<T>& a, const AllOutputs<T>& b) {
  // Per-sample results do not depend on the layout beyond GEMM rounding; the mean
  // gradient is summed in a different order.
  const double rel = 8 * ulp<T>();
  check_close(a.H, b.H, rel);
  check_close(a.ll, b.ll, rel);
  check_close(a.G, b.G, rel);
  check_close(a.J, b.J, rel);
  check_close(a.g, b.g, 64 * ulp<T>());
  CHECK(a.nll == doctest::Approx(b.nll).epsilon(64 * ulp<T>()));
}

}  // namespace

TEST_CASE_TEMPLATE("mlp: results do not depend on the chunk size", T, float, double) {
  Net<T> net({7, 5, 3}, {Activation::softplus}, 61);
  const auto m = net.mlp();
  const std::int64_t N = 23;
  const auto X = random_matrix<T>(N, 7, 62);
  for (HeadKind k : {HeadKind::categorical, HeadKind::poisson}) {
    const std::string head_s = fk::head_name(k);
    CAPTURE(head_s);
    const auto y = labels<T>(k, N, 3, 63);
    const std::int64_t yc = fk::detail::head_label_cols(k, 3);
    const fk::Head head{k, 1.0};
    const auto ref = run_all<T>(m, head, cview(X, N, 7), cview(y, N, yc), 0);
    for (std::int64_t chunk : {1, 2, 7, 23, 1000}) {
      CAPTURE(chunk);
      check_same(run_all<T>(m, head, cview(X, N, 7), cview(y, N, yc), chunk), ref);
    }
  }
}

TEST_CASE_TEMPLATE("mlp: inputs with row_stride > cols give the same results", T, float, double) {
  for (const Arch& arch : smooth_archs()) {
    Net<T> net(arch.widths, arch.acts, 71);
    const auto m = net.mlp();
    const std::int64_t N = 6, n0 = net.widths[0], C = net.C(), pad = 3;
    const auto X = random_matrix<T>(N, n0, 72);
    const auto y = labels<T>(HeadKind::bernoulli, N, C, 73);
    // The same data in rows of n0 + pad, the padding NaN: reading it would show.
    std::vector<T> Xp(N * (n0 + pad), T(std::nan(""))),
        yp(N * (C + pad), T(std::nan("")));
    for (std::int64_t n = 0; n < N; ++n) {
      std::copy(X.begin() + n * n0, X.begin() + (n + 1) * n0, Xp.begin() + n * (n0 + pad));
      std::copy(y.begin() + n * C, y.begin() + (n + 1) * C, yp.begin() + n * (C + pad));
    }
    const fk::MatrixView<const T> Xs{Xp.data(), N, n0, n0 + pad, 1, fk::Device::host};
    const fk::MatrixView<const T> ys{yp.data(), N, C, C + pad, 1, fk::Device::host};
    const fk::Head head{HeadKind::bernoulli, 1.0};
    const auto ref = run_all<T>(m, head, cview(X, N, n0), cview(y, N, C), 0);
    for (std::int64_t chunk : {0, 4}) {
      CAPTURE(chunk);
      check_same(run_all<T>(m, head, Xs, ys, chunk), ref);
    }

    // Strided outputs: rows written, padding untouched.
    const T sentinel = T(12345);
    std::vector<T> Hp(N * (C + pad), sentinel);
    fk::forward<T>(m, Xs, fk::MatrixView<T>{Hp.data(), N, C, C + pad, 1, fk::Device::host});
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t c = 0; c < C + pad; ++c) {
        const T v = Hp[n * (C + pad) + c];
        if (c < C)
          CHECK(double(v) == doctest::Approx(double(ref.H[n * C + c])).epsilon(8 * ulp<T>()).scale(1.0));
        else
          CHECK(v == sentinel);
      }
  }
}

TEST_CASE_TEMPLATE("mlp: results do not depend on the thread count", T, float, double) {
  // Large enough that the OpenMP loops go parallel when there is more than one thread.
  Net<T> net({9, 31, 17, 4}, {Activation::tanh, Activation::erf}, 81);
  const auto m = net.mlp();
  const std::int64_t N = 257;
  const auto X = random_matrix<T>(N, 9, 82);
  const auto y = labels<T>(HeadKind::categorical, N, 4, 83);
  const fk::Head head{HeadKind::categorical, 1.0};
  fk::set_num_threads(1);
  const auto one = run_all<T>(m, head, cview(X, N, 9), cview(y, N, 1), 0);
  fk::set_num_threads(3);
  const auto three = run_all<T>(m, head, cview(X, N, 9), cview(y, N, 1), 0);
  fk::set_num_threads(0);
  check_same(three, one);
}

// ------------------------------------------------------------------ bad input

TEST_CASE_TEMPLATE("mlp: bad inputs throw fisherkit::Error naming the argument", T, float, double) {
  Net<T> net({3, 4, 2}, {Activation::tanh}, 91);
  const auto m = net.mlp();
  const std::int64_t N = 4, C = 2, P = net.P();
  auto X = random_matrix<T>(N, 3, 92);
  const std::vector<T> y = {0, 1, 1, 0};
  const fk::Head head{HeadKind::categorical, 1.0};
  std::vector<T> H(N * C), G(N * P), ll(N);

  for (double bad : {std::nan(""), HUGE_VAL, -HUGE_VAL}) {
    CAPTURE(bad);
    auto Xb = X;
    Xb[7] = T(bad);  // row 2, column 1
    std::string msg = error_of([&] { fk::forward<T>(m, cview(Xb, N, 3), fk::matrix_view(H.data(), N, C)); });
    CHECK(contains(msg, "'X'"));
    CHECK(contains(msg, "[2, 1]"));
    msg = error_of([&] {
      fk::per_sample_grads<T>(m, head, cview(Xb, N, 3), cview(y, N, 1), fk::matrix_view(G.data(), N, P));
    });
    CHECK(contains(msg, "'X'"));
    msg = error_of([&] { fk::nll_gradient<T>(m, head, cview(Xb, N, 3), cview(y, N, 1), fk::vector_view(G.data(), P)); });
    CHECK(contains(msg, "'X'"));
  }

  // Non-finite weights are named by layer.
  {
    const T keep = net.W[1][3];
    net.W[1][3] = T(std::nan(""));
    CHECK(contains(error_of([&] { fk::forward<T>(m, cview(X, N, 3), fk::matrix_view(H.data(), N, C)); }),
                   "layers[1].weight"));
    net.W[1][3] = keep;
    const T keepb = net.b[0][2];
    net.b[0][2] = T(HUGE_VAL);
    CHECK(contains(error_of([&] { fk::forward<T>(m, cview(X, N, 3), fk::matrix_view(H.data(), N, C)); }),
                   "layers[0].bias"));
    net.b[0][2] = keepb;
  }
  // Wrong shapes and layouts.
  CHECK(contains(error_of([&] { fk::forward<T>(m, cview(X, 3, 4), fk::matrix_view(H.data(), 3, C)); }), "'X'"));
  CHECK(contains(error_of([&] { fk::forward<T>(m, cview(X, 0, 3), fk::matrix_view(H.data(), 0, C)); }), "'X'"));
  CHECK(contains(error_of([&] { fk::forward<T>(m, cview(X, N, 3), fk::matrix_view(H.data(), N - 1, C)); }), "'out'"));
  {
    fk::MatrixView<const T> Xt{X.data(), N, 3, 1, N, fk::Device::host};  // column-major
    CHECK(contains(error_of([&] { fk::forward<T>(m, Xt, fk::matrix_view(H.data(), N, C)); }), "'X'"));
    fk::MatrixView<const T> Xo{X.data(), N, 3, 2, 1, fk::Device::host};  // overlapping rows
    CHECK(contains(error_of([&] { fk::forward<T>(m, Xo, fk::matrix_view(H.data(), N, C)); }), "'X'"));
    fk::MatrixView<const T> Xd = cview(X, N, 3);
    Xd.device = fk::Device::cuda;
    CHECK(contains(error_of([&] { fk::forward<T>(m, Xd, fk::matrix_view(H.data(), N, C)); }), "'X'"));
  }
  CHECK(contains(error_of([&] {
          fk::per_sample_grads<T>(m, head, cview(X, N, 3), cview(y, N, 1), fk::matrix_view(G.data(), N, P - 1));
        }),
        "'out'"));
  // Labels: out of range, and the wrong number of rows.
  const std::vector<T> ybad = {0, 1, 2, 0};
  std::string msg = error_of([&] {
    fk::per_sample_grads<T>(m, head, cview(X, N, 3), cview(ybad, N, 1), fk::matrix_view(G.data(), N, P));
  });
  CHECK(contains(msg, "'y'"));
  CHECK(contains(msg, "row 2"));
  CHECK(contains(error_of([&] {
          fk::log_likelihood<T>(m, head, cview(X, N, 3), cview(y, N - 1, 1), fk::vector_view(ll.data(), N));
        }),
        "'y'"));
  // A Gaussian head with a bad sigma.
  CHECK(contains(error_of([&] {
          fk::nll_gradient<T>(m, fk::Head{HeadKind::gaussian, -1.0}, cview(X, N, 3), cview(X, N, 2),
                              fk::vector_view(G.data(), P));
        }),
        "'sigma'"));
}
