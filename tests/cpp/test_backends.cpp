// The one engine: the flat layout, layers without bias in every shape, the dispatch by the
// device of the views (CUDA views reach the CUDA backend, which fails cleanly without a
// GPU and agrees with the host where one is visible), and the Monitor that reports progress
// and stops long calls.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#if defined(FISHERKIT_WITH_CUDA)
#include <cuda_runtime.h>
#endif

#include "fisherkit/fisherkit.hpp"
#include "test_util.hpp"

namespace fk = fisherkit;

namespace {

/// A 4-5-3-3 net (tanh, softplus) with a categorical head and its inputs, in std::vectors.
/// `bias[l]` false: layer l has no bias (its storage still exists, all zeros).
template <class T>
struct Net {
  std::vector<std::vector<T>> W, b;
  std::vector<std::int64_t> sizes{4, 5, 3, 3};
  std::vector<T> X;
  std::int64_t N = 11;
  explicit Net(std::vector<bool> bias = {true, true, true}) {
    std::uint64_t s = 12345;
    auto next = [&] {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      return T(double(s >> 11) / double(1ull << 53) - 0.5);
    };
    for (size_t l = 1; l < sizes.size(); ++l) {
      W.emplace_back(static_cast<size_t>(sizes[l] * sizes[l - 1]));
      b.emplace_back(static_cast<size_t>(sizes[l]));
      for (auto& v : W.back()) v = next();
      for (auto& v : b.back()) v = bias[l - 1] ? next() : T(0);
    }
    X.resize(static_cast<size_t>(N * sizes[0]));
    for (auto& v : X) v = T(3) * next();
  }
  /// The MLP over weight storage at `w`/`bb` (host vectors or device copies); a null bias
  /// pointer gives a layer without bias.
  fk::Mlp<T> mlp(const std::vector<T*>& w, const std::vector<T*>& bb, fk::Device dev) const {
    std::vector<fk::Layer<T>> layers;
    for (size_t l = 1; l < sizes.size(); ++l)
      layers.push_back({fk::matrix_view<const T>(w[l - 1], sizes[l], sizes[l - 1], dev),
                        bb[l - 1] ? fk::vector_view<const T>(bb[l - 1], sizes[l], dev)
                                  : fk::VectorView<const T>{nullptr, 0, 1, dev}});
    return fk::Mlp<T>(layers, {fk::Activation::tanh, fk::Activation::softplus});
  }
  fk::Mlp<T> host_mlp(std::vector<bool> bias = {true, true, true}) {
    std::vector<T*> w, bb;
    for (auto& v : W) w.push_back(v.data());
    for (size_t l = 0; l < b.size(); ++l) bb.push_back(bias[l] ? b[l].data() : nullptr);
    return mlp(w, bb, fk::Device::host);
  }
};

template <class T>
double tol() {
  return sizeof(T) == 4 ? 1e-4 : 1e-11;
}

template <class T>
void check_close(const std::vector<T>& got, const std::vector<T>& want) {
  REQUIRE(got.size() == want.size());
  double scale = 1.0;
  for (T v : want) scale = std::max(scale, std::fabs(double(v)));
  for (size_t i = 0; i < got.size(); ++i) CHECK(std::fabs(double(got[i]) - double(want[i])) <= tol<T>() * scale);
}

/// Flat parameter indices of the with-bias layout that a layout without the biases of
/// `bias` keeps, in order.
std::vector<std::int64_t> kept_params(const fk::Layout& with_bias, const std::vector<bool>& bias) {
  std::vector<std::int64_t> keep;
  for (std::int64_t l = 1; l <= with_bias.n_layers(); ++l) {
    const auto& d = with_bias.dims(l);
    const std::int64_t off = with_bias.param_offset(l);
    for (std::int64_t i = 0; i < d.n_out * d.n_in; ++i) keep.push_back(off + i);
    if (bias[static_cast<size_t>(l - 1)])
      for (std::int64_t u = 0; u < d.n_out; ++u) keep.push_back(off + d.n_out * d.n_in + u);
  }
  return keep;
}

}  // namespace

