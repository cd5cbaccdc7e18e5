// The CUDA backend's entry points: the portable passes run by the host executor
// (fisherkit::portable) against the CPU engine, and the fisherkit::cuda launchers on device
// memory where a GPU is visible (checked against the CPU engine); without a GPU, the
// launchers must fail with a clear fisherkit::Unavailable, never a crash.
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
template <class T>
struct Net {
  std::vector<std::vector<T>> W, b;
  std::vector<std::int64_t> sizes{4, 5, 3, 3};
  std::vector<T> X;
  std::int64_t N = 11;
  Net() {
    std::uint64_t s = 12345;
    auto next = [&] {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      return T(double(s >> 11) / double(1ull << 53) - 0.5);
    };
    for (size_t l = 1; l < sizes.size(); ++l) {
      W.emplace_back(static_cast<size_t>(sizes[l] * sizes[l - 1]));
      b.emplace_back(static_cast<size_t>(sizes[l]));
      for (auto& v : W.back()) v = next();
      for (auto& v : b.back()) v = next();
    }
    X.resize(static_cast<size_t>(N * sizes[0]));
    for (auto& v : X) v = T(3) * next();
  }
  /// The MLP over weight storage at `w`/`bb` (host vectors or device copies).
  fk::Mlp<T> mlp(const std::vector<T*>& w, const std::vector<T*>& bb, fk::Device dev) const {
    std::vector<fk::Layer<T>> layers;
    for (size_t l = 1; l < sizes.size(); ++l)
      layers.push_back({fk::matrix_view<const T>(w[l - 1], sizes[l], sizes[l - 1], dev),
                        fk::vector_view<const T>(bb[l - 1], sizes[l], dev)});
    return fk::Mlp<T>(layers, {fk::Activation::tanh, fk::Activation::softplus});
  }
  fk::Mlp<T> host_mlp() {
    std::vector<T*> w, bb;
    for (auto& v : W) w.push_back(v.data());
    for (auto& v : b) bb.push_back(v.data());
    return mlp(w, bb, fk::Device::host);
  }
};

const fk::Shape kShapes[] = {fk::Shape::diag, fk::Shape::unit, fk::Shape::layer, fk::Shape::full};
const fk::Estimator kEstimators[] = {fk::Estimator::exact, fk::Estimator::score, fk::Estimator::hessian};

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

}  // namespace

TEST_CASE_TEMPLATE("backends: the portable passes give the CPU engine's Fisher and variances", T, float, double) {
  Net<T> net;
  auto m = net.host_mlp();
  const fk::Head head{fk::HeadKind::categorical, 1.0};
  auto X = fk::matrix_view<const T>(net.X.data(), net.N, net.sizes[0]);
  for (auto shape : kShapes)
    for (auto est : kEstimators) {
      if (est == fk::Estimator::hessian && (shape == fk::Shape::layer || shape == fk::Shape::full)) continue;
      fk::FisherOptions opt;
      opt.estimator = est;
      opt.shape = shape;
      opt.samples = 2;
      opt.seed = 9;
      opt.chunk = 4;
      const auto size = static_cast<size_t>(fk::fisher_size(m, shape));
      std::vector<T> a(size), b(size);
      fk::fisher(m, head, X, {}, opt, fk::vector_view(a.data(), std::int64_t(size)));
      fk::portable::fisher(m, head, X, {}, opt, fk::vector_view(b.data(), std::int64_t(size)));
      check_close(b, a);
    }
  for (auto shape : {fk::Shape::diag, fk::Shape::unit})
    for (auto which : {fk::Moment::v1, fk::Moment::v2, fk::Moment::c12}) {
      const auto size = static_cast<size_t>(fk::fisher_size(m, shape));
      std::vector<T> a(size), b(size);
      fk::variance_sum(m, head, X, which, shape, fk::vector_view(a.data(), std::int64_t(size)), 3);
      fk::portable::variance_sum(m, head, X, which, shape, fk::vector_view(b.data(), std::int64_t(size)), 5);
      check_close(b, a);
    }
}

TEST_CASE("backends: the portable passes refuse what they do not compute, naming it") {
  Net<double> net;
  auto m = net.host_mlp();
  fk::FisherOptions opt;
  opt.estimator = fk::Estimator::hessian;
  opt.shape = fk::Shape::full;
  std::vector<double> out(static_cast<size_t>(fk::fisher_size(m, opt.shape)));
  const auto msg = fisherkit_test::error_of([&] {
    fk::portable::fisher(m, fk::Head{fk::HeadKind::categorical, 1.0},
                         fk::matrix_view<const double>(net.X.data(), net.N, 4), {}, opt,
                         fk::vector_view(out.data(), std::int64_t(out.size())));
  });
  CHECK(fisherkit_test::contains(msg, "Hessian estimator with shape 'full'"));
}

TEST_CASE("backends: the CUDA launchers agree with the CPU engine, or fail cleanly without a GPU") {
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
    // device-tagged views over host memory: the launcher must refuse before touching them
    std::vector<double*> w, bb;
    for (auto& v : net.W) w.push_back(v.data());
    for (auto& v : net.b) bb.push_back(v.data());
    auto dm = net.mlp(w, bb, fk::Device::cuda);
    std::vector<double> out(size);
    std::string msg;
    try {
      fk::cuda::fisher_cuda(dm, head, fk::matrix_view<const double>(net.X.data(), net.N, 4, fk::Device::cuda), {},
                            opt, fk::vector_view(out.data(), std::int64_t(size), fk::Device::cuda), nullptr);
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
  fk::cuda::fisher_cuda(dm, head, fk::matrix_view<const double>(dX, net.N, 4, fk::Device::cuda), {}, opt,
                        fk::vector_view(dout, std::int64_t(size), fk::Device::cuda), nullptr);
  std::vector<double> got(size);
  REQUIRE(cudaMemcpy(got.data(), dout, size * sizeof(double), cudaMemcpyDeviceToHost) == cudaSuccess);
  check_close(got, want);
  for (auto* p : w) cudaFree(p);
  for (auto* p : bb) cudaFree(p);
  cudaFree(dX);
  cudaFree(dout);
#endif
}
