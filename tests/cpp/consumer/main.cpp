// Downstream use of the installed C++ package: a 2-3-2 tanh MLP from literal weights, its
// outputs (fisherkit::forward) and per-sample NLL gradients under a categorical head
// (fisherkit::per_sample_grads), checked against the same quantities written out by hand.
// Prints "consumer ok" and returns 0 when everything agrees.
#include <cmath>
#include <cstdio>
#include <vector>

#include <fisherkit/fisherkit.hpp>

int main() {
  // Layer 1: W1 (3 x 2), b1 (3); layer 2: W2 (2 x 3), b2 (2). Row-major.
  const double W1[6] = {0.5, -0.3, 0.8, 0.1, -0.6, 0.4};
  const double b1[3] = {0.1, -0.2, 0.05};
  const double W2[6] = {0.7, -0.5, 0.2, -0.4, 0.9, 0.3};
  const double b2[2] = {-0.1, 0.2};
  const int N = 3, P = 6 + 3 + 6 + 2;
  const double X[N * 2] = {1.0, 2.0, -0.5, 0.25, 0.0, -1.5};
  const double y[N] = {1, 0, 1};  // class indices

  namespace fk = fisherkit;
  std::vector<fk::Layer<double>> layers = {
      {fk::matrix_view<const double>(W1, 3, 2), fk::vector_view<const double>(b1, 3)},
      {fk::matrix_view<const double>(W2, 2, 3), fk::vector_view<const double>(b2, 2)}};
  const fk::Mlp<double> mlp(layers, {fk::Activation::tanh});
  const fk::Head head{fk::HeadKind::categorical, 1.0};

  std::vector<double> H(N * 2), G(N * P);
  try {
    fk::forward<double>(mlp, fk::matrix_view<const double>(X, N, 2), fk::matrix_view(H.data(), N, 2));
    fk::per_sample_grads<double>(mlp, head, fk::matrix_view<const double>(X, N, 2),
                                 fk::matrix_view<const double>(y, N, 1), fk::matrix_view(G.data(), N, P));
  } catch (const std::exception& e) {
    std::printf("fisherkit threw: %s\n", e.what());
    return 1;
  }

  int bad = 0;
  auto check = [&](const char* what, int n, int i, double got, double want) {
    if (!(std::fabs(got - want) <= 1e-12 * (1.0 + std::fabs(want)))) {
      std::printf("mismatch: %s sample %d entry %d: fisherkit %.17g, by hand %.17g\n", what, n, i, got, want);
      ++bad;
    }
  };

  for (int n = 0; n < N; ++n) {
    const double* x = X + 2 * n;
    // Forward: a = tanh(W1 x + b1), h = W2 a + b2.
    double a[3], h[2];
    for (int u = 0; u < 3; ++u) a[u] = std::tanh(W1[2 * u] * x[0] + W1[2 * u + 1] * x[1] + b1[u]);
    for (int c = 0; c < 2; ++c) h[c] = W2[3 * c] * a[0] + W2[3 * c + 1] * a[1] + W2[3 * c + 2] * a[2] + b2[c];
    for (int c = 0; c < 2; ++c) check("forward", n, c, H[2 * n + c], h[c]);

    // Gradient of -log softmax(h)[y]: r = softmax(h) - onehot(y) at the output,
    // delta = (W2^T r) * (1 - a^2) at the hidden layer.
    const double m = h[0] > h[1] ? h[0] : h[1];
    const double z = std::exp(h[0] - m) + std::exp(h[1] - m);
    double r[2];
    for (int c = 0; c < 2; ++c) r[c] = std::exp(h[c] - m) / z - (c == int(y[n]) ? 1.0 : 0.0);
    double d[3];
    for (int u = 0; u < 3; ++u) d[u] = (W2[u] * r[0] + W2[3 + u] * r[1]) * (1.0 - a[u] * a[u]);

    // Flat order: W1 row-major, b1, W2 row-major, b2.
    double g[P];
    int k = 0;
    for (int u = 0; u < 3; ++u)
      for (int j = 0; j < 2; ++j) g[k++] = d[u] * x[j];
    for (int u = 0; u < 3; ++u) g[k++] = d[u];
    for (int c = 0; c < 2; ++c)
      for (int u = 0; u < 3; ++u) g[k++] = r[c] * a[u];
    for (int c = 0; c < 2; ++c) g[k++] = r[c];
    for (int i = 0; i < P; ++i) check("per_sample_grads", n, i, G[n * P + i], g[i]);
  }

  if (bad) {
    std::printf("consumer FAILED: %d mismatches\n", bad);
    return 1;
  }
  std::printf("fisherkit %s, BLAS %s\n", fk::version().c_str(), fk::blas_name().c_str());
  std::printf("consumer ok\n");
  return 0;
}