TEST_CASE("layout: offsets and sizes of every shape, with and without biases") {
  const fk::Layout lay({{5, 4, true}, {3, 5, false}, {2, 3, true}});
  CHECK(lay.n_params() == 5 * 5 + 3 * 5 + 2 * 4);
  CHECK(lay.param_offset(1) == 0);
  CHECK(lay.param_offset(2) == 25);
  CHECK(lay.param_offset(3) == 40);
  CHECK(lay.unit_width(2) == 5);
  CHECK(lay.size(fk::Shape::diag) == 48);
  CHECK(lay.size(fk::Shape::full) == 48 * 48);
  CHECK(lay.size(fk::Shape::unit) == 5 * 25 + 3 * 25 + 2 * 16);
  CHECK(lay.offset(fk::Shape::unit, 3) == 5 * 25 + 3 * 25);
  CHECK(lay.size(fk::Shape::layer) == 25 * 25 + 15 * 15 + 8 * 8);
  CHECK(lay.offset(fk::Shape::layer, 2) == 625);
  CHECK(lay.size(fk::Shape::kfac) == (25 + 25) + (25 + 9) + (16 + 4));
  CHECK(fk::Layout::local_index(2, 4, 5, 4) == 5 * 4 + 2);  // a bias comes after all weights
  CHECK(fisherkit_test::contains(
      fisherkit_test::error_of([] { fk::Layout({{5, 4, true}, {3, 6, true}}); }), "do not chain"));
}

TEST_CASE_TEMPLATE("engine: a layer without bias is the biased layer with its bias parameters removed", T, float,
                   double) {
  // zero biases: the bias-free network computes the same function; every result of the
  // bias-free model is the with-bias result restricted to the weight parameters
  const std::vector<bool> bias{true, false, false};
  Net<T> net(bias);
  const auto full = net.host_mlp();
  const auto part = net.host_mlp(bias);
  REQUIRE(part.n_params() == full.n_params() - 3 - 3);
  const auto keep = kept_params(full.layout(), bias);
  const fk::Head head{fk::HeadKind::categorical, 1.0};
  const auto X = fk::matrix_view<const T>(net.X.data(), net.N, 4);
  const std::int64_t P = full.n_params(), Q = part.n_params();
  for (auto est : {fk::Estimator::exact, fk::Estimator::score, fk::Estimator::hessian}) {
    CAPTURE(static_cast<int>(est));
    fk::FisherOptions opt;
    opt.estimator = est;
    opt.samples = 2;
    opt.seed = 3;
    opt.chunk = 4;
    opt.shape = fk::Shape::full;
    std::vector<T> Ff(static_cast<size_t>(P * P)), Fp(static_cast<size_t>(Q * Q));
    fk::fisher(full, head, X, {}, opt, fk::vector_view(Ff.data(), P * P));
    fk::fisher(part, head, X, {}, opt, fk::vector_view(Fp.data(), Q * Q));
    std::vector<T> want;
    for (auto i : keep)
      for (auto j : keep) want.push_back(Ff[static_cast<size_t>(i * P + j)]);
    check_close(Fp, want);
    // the other shapes are blocks of the full matrix
    opt.shape = fk::Shape::diag;
    std::vector<T> d(static_cast<size_t>(Q));
    fk::fisher(part, head, X, {}, opt, fk::vector_view(d.data(), Q));
    std::vector<T> dw;
    for (std::int64_t i = 0; i < Q; ++i) dw.push_back(Fp[static_cast<size_t>(i * Q + i)]);
    check_close(d, dw);
    opt.shape = fk::Shape::unit;
    const auto& lay = part.layout();
    std::vector<T> U(static_cast<size_t>(lay.size(fk::Shape::unit))), uw;
    fk::fisher(part, head, X, {}, opt, fk::vector_view(U.data(), std::int64_t(U.size())));
    for (std::int64_t l = 1; l <= lay.n_layers(); ++l) {
      const auto& dm = lay.dims(l);
      const std::int64_t k = lay.unit_width(l), off = lay.param_offset(l);
      for (std::int64_t u = 0; u < dm.n_out; ++u)
        for (std::int64_t a = 0; a < k; ++a)
          for (std::int64_t c = 0; c < k; ++c) {
            const std::int64_t i = off + fk::Layout::local_index(u, a, dm.n_out, dm.n_in);
            const std::int64_t j = off + fk::Layout::local_index(u, c, dm.n_out, dm.n_in);
            uw.push_back(Fp[static_cast<size_t>(i * Q + j)]);
          }
    }
    check_close(U, uw);
    opt.shape = fk::Shape::layer;
    std::vector<T> Lb(static_cast<size_t>(lay.size(fk::Shape::layer))), lw;
    fk::fisher(part, head, X, {}, opt, fk::vector_view(Lb.data(), std::int64_t(Lb.size())));
    for (std::int64_t l = 1; l <= lay.n_layers(); ++l) {
      const std::int64_t off = lay.param_offset(l), D = lay.layer_params(l);
      for (std::int64_t i = 0; i < D; ++i)
        for (std::int64_t j = 0; j < D; ++j) lw.push_back(Fp[static_cast<size_t>((off + i) * Q + off + j)]);
    }
    check_close(Lb, lw);
  }
  // per-sample gradients and the batch gradient
  std::vector<T> y(static_cast<size_t>(net.N));
  for (std::int64_t n = 0; n < net.N; ++n) y[static_cast<size_t>(n)] = T(n % 3);
  const auto Y = fk::matrix_view<const T>(y.data(), net.N, 1);
  std::vector<T> Gf(static_cast<size_t>(net.N * P)), Gp(static_cast<size_t>(net.N * Q)), gw;
  fk::per_sample_grads(full, head, X, Y, fk::matrix_view(Gf.data(), net.N, P));
  fk::per_sample_grads(part, head, X, Y, fk::matrix_view(Gp.data(), net.N, Q));
  for (std::int64_t n = 0; n < net.N; ++n)
    for (auto i : keep) gw.push_back(Gf[static_cast<size_t>(n * P + i)]);
  check_close(Gp, gw);
}

