// Head moments and per-unit variance scalars vectorised over rows (host). The per-row
// maths is detail/moments.hpp.
#include "fisherkit/moments.hpp"

#include <cstdint>
#include <vector>

#include "fisherkit/detail/moments.hpp"
#include "parallel.hpp"
#include "validate.hpp"

namespace fisherkit {

int head_moment_order(HeadMoment which) {
  switch (which) {
    case HeadMoment::covariance: return 2;
    case HeadMoment::third_cumulant: return 3;
    case HeadMoment::fourth_moment:
    case HeadMoment::fourth_cumulant: return 4;
  }
  detail::fail("unknown head moment ", static_cast<int>(which),
               "; expected covariance, third_cumulant, fourth_moment or fourth_cumulant");
}

namespace {

template <class T>
using Vec = detail::StridedVec<T>;

template <class T>
void check_rows(const Head& head, MatrixView<const T> H) {
  detail::check_host(H, "H");
  FISHERKIT_CHECK(H.rows >= 0 && H.cols >= 1, "argument 'H' must have at least one column");
  check_head(head, H.cols);
  detail::check_finite(H, "H");
}

template <class V>
void check_out_shape(const V& m, std::int64_t rows, std::int64_t cols, const char* name) {
  detail::check_host(m, name);
  detail::check_shape(m, rows, cols, name);
}

bool is_empty(const void* data) { return data == nullptr; }

template <class T>
detail::HeadRow<T> row_of(const Head& head, MatrixView<const T> H, std::int64_t n,
                          double* cache = nullptr) {
  return detail::make_head_row<T>(head.kind, head.sigma, Vec<T>(H.row(n), H.col_stride), H.cols,
                                  cache);
}

}  // namespace

template <class T>
void head_contraction(const Head& head, HeadMoment which, MatrixView<const T> H,
                      MatrixView<const T> U, MatrixView<const T> V, MatrixView<const T> W,
                      MatrixView<const T> Z, VectorView<T> out) {
  const int order = head_moment_order(which);
  check_rows(head, H);
  const std::int64_t N = H.rows, C = H.cols;
  const MatrixView<const T> vecs[4] = {U, V, W, Z};
  const char* names[4] = {"U", "V", "W", "Z"};
  for (int k = 0; k < order; ++k) {
    FISHERKIT_CHECK(!is_empty(vecs[k].data) || N * C == 0, "argument '", names[k],
                    "' is required for a contraction of order ", order);
    check_out_shape(vecs[k], N, C, names[k]);
  }
  detail::check_host(out, "out");
  FISHERKIT_CHECK(out.size == N, "argument 'out' must have ", N, " entries (one per row of H), got ",
                  out.size);
  detail::parallel_for(N, C * 8 * order, [&](std::int64_t n) {
    const detail::HeadRow<T> r = row_of(head, H, n);
    Vec<T> v[4];
    for (int k = 0; k < order; ++k) v[k] = Vec<T>(vecs[k].row(n), vecs[k].col_stride);
    double val = 0.0;
    switch (which) {
      case HeadMoment::covariance: val = detail::head_quad(r, v[0], v[1]); break;
      case HeadMoment::third_cumulant: val = detail::head_kappa3(r, v[0], v[1], v[2]); break;
      case HeadMoment::fourth_moment: val = detail::head_fourth(r, v[0], v[1], v[2], v[3]); break;
      case HeadMoment::fourth_cumulant: val = detail::head_kappa4(r, v[0], v[1], v[2], v[3]); break;
    }
    out[n] = T(val);
  });
}

namespace {
/// Validates backward columns G (N x C*n, entry (c, u) at column c*n + u); returns n.
template <class T>
std::int64_t backward_units(MatrixView<const T> G, std::int64_t N, std::int64_t C) {
  detail::check_host(G, "G");
  FISHERKIT_CHECK(G.rows == N, "argument 'G' must have ", N, " rows (one per row of H), got ",
                  G.rows);
  FISHERKIT_CHECK(G.cols % C == 0, "argument 'G' must have C*n columns (C = ", C,
                  " outputs times n units, entry (c, u) at column c*n + u), got ", G.cols);
  return G.cols / C;
}
}  // namespace

template <class T>
void head_unit_scalars(const Head& head, MatrixView<const T> H, MatrixView<const T> G,
                       MatrixView<const T> Tdiag, MatrixView<T> q, MatrixView<T> r,
                       MatrixView<T> w, MatrixView<T> c) {
  check_rows(head, H);
  const std::int64_t N = H.rows, C = H.cols;
  const std::int64_t nu = backward_units(G, N, C);
  const bool has_t = !is_empty(Tdiag.data);
  if (has_t) check_out_shape(Tdiag, N, C * nu, "Tdiag");
  check_out_shape(q, N, nu, "q");
  check_out_shape(r, N, nu, "r");
  if (has_t) {
    check_out_shape(w, N, nu, "w");
    check_out_shape(c, N, nu, "c");
  } else {
    FISHERKIT_CHECK(is_empty(w.data) && is_empty(c.data),
                    "arguments 'w' and 'c' need 'Tdiag' (the output-Hessian diagonals); pass "
                    "Tdiag or leave w and c out");
  }
  const bool cached = head.kind != HeadKind::gaussian;
  detail::parallel_for(N, nu * C * 8, [&](std::int64_t n) {
    std::vector<double> cache(cached ? 2 * C : 0);
    const detail::HeadRow<T> hr = row_of(head, H, n, cached ? cache.data() : nullptr);
    for (std::int64_t u = 0; u < nu; ++u) {
      const Vec<T> g(G.row(n) + u * G.col_stride, nu * G.col_stride);
      const Vec<T> td = has_t ? Vec<T>(Tdiag.row(n) + u * Tdiag.col_stride, nu * Tdiag.col_stride)
                              : Vec<T>();
      const detail::UnitScalars s = detail::head_unit_scalars(hr, g, td);
      q(n, u) = T(s.q);
      r(n, u) = T(s.r);
      if (has_t) {
        w(n, u) = T(s.w);
        c(n, u) = T(s.c);
      }
    }
  });
}

template <class T>
void head_layer_block(const Head& head, MatrixView<const T> H, MatrixView<const T> G,
                      MatrixView<const T> Tfull, MatrixView<T> U1, MatrixView<T> U2) {
  check_rows(head, H);
  const std::int64_t N = H.rows, C = H.cols;
  const std::int64_t nu = backward_units(G, N, C);
  const bool has_t = !is_empty(Tfull.data);
  if (has_t) check_out_shape(Tfull, N, C * nu * nu, "T");
  check_out_shape(U1, N, nu * nu, "U1");
  if (has_t)
    check_out_shape(U2, N, nu * nu, "U2");
  else
    FISHERKIT_CHECK(is_empty(U2.data), "argument 'U2' needs 'T' (the output Hessians T_l); pass "
                    "T or leave U2 out");
  const bool cached = head.kind != HeadKind::gaussian;
  detail::parallel_for(N, nu * nu * C * 8, [&](std::int64_t n) {
    std::vector<double> cache(cached ? 2 * C : 0);
    const detail::HeadRow<T> hr = row_of(head, H, n, cached ? cache.data() : nullptr);
    const std::int64_t gs = G.col_stride;
    auto tvec = [&](std::int64_t u, std::int64_t v) {
      return Vec<T>(Tfull.row(n) + (u * nu + v) * Tfull.col_stride, nu * nu * Tfull.col_stride);
    };
    for (std::int64_t u = 0; u < nu; ++u) {
      const Vec<T> a(G.row(n) + u * gs, nu * gs);
      for (std::int64_t v = u; v < nu; ++v) {
        const Vec<T> b(G.row(n) + v * gs, nu * gs);
        const detail::UnitPairScalars s =
            detail::head_unit_pair_scalars(hr, a, b, has_t ? tvec(u, v) : Vec<T>());
        U1(n, u * nu + v) = T(s.u1);
        U1(n, v * nu + u) = T(s.u1);
        if (has_t) {
          U2(n, u * nu + v) = T(s.u2);
          if (v != u) U2(n, v * nu + u) = T(detail::head_quad(hr, tvec(v, u), tvec(v, u)));
        }
      }
    }
  });
}

template <class T>
void head_spectral_constants(const Head& head, MatrixView<const T> H, MatrixView<T> out) {
  check_rows(head, H);
  check_out_shape(out, H.rows, 4, "out");
  detail::parallel_for(H.rows, H.cols * 16, [&](std::int64_t n) {
    const detail::SpectralConstants s = detail::head_spectral_constants(row_of(head, H, n));
    out(n, 0) = T(s.lambda_min);
    out(n, 1) = T(s.lambda_max);
    out(n, 2) = T(s.k_min);
    out(n, 3) = T(s.k_max);
  });
}

#define FISHERKIT_INSTANTIATE_MOMENTS(T)                                                       \
  template void head_contraction<T>(const Head&, HeadMoment, MatrixView<const T>,               \
                                    MatrixView<const T>, MatrixView<const T>,                   \
                                    MatrixView<const T>, MatrixView<const T>, VectorView<T>);   \
  template void head_unit_scalars<T>(const Head&, MatrixView<const T>, MatrixView<const T>,     \
                                     MatrixView<const T>, MatrixView<T>, MatrixView<T>,         \
                                     MatrixView<T>, MatrixView<T>);                             \
  template void head_layer_block<T>(const Head&, MatrixView<const T>, MatrixView<const T>,      \
                                    MatrixView<const T>, MatrixView<T>, MatrixView<T>);         \
  template void head_spectral_constants<T>(const Head&, MatrixView<const T>, MatrixView<T>);

FISHERKIT_INSTANTIATE_MOMENTS(float)
FISHERKIT_INSTANTIATE_MOMENTS(double)

}  // namespace fisherkit
