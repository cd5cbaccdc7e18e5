// The exact Fisher information of a small MLP from C++: its diagonal, its unit blocks, and
// the closed-form variance of the score estimator of the diagonal.
#include <fisherkit/fisherkit.hpp>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

int main() {
  using namespace fisherkit;
  const std::int64_t N = 256, d = 4, hidden = 8, C = 3;
  std::mt19937 gen(0);
  std::normal_distribution<double> normal(0.0, 1.0);
  auto fill = [&](std::vector<double>& v, double scale) {
    for (auto& x : v) x = scale * normal(gen);
  };
  std::vector<double> W1(hidden * d), b1(hidden), W2(C * hidden), b2(C), X(N * d);
  fill(W1, 1.0 / std::sqrt(double(d)));
  fill(b1, 0.1);
  fill(W2, 1.0 / std::sqrt(double(hidden)));
  fill(b2, 0.1);
  fill(X, 1.0);

  Mlp<double> mlp({{matrix_view<const double>(W1.data(), hidden, d), vector_view<const double>(b1.data(), hidden)},
                   {matrix_view<const double>(W2.data(), C, hidden), vector_view<const double>(b2.data(), C)}},
                  {Activation::tanh});
  const Head head{HeadKind::categorical};
  const auto Xv = matrix_view<const double>(X.data(), N, d);

  FisherOptions opt;  // exact estimator
  opt.shape = Shape::diag;
  std::vector<double> diag(fisher_size(mlp, Shape::diag));
  fisher(mlp, head, Xv, MatrixView<const double>{}, opt, vector_view(diag.data(), std::int64_t(diag.size())));

  opt.shape = Shape::unit;
  std::vector<double> unit(fisher_size(mlp, Shape::unit));
  fisher(mlp, head, Xv, MatrixView<const double>{}, opt, vector_view(unit.data(), std::int64_t(unit.size())));

  // the traces of both shapes must agree: unit blocks hold the diagonal too
  double tr_diag = 0.0, tr_unit = 0.0;
  for (double v : diag) tr_diag += v;
  std::int64_t off = 0;
  for (std::int64_t l = 1; l <= mlp.n_layers(); ++l) {
    const std::int64_t k = mlp.widths()[l - 1] + 1;
    for (std::int64_t u = 0; u < mlp.widths()[l]; ++u, off += k * k)
      for (std::int64_t j = 0; j < k; ++j) tr_unit += unit[off + j * k + j];
  }

  std::vector<double> v1(diag.size());
  variance_sum(mlp, head, Xv, Moment::v1, Shape::diag, vector_view(v1.data(), std::int64_t(v1.size())));
  double rel = 0.0;  // mean relative standard error of a one-draw score estimate
  for (size_t i = 0; i < diag.size(); ++i)
    if (diag[i] > 0) rel += std::sqrt(v1[i] / double(N * N)) / diag[i];
  rel /= double(diag.size());

  std::printf("fisherkit %s: P=%lld, trace(diag)=%.6f, trace(unit)=%.6f, "
              "mean relative s.e. of a 1-draw score estimate %.3f\n",
              version().c_str(), static_cast<long long>(mlp.n_params()), tr_diag, tr_unit, rel);
  const bool ok = std::fabs(tr_diag - tr_unit) <= 1e-12 * tr_diag && tr_diag > 0 && rel > 0;
  std::puts(ok ? "example ok" : "example FAILED");
  return ok ? 0 : 1;
}