TEST_CASE("dispatch: CUDA views reach the CUDA backend, which agrees with the host or fails cleanly") {
  Net<double> net;
  auto host = net.host_mlp();
  const fk::Head head{fk::HeadKind::categorical, 1.0};
  fk::FisherOptions opt;
  opt.shape = fk::Shape::unit;
  const auto size = static_cast<size_t>(fk::fisher_size(host, opt.shape));
  std::vector<double> want(size);
  fk::fisher(host, head, fk::matrix_view<const double>(net.X.data(), net.N, 4), {}, opt,
             fk::vector_view(want.data(), std::int64_t(size)));
  if (!fk::cuda_compiled() || fk::cuda_device_count() == 0) {
    // device-tagged views over host memory: the CUDA backend must refuse before touching them
    std::vector<double*> w, bb;
    for (auto& v : net.W) w.push_back(v.data());
    for (auto& v : net.b) bb.push_back(v.data());
    auto dm = net.mlp(w, bb, fk::Device::cuda);
    std::vector<double> out(size);
    std::string msg;
    try {
      fk::fisher(dm, head, fk::matrix_view<const double>(net.X.data(), net.N, 4, fk::Device::cuda), {}, opt,
                 fk::vector_view(out.data(), std::int64_t(size), fk::Device::cuda));
    } catch (const fk::Unavailable& e) {
      msg = e.what();
    }
    CHECK((fisherkit_test::contains(msg, "no CUDA device is visible") ||
           fisherkit_test::contains(msg, "built without CUDA")));
    return;
  }
#if defined(FISHERKIT_WITH_CUDA)
  auto to_device = [](const std::vector<double>& v) {
    double* p = nullptr;
    REQUIRE(cudaMalloc(reinterpret_cast<void**>(&p), v.size() * sizeof(double)) == cudaSuccess);
    REQUIRE(cudaMemcpy(p, v.data(), v.size() * sizeof(double), cudaMemcpyHostToDevice) == cudaSuccess);
    return p;
  };
  std::vector<double*> w, bb;
  for (auto& v : net.W) w.push_back(to_device(v));
  for (auto& v : net.b) bb.push_back(to_device(v));
  double* dX = to_device(net.X);
  double* dout = to_device(std::vector<double>(size));
  auto dm = net.mlp(w, bb, fk::Device::cuda);
  fk::fisher(dm, head, fk::matrix_view<const double>(dX, net.N, 4, fk::Device::cuda), {}, opt,
             fk::vector_view(dout, std::int64_t(size), fk::Device::cuda));
  std::vector<double> got(size);
  REQUIRE(cudaMemcpy(got.data(), dout, size * sizeof(double), cudaMemcpyDeviceToHost) == cudaSuccess);
  check_close(got, want);
  for (auto* p : w) cudaFree(p);
  for (auto* p : bb) cudaFree(p);
  cudaFree(dX);
  cudaFree(dout);
#endif
}

namespace {
/// Records every report; stops the call once `stop_after` chunks are done (-1: never).
struct Recorder : fk::Monitor {
  std::vector<std::int64_t> done;
  std::int64_t total = -1, stop_after = -1;
  bool progress(std::int64_t d, std::int64_t t) override {
    done.push_back(d);
    total = t;
    return stop_after < 0 || static_cast<std::int64_t>(done.size()) < stop_after;
  }
};
}  // namespace

TEST_CASE("monitor: progress reaches the total between chunks, and a monitor can stop a call") {
  Net<double> net;
  auto m = net.host_mlp();
  const fk::Head head{fk::HeadKind::categorical, 1.0};
  fk::FisherOptions opt;
  opt.shape = fk::Shape::layer;
  opt.chunk = 3;  // 11 inputs: reports at the start, then where chunks end: 3, 6, 9, 11
  std::vector<double> out(static_cast<size_t>(fk::fisher_size(m, opt.shape)));
  const auto X = fk::matrix_view<const double>(net.X.data(), net.N, 4);
  {
    Recorder r;
    fk::MonitorScope scope(&r);
    fk::fisher(m, head, X, {}, opt, fk::vector_view(out.data(), std::int64_t(out.size())));
    REQUIRE(!r.done.empty());
    CHECK(r.total == net.N);
    CHECK(r.done.back() == net.N);
    for (size_t i = 1; i < r.done.size(); ++i) CHECK(r.done[i] >= r.done[i - 1]);
    std::vector<std::int64_t> ends;
    for (auto d : r.done)
      if (ends.empty() || ends.back() != d) ends.push_back(d);
    CHECK(ends == std::vector<std::int64_t>{0, 3, 6, 9, 11});
  }
  {
    Recorder r;
    r.stop_after = 2;
    fk::MonitorScope scope(&r);
    bool stopped = false;
    try {
      fk::fisher(m, head, X, {}, opt, fk::vector_view(out.data(), std::int64_t(out.size())));
    } catch (const fk::Interrupted&) {
      stopped = true;
    }
    CHECK(stopped);
    CHECK(r.done.size() == 2);
  }
  // outside the scope no monitor is installed: the call runs to the end
  fk::fisher(m, head, X, {}, opt, fk::vector_view(out.data(), std::int64_t(out.size())));
}

TEST_CASE_TEMPLATE("kfac: factors, EKFAC diagonal and the distance sums, with and without biases", T, float,
                   double) {
  // checked against other results of the engine through identities that hold exactly:
  //   A_1 = mean [x; 1][x; 1]^T, G_L = mean Cov(t | h) (exact), with a bias G_l = the
  //   layer block's bias-bias block; the EKFAC diagonal in identity bases = the diagonal of
  //   the layer block in unit-major order; ||F_l||^2 and <F_l, G (x) A> from the layer block
  for (const std::vector<bool>& bias : {std::vector<bool>{true, true, true}, std::vector<bool>{false, true, false}}) {
    Net<T> net(bias);
    const auto mlp = net.host_mlp(bias);
    const auto& lay = mlp.layout();
    const fk::Head head{fk::HeadKind::categorical, 1.0};
    const auto X = fk::matrix_view<const T>(net.X.data(), net.N, 4);
    for (auto est : {fk::Estimator::exact, fk::Estimator::score}) {
      CAPTURE(static_cast<int>(est));
      fk::FisherOptions opt;
      opt.estimator = est;
      opt.samples = 2;
      opt.seed = 9;
      opt.chunk = 4;
      const std::int64_t S = lay.size(fk::Shape::kfac), P = lay.n_params();
      std::vector<T> K(static_cast<size_t>(S)), Lb(static_cast<size_t>(lay.size(fk::Shape::layer)));
      fk::kfac_factors(mlp, head, X, {}, opt, fk::vector_view(K.data(), S));
      opt.shape = fk::Shape::layer;
      fk::fisher(mlp, head, X, {}, opt, fk::vector_view(Lb.data(), std::int64_t(Lb.size())));
      // A_1 by hand
      const std::int64_t k1 = lay.unit_width(1);
      std::vector<T> A1(static_cast<size_t>(k1 * k1), T(0)), A1k(K.begin(), K.begin() + k1 * k1);
      for (std::int64_t n = 0; n < net.N; ++n)
        for (std::int64_t i = 0; i < k1; ++i)
          for (std::int64_t j = 0; j < k1; ++j) {
            const T xi = i < 4 ? net.X[static_cast<size_t>(n * 4 + i)] : T(1);
            const T xj = j < 4 ? net.X[static_cast<size_t>(n * 4 + j)] : T(1);
            A1[static_cast<size_t>(i * k1 + j)] += xi * xj / T(net.N);
          }
      check_close(A1k, A1);
      std::vector<T> bases(static_cast<size_t>(S), T(0)), s(static_cast<size_t>(P));
      for (std::int64_t l = 1; l <= lay.n_layers(); ++l) {
        const auto& d = lay.dims(l);
        const std::int64_t k = lay.unit_width(l), D = lay.layer_params(l), o = lay.offset(fk::Shape::kfac, l);
        for (std::int64_t i = 0; i < k; ++i) bases[static_cast<size_t>(o + i * k + i)] = T(1);
        for (std::int64_t u = 0; u < d.n_out; ++u) bases[static_cast<size_t>(o + k * k + u * d.n_out + u)] = T(1);
        if (!d.bias) continue;
        std::vector<T> G(K.begin() + o + k * k, K.begin() + o + k * k + d.n_out * d.n_out), Gw;
        const T* F = Lb.data() + lay.offset(fk::Shape::layer, l);
        for (std::int64_t u = 0; u < d.n_out; ++u)
          for (std::int64_t v = 0; v < d.n_out; ++v)
            Gw.push_back(F[(d.n_out * d.n_in + u) * D + d.n_out * d.n_in + v]);
        check_close(G, Gw);
      }
      // EKFAC in identity bases: the diagonal of each layer block, unit-major
      opt.shape = fk::Shape::kfac;
      fk::ekfac_diagonal(mlp, head, X, {}, opt, fk::vector_view<const T>(bases.data(), S),
                         fk::vector_view(s.data(), P));
      std::vector<T> dw;
      for (std::int64_t l = 1; l <= lay.n_layers(); ++l) {
        const auto& d = lay.dims(l);
        const std::int64_t k = lay.unit_width(l), D = lay.layer_params(l);
        const T* F = Lb.data() + lay.offset(fk::Shape::layer, l);
        for (std::int64_t u = 0; u < d.n_out; ++u)
          for (std::int64_t j = 0; j < k; ++j) {
            const std::int64_t i = fk::Layout::local_index(u, j, d.n_out, d.n_in);
            dw.push_back(F[i * D + i]);
          }
      }
      check_close(s, dw);
      // the distance sums against the layer blocks, and the EKFAC diagonal of the same pass
      const std::int64_t L = lay.n_layers();
      std::vector<double> sq(static_cast<size_t>(L)), cr(static_cast<size_t>(L)), sq2(sq), cr2(cr);
      std::vector<T> s2(static_cast<size_t>(P));
      const auto none = fk::VectorView<T>{nullptr, 0, 1, fk::Device::host};
      const auto Kv = fk::vector_view<const T>(K.data(), S), Bv = fk::vector_view<const T>(bases.data(), S);
      fk::kfac_error_sums(mlp, head, X, {}, opt, Kv, {}, 0, fk::vector_view(sq.data(), L), fk::vector_view(cr.data(), L),
                          none);
      opt.chunk = 3;  // 3-input chunks and room for the summaries of a few inputs: several sweeps
      fk::kfac_error_sums(mlp, head, X, {}, opt, Kv, Bv, 6 * 200, fk::vector_view(sq2.data(), L),
                          fk::vector_view(cr2.data(), L), fk::vector_view(s2.data(), P));
      check_close(s2, s);
      std::vector<double> sums, again;
      for (std::int64_t l = 0; l < L; ++l) {
        sums.insert(sums.end(), {sq[static_cast<size_t>(l)], cr[static_cast<size_t>(l)]});
        again.insert(again.end(), {sq2[static_cast<size_t>(l)], cr2[static_cast<size_t>(l)]});
      }
      for (std::int64_t l = 1; l <= L; ++l) {
        const auto& d = lay.dims(l);
        const std::int64_t k = lay.unit_width(l), D = lay.layer_params(l), o = lay.offset(fk::Shape::kfac, l);
        const T* F = Lb.data() + lay.offset(fk::Shape::layer, l);
        double ff = 0.0, fk_ = 0.0;
        for (std::int64_t u = 0; u < d.n_out; ++u)
          for (std::int64_t j = 0; j < k; ++j)
            for (std::int64_t v = 0; v < d.n_out; ++v)
              for (std::int64_t c = 0; c < k; ++c) {
                const double f = double(F[fk::Layout::local_index(u, j, d.n_out, d.n_in) * D +
                                          fk::Layout::local_index(v, c, d.n_out, d.n_in)]);
                ff += f * f;
                fk_ += f * double(K[static_cast<size_t>(o + k * k + u * d.n_out + v)]) *
                       double(K[static_cast<size_t>(o + j * k + c)]);
              }
        const double t = sizeof(T) == 4 ? 1e-4 : 1e-11;
        CHECK(std::fabs(sums[static_cast<size_t>(2 * (l - 1))] - ff) <= t * ff);
        CHECK(std::fabs(sums[static_cast<size_t>(2 * (l - 1) + 1)] - fk_) <= t * ff);
        CHECK(std::fabs(again[static_cast<size_t>(2 * (l - 1))] - ff) <= t * ff);
        CHECK(std::fabs(again[static_cast<size_t>(2 * (l - 1) + 1)] - fk_) <= t * ff);
      }
    }
  }
  // the Hessian estimator has no Kronecker form
  Net<double> net;
  const auto mlp = net.host_mlp();
  fk::FisherOptions opt;
  opt.estimator = fk::Estimator::hessian;
  std::vector<double> K(static_cast<size_t>(mlp.layout().size(fk::Shape::kfac)));
  CHECK(fisherkit_test::contains(fisherkit_test::error_of([&] {
    fk::kfac_factors(mlp, fk::Head{fk::HeadKind::categorical, 1.0},
                     fk::matrix_view<const double>(net.X.data(), net.N, 4), {}, opt,
                     fk::vector_view(K.data(), std::int64_t(K.size())));
  }), "not 'hessian'"));
}

TEST_CASE("checks: every estimator pass refuses no draws, a negative offset and missing labels") {
  Net<double> net;
  const auto mlp = net.host_mlp();
  const fk::Head head{fk::HeadKind::categorical, 1.0};
  const auto X = fk::matrix_view<const double>(net.X.data(), net.N, 4);
  std::vector<double> out(static_cast<size_t>(mlp.layout().size(fk::Shape::kfac) + mlp.n_params()));
  const auto diag = fk::vector_view(out.data(), mlp.n_params());
  const auto kfac = fk::vector_view(out.data(), mlp.layout().size(fk::Shape::kfac));
  std::vector<double> bases(out.size());
  const auto qb = fk::vector_view<const double>(bases.data(), mlp.layout().size(fk::Shape::kfac));
  using fisherkit_test::contains;
  using fisherkit_test::error_of;
  struct Case {
    const char* what;
    fk::FisherOptions opt;
  };
  std::vector<Case> cases(3);
  cases[0] = {"'samples' must be >= 1, got 0", {}};
  cases[0].opt.estimator = fk::Estimator::score;
  cases[0].opt.samples = 0;
  cases[1] = {"'index_offset' must be >= 0, got -3", {}};
  cases[1].opt.index_offset = -3;
  cases[2] = {"needs labels: argument 'y' is missing", {}};
  cases[2].opt.estimator = fk::Estimator::empirical;
  for (const Case& c : cases) {
    CAPTURE(c.what);
    CHECK(contains(error_of([&] { fk::fisher(mlp, head, X, {}, c.opt, diag); }), c.what));
    CHECK(contains(error_of([&] { fk::kfac_factors(mlp, head, X, {}, c.opt, kfac); }), c.what));
    CHECK(contains(error_of([&] { fk::ekfac_diagonal(mlp, head, X, {}, c.opt, qb, diag); }), c.what));
    if (c.opt.estimator == fk::Estimator::empirical) continue;
    fk::UnitStatsOptions u;
    u.metric = fk::Metric::score;
    u.samples = c.opt.samples;
    u.index_offset = c.opt.index_offset;
    const std::vector<fk::UnitStats<double>> stats(3);
    CHECK(contains(error_of([&] { fk::unit_statistics(mlp, head, X, {}, u, stats, fk::VectorView<double>{}); }),
                   c.what));
    std::vector<double> H(6, 0.0), draws(6);
    CHECK(contains(error_of([&] {
      fk::head_sample(head, fk::matrix_view<const double>(H.data(), 2, 3), 0, c.opt.samples,
                      fk::matrix_view<double>(draws.data(), 2, 3), c.opt.index_offset);
    }), c.what));
  }
}

TEST_CASE("checks: a layer subset must hold ascending indices of existing layers") {
  Net<double> net;
  const auto mlp = net.host_mlp();
  const fk::Head head{fk::HeadKind::categorical, 1.0};
  const auto X = fk::matrix_view<const double>(net.X.data(), net.N, 4);
  std::vector<double> out(static_cast<size_t>(mlp.layout().size(fk::Shape::layer)));
  fk::FisherOptions opt;
  opt.shape = fk::Shape::layer;
  using fisherkit_test::contains;
  using fisherkit_test::error_of;
  const std::string want = "argument 'layers' must hold ascending layer indices in [0, 3), got ";
  for (const auto& layers : std::vector<std::vector<std::int64_t>>{{3}, {0, 3}, {-1}, {1, 1}, {2, 0}}) {
    opt.layers = layers;
    CAPTURE(layers.back());
    CHECK(contains(error_of([&] { fk::fisher(mlp, head, X, {}, opt, fk::vector_view(out.data(), out.size())); }),
                   want));
  }
  opt.layers = {0, 2};  // a valid subset: the two blocks, packed in order
  const std::int64_t P0 = mlp.layout().layer_params(1), P2 = mlp.layout().layer_params(3);
  std::vector<double> sub(static_cast<size_t>(P0 * P0 + P2 * P2));
  fk::fisher(mlp, head, X, {}, opt, fk::vector_view(sub.data(), sub.size()));
  opt.layers.clear();
  fk::fisher(mlp, head, X, {}, opt, fk::vector_view(out.data(), out.size()));
  const std::int64_t off2 = mlp.layout().offset(fk::Shape::layer, 3);
  auto close = [](double a, double b) { return std::abs(a - b) <= 1e-12 * (1.0 + std::abs(b)); };
  for (std::int64_t i = 0; i < P0 * P0; ++i) CHECK(close(sub[static_cast<size_t>(i)], out[static_cast<size_t>(i)]));
  for (std::int64_t i = 0; i < P2 * P2; ++i)
    CHECK(close(sub[static_cast<size_t>(P0 * P0 + i)], out[static_cast<size_t>(off2 + i)]));
}

TEST_CASE_TEMPLATE("overflow: a non-finite result of finite inputs is an error naming the input row", T, float,
                   double) {
  // one linear layer into a Poisson head: h = 4 x, so x = h / 4 with h = 720 (float64) or
  // 100 (float32) makes exp(h) overflow at that row only
  const T h = sizeof(T) == 4 ? T(100) : T(720);
  std::vector<T> W(8, T(1)), X(24, T(0));
  for (int j = 0; j < 4; ++j) X[static_cast<size_t>(4 * 4 + j)] = h / T(4);  // row 4
  const fk::Mlp<T> m({{fk::matrix_view<const T>(W.data(), 2, 4), fk::VectorView<const T>{nullptr, 0, 1}}}, {});
  const fk::Head head{fk::HeadKind::poisson, 1.0};
  const auto Xv = fk::matrix_view<const T>(X.data(), 6, 4);
  std::vector<T> y(12, T(1)), grads(static_cast<size_t>(6 * m.n_params())), g(static_cast<size_t>(m.n_params()));
  const auto yv = fk::matrix_view<const T>(y.data(), 6, 2);
  using fisherkit_test::contains;
  using fisherkit_test::error_of;
  const std::string e1 = error_of([&] {
    fk::per_sample_grads(m, head, Xv, yv, fk::matrix_view<T>(grads.data(), 6, m.n_params()), 0);
  });
  CHECK(contains(e1, "overflows"));
  CHECK(contains(e1, "at input row 4"));
  const std::string e2 = error_of([&] {
    fk::nll_gradient(m, head, Xv, yv, fk::vector_view<T>(g.data(), m.n_params()), 0);
  });
  CHECK(contains(e2, "at input row 4"));
  // the sums: variance of the score estimator over rows whose residuals are finite but whose
  // fourth moments are not
  std::vector<T> var(static_cast<size_t>(m.n_params()));
  const std::string e3 = error_of([&] {
    fk::variance_sum(m, head, Xv, fk::Moment::v1, fk::Shape::diag, fk::vector_view<T>(var.data(), m.n_params()), 2);
  });
  CHECK(contains(e3, "at input row 4"));
}
