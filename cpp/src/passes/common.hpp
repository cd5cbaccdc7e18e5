// What every pass shares: argument checks that run on the executor, the one chunk loop
// (one budget policy, one interrupt checkpoint), and the accumulation helpers.
//
// The passes (this folder) are written once against an executor X: cpu/host_exec.hpp for
// the CPU (OpenMP loops, OpenBLAS, the host's coarse primitives) and cuda/exec.cuh for the
// GPU (kernels, cuBLAS). An executor gives workspace buffers (Buf), element loops (for_each,
// for_2d), a search (first_if), GEMMs, and a few coarse primitives each backend implements
// its own way (syrk, unit_gram, bias_activation, emit_symmetric). Loop bodies are
// FISHERKIT_LAMBDAs that capture values and pointers only (never `this`), and their element
// maths is detail/*.hpp, shared by both backends. nvcc forbids an extended lambda inside a
// function template instantiated with a lambda type, so the bodies live in functions whose
// template parameters are the executor and the element type only.
//
// Private to the core library.
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "fisherkit/accumulate.hpp"
#include "fisherkit/detail/hd.hpp"
#include "fisherkit/detail/math.hpp"
#include "fisherkit/monitor.hpp"

namespace fisherkit::passes {

using i64 = std::int64_t;

template <class X, class T>
using Buf = typename X::template Buf<T>;

// ------------------------------------------------------------------ checks

/// The first row of m that holds a NaN or Inf, or -1: a search over rows, each row scanned
/// by a branch-free loop (vectorised where the columns are contiguous; no index division per
/// value).
template <class X, class T>
i64 first_nonfinite_row(X& x, MatrixView<const T> m) {
  const i64 cols = m.cols;
  if (m.rows <= 0 || cols <= 0) return -1;
  if (cols == 1) {  // a vector: one value per row
    const T* p = m.data;
    const i64 rs = m.row_stride;
    return x.first_if(m.rows, [=] FISHERKIT_LAMBDA(i64 r) { return !detail::fk_isfinite(p[r * rs]); });
  }
  return x.first_if(m.rows, [=] FISHERKIT_LAMBDA(i64 r) {
    const T* p = m.row(r);
    const i64 cs = m.col_stride;
    int nonfinite = 0;
    if (cs == 1) {
      for (i64 j = 0; j < cols; ++j) nonfinite |= !detail::fk_isfinite(p[j]);
    } else {
      for (i64 j = 0; j < cols; ++j) nonfinite |= !detail::fk_isfinite(p[j * cs]);
    }
    return nonfinite != 0;
  });
}

/// The column of the first NaN or Inf in row r of m (searched only after a failure).
template <class X, class T>
i64 first_nonfinite_col(X& x, MatrixView<const T> m, i64 r) {
  return x.first_if(m.cols, [=] FISHERKIT_LAMBDA(i64 j) { return !detail::fk_isfinite(m(r, j)); });
}

/// Every value of m is finite; names the argument and the first bad entry.
template <class X, class T>
void check_finite(X& x, MatrixView<const T> m, const char* name) {
  const i64 bad = first_nonfinite_row(x, m);
  if (bad < 0) return;
  FISHERKIT_CHECK(false, "argument '", name, "' contains NaN or Inf (first at [", bad, ", ",
                  first_nonfinite_col(x, m, bad), "])");
}

template <class X, class V>
void check_on(const V& v, const char* name) {
  FISHERKIT_CHECK(v.device == X::device, "argument '", name, "' is in ",
                  v.device == Device::cuda ? "GPU" : "host", " memory, but this computation runs in ",
                  X::device == Device::cuda ? "GPU" : "host", " memory (where the MLP's weights are)");
}

/// Inputs X: on the executor's device with the weights, at least one row, width n_0,
/// unit column stride (no device work).
template <class X, class T>
void check_layout(const Mlp<T>& mlp, MatrixView<const T> Xm, const char* name) {
  check_on<X>(Xm, name);
  FISHERKIT_CHECK(Xm.device == mlp.device(), "argument '", name, "' is in ",
                  Xm.device == Device::cuda ? "GPU" : "host", " memory but the MLP's weights are in ",
                  mlp.device() == Device::cuda ? "GPU" : "host", " memory; put both on one device");
  FISHERKIT_CHECK(Xm.rows > 0, "argument '", name, "' is an empty batch (0 rows)");
  FISHERKIT_CHECK(Xm.cols == mlp.input_dim(), "argument '", name, "' must have ", mlp.input_dim(),
                  " columns (the MLP's input width), got ", Xm.cols);
  detail::check_rows_unit_stride(Xm, name);
}

template <class X, class T>
void check_label_layout(const Head& head, MatrixView<const T> y, i64 N, i64 C, const char* name) {
  check_on<X>(y, name);
  fisherkit::check_label_layout(head, y, N, C, name);
}

/// The draw count and the first input's index (into the counter-based stream) of a
/// sampled pass.
inline void check_draws(i64 samples, i64 index_offset) {
  FISHERKIT_CHECK(samples >= 1, "argument 'samples' must be >= 1, got ", samples);
  FISHERKIT_CHECK(index_offset >= 0, "argument 'index_offset' must be >= 0, got ", index_offset);
}

/// After every layout check: start the executor, then check values on the device: X and
/// the weights finite, and (labels_of != nullptr) the labels in the head's support.
template <class X, class T>
void check_values(X& x, const Mlp<T>& mlp, MatrixView<const T> Xm, const Head* labels_of = nullptr,
                  MatrixView<const T> y = {}) {
  x.start();
  x.check_device_of(Xm.data, "X");
  x.check_device_of(mlp.layer(1).weight.data, "layers[0].weight");
  check_finite(x, Xm, "X");
  for (i64 l = 1; l <= mlp.n_layers(); ++l) {
    const auto& W = mlp.layer(l).weight;
    const auto& b = mlp.layer(l).bias;
    const std::string wn = "layers[" + std::to_string(l - 1) + "].weight";
    const std::string bn = "layers[" + std::to_string(l - 1) + "].bias";
    check_finite(x, W, wn.c_str());
    if (mlp.has_bias(l))
      check_finite(x, MatrixView<const T>{b.data, b.size, 1, b.stride, 1, b.device}, bn.c_str());
  }
  if (!labels_of) return;
  const HeadKind kind = labels_of->kind;
  const i64 C = mlp.output_dim();
  const i64 bad = x.first_if(y.rows, [=] FISHERKIT_LAMBDA(i64 n) {
    return !detail::head_label_valid(kind, y.row(n), C);
  });
  if (bad >= 0) {
    T first;
    x.to_host(&first, y.row(bad), 1);
    fail_label(*labels_of, "y", bad, double(first), C);
  }
}

/// The layout checks of a pass over labelled data: X with the weights, the head, y, out.
template <class X, class T, class Out>
void check_labelled(const Mlp<T>& mlp, const Head& head, MatrixView<const T> Xm, MatrixView<const T> y,
                    const Out& out) {
  check_layout<X>(mlp, Xm, "X");
  check_head(head, mlp.output_dim());
  check_label_layout<X>(head, y, Xm.rows, mlp.output_dim(), "y");
  check_on<X>(out, "out");
}

// ------------------------------------------------------------------ the chunk loop

template <class T>
i64 sum_widths(const Mlp<T>& m) {
  i64 s = 0;
  for (auto w : m.widths()) s += w;
  return s;
}
template <class T>
i64 max_width(const Mlp<T>& m) {
  return *std::max_element(m.widths().begin(), m.widths().end());
}

/// Inputs per chunk: `requested` when > 0 (at most n), else as many as fit X::chunk_budget
/// bytes (times `budget_scale`) of per-chunk workspace at `per_sample` bytes an input,
/// between 16 and X::chunk_cap.
template <class X>
i64 chunk_size(i64 requested, i64 n, i64 per_sample, i64 budget_scale = 1) {
  if (requested > 0) return std::max<i64>(1, std::min(requested, std::max<i64>(n, 1)));
  const i64 c = X::chunk_budget * budget_scale / std::max<i64>(per_sample, 1);
  return std::max<i64>(16, std::min<i64>({c, X::chunk_cap, std::max<i64>(n, 1)}));
}

/// The loop every pass runs: body(s0, n) for consecutive chunks [s0, s0 + n) of the N
/// inputs, of chunk_size(...) inputs. Before the first chunk and after each one the current
/// Monitor (monitor.hpp) is told the progress and may stop the call (a pending Ctrl-C in
/// Python).
template <class X, class Body>
void for_chunks(i64 N, i64 chunk, Body&& body) {
  detail::checkpoint(0, N);
  for (i64 s0 = 0; s0 < N; s0 += chunk) {
    const i64 n = std::min(chunk, N - s0);
    body(s0, n);
    detail::checkpoint(s0 + n, N);
  }
}

// ------------------------------------------------------------------ overflow

/// p[0 .. n) = 0 (nothing when p is null).
template <class X, class A>
void zero(X& x, A* p, i64 n) {
  if (p) x.for_each(n, [=] FISHERKIT_LAMBDA(i64 i) { p[i] = A(0); });
}

/// Index of the first NaN or Inf of p[0 .. n) (executor memory), or -1.
template <class X, class T>
i64 first_nonfinite(X& x, const T* p, i64 n) {
  if (n <= 0) return -1;
  return x.first_if(n, [=] FISHERKIT_LAMBDA(i64 i) { return !detail::fk_isfinite(p[i]); });
}

template <class T>
constexpr const char* type_name() {
  return sizeof(T) == 4 ? "float32" : "float64";
}

/// A per-input result: rows row0 .. row0 + n of `cols` values (row stride ld) computed from
/// finite inputs and weights; a NaN or Inf among them is an overflow, named with the input
/// row and the quantity (one pass over what the chunk wrote).
template <class X, class T>
void check_result_rows(X& x, const T* p, i64 n, i64 cols, i64 ld, i64 row0, const char* what,
                       const char* row_name = "input row") {
  const i64 bad = first_nonfinite_row(x, MatrixView<const T>{p, n, cols, ld, 1, X::device});
  FISHERKIT_CHECK(bad < 0, what, " overflows ", type_name<T>(), " at ", row_name, " ", row0 + bad,
                  " (finite inputs and weights, but too large for this computation; rescale the inputs or the "
                  "weights", sizeof(T) == 4 ? ", or use a float64 model)" : ")");
}

/// The emitted result in T: finite unless a sum went beyond the range of T (the
/// accumulator checks of each chunk catch the rows; this catches the scaled emission).
template <class X, class T>
void check_emitted(X& x, const T* p, i64 rows, i64 cols, i64 ld, i64 col_stride, const char* what) {
  const MatrixView<const T> m{p, rows, cols, ld, col_stride, X::device};
  const i64 bad = first_nonfinite_row(x, m);
  if (bad < 0) return;
  FISHERKIT_CHECK(false, what, " exceeds the range of ", type_name<T>(), " (entry ",
                  bad * cols + first_nonfinite_col(x, m, bad), " of the result); rescale the inputs or the weights, "
                  "or use a float64 model");
}

/// for_chunks whose body adds the rows of each chunk into the accumulator `acc` of `size`
/// values of A (executor memory), then one pass over the accumulator checks that it is
/// finite. A check per chunk would cost as much as the chunk's products when the result is
/// large beside a chunk (unit, layer and full blocks), so the search for the culprit runs
/// only after a failure: the accumulator is zeroed and the chunks run again (their draws
/// depend only on the input index), checked one by one; the first non-finite chunk runs
/// again one row at a time into a scratch accumulator (`acc` points there meanwhile: the
/// body must read it through the reference) to name the input row whose contribution
/// overflowed, or else the rows whose sum did. Always an error after a failure (the rerun's
/// other side effects do not matter).
template <class X, class T, class A, class Body>
void find_overflow(X& x, i64 N, i64 chunk, A*& acc, i64 size, const char* what, Body&& body);

template <class X, class T, class A, class Body>
void for_chunks_summed(X& x, i64 N, i64 chunk, A*& acc, i64 size, const char* what, Body&& body) {
  for_chunks<X>(N, chunk, body);
  if (first_nonfinite(x, static_cast<const A*>(acc), size) < 0) return;
  find_overflow<X, T>(x, N, chunk, acc, size, what, body);
}

/// What a chunk of for_chunks_emitted is run for. `first`: the accumulator holds nothing yet
/// (it was not zeroed: the body overwrites what it sums into, BLAS beta = 0); `emit`: the
/// final chunk, after whose sums the body emits the result.
struct ChunkRole {
  bool first, emit;
};

/// for_chunks_summed for a result the body emits itself, each part as soon as its sums are
/// complete (while they are still in cache): body(s0, n, role) returns, when role.emit,
/// whether every value it emitted is finite (the return of other chunks is ignored). The
/// accumulator is neither zero-filled nor scanned: two passes fewer over a result that can
/// be far larger than a chunk. After a failure the accumulator is zeroed and the search of
/// for_chunks_summed runs the body with neither role.
template <class X, class T, class A, class Body>
void for_chunks_emitted(X& x, i64 N, i64 chunk, A*& acc, i64 size, const char* what, Body&& body) {
  bool finite = true;
  for_chunks<X>(N, chunk, [&](i64 s0, i64 n) {
    const bool emit = s0 + n == N;
    const bool ok = body(s0, n, ChunkRole{s0 == 0, emit});
    if (emit) finite = ok;
  });
  if (finite) return;
  find_overflow<X, T>(x, N, chunk, acc, size, what, [&](i64 s0, i64 n) { body(s0, n, ChunkRole{false, false}); });
}

/// The search after a non-finite sum (see for_chunks_summed). Always throws.
template <class X, class T, class A, class Body>
void find_overflow(X& x, i64 N, i64 chunk, A*& acc, i64 size, const char* what, Body&& body) {
  zero(x, acc, size);
  Buf<X, A> single(x);
  for_chunks<X>(N, chunk, [&](i64 s0, i64 n) {
    body(s0, n);
    if (first_nonfinite(x, static_cast<const A*>(acc), size) < 0) return;
    A* const total = acc;
    single.resize(size);
    acc = single.data();
    for (i64 r = s0; r < s0 + n; ++r) {
      zero(x, acc, size);
      body(r, 1);
      if (first_nonfinite(x, static_cast<const A*>(acc), size) >= 0) {
        acc = total;
        FISHERKIT_CHECK(false, what, " overflows ", type_name<T>(), " at input row ", r,
                        " (finite inputs and weights, but too large for this computation; rescale the inputs or "
                        "the weights", sizeof(T) == 4 ? ", or use a float64 model)" : ")");
      }
    }
    acc = total;
    FISHERKIT_CHECK(false, what, " overflows ", type_name<A>(), " summed over input rows ", s0, " to ", s0 + n - 1,
                    " (every row alone is finite); rescale the inputs or the weights");
  });
  FISHERKIT_CHECK(false, what, " overflows ", type_name<A>(), " summed over the ", N,
                  " input rows (every chunk alone is finite); rescale the inputs or the weights");
}

// ------------------------------------------------------------------ accumulation

/// acc[i / cols, i % cols] (leading dimension ld_acc) += t[i], i < rows * cols; only the
/// upper triangle (j >= i) when `upper`.
template <class X, class T, class A>
void add_into(X& x, A* acc, const T* t, i64 rows, i64 cols, i64 ld_acc, bool upper = false) {
  x.for_2d(rows, cols, [=] FISHERKIT_LAMBDA(i64 i, i64 j) {
    if (!upper || j >= i) acc[i * ld_acc + j] += A(t[i * cols + j]);
  });
}

/// acc (element type A, executor memory) += the rows x cols result of `call(dst, ld, beta)`
/// computed in T: straight into acc when A is T (beta = 1), else through the T scratch.
/// `upper`: only the upper triangle is meaningful (a SYRK), so only it is added. The
/// results of the Fisher passes accumulate in their own dtype (a float32 result has no
/// float64 shadow: each chunk's BLAS sums are added in float32).
template <class X, class T, class A, class Call>
void accumulate(X& x, A* acc, i64 rows, i64 cols, i64 ld_acc, Buf<X, T>& tmp, Call&& call, bool upper = false) {
  if constexpr (std::is_same_v<T, A>) {
    call(acc, ld_acc, T(1));
  } else {
    tmp.resize(rows * cols);
    call(tmp.data(), cols, T(0));
    add_into(x, acc, static_cast<const T*>(tmp.data()), rows, cols, ld_acc, upper);
  }
}

/// B (n x k) = abar^power, abar = (a, 1) the augmented input of a layer with a bias, a
/// without (k = ni + bias); power 1, 2 or 4.
template <class X, class T>
void augmented(X& x, const T* A, i64 lda, i64 n, i64 ni, bool bias, int power, Buf<X, T>& B) {
  const i64 k = ni + (bias ? 1 : 0);
  B.resize(n * k);
  T* bp = B.data();
  // one loop per power, with no branch inside: each vectorises
  if (power == 1)
    x.for_2d(n, ni, [=] FISHERKIT_LAMBDA(i64 s, i64 j) { bp[s * k + j] = A[s * lda + j]; });
  else if (power == 2)
    x.for_2d(n, ni, [=] FISHERKIT_LAMBDA(i64 s, i64 j) {
      const T v = A[s * lda + j];
      bp[s * k + j] = v * v;
    });
  else
    x.for_2d(n, ni, [=] FISHERKIT_LAMBDA(i64 s, i64 j) {
      const T v = A[s * lda + j] * A[s * lda + j];
      bp[s * k + j] = v * v;
    });
  if (bias) x.for_each(n, [=] FISHERKIT_LAMBDA(i64 s) { bp[s * k + ni] = T(1); });
}

/// One layer's diagonal-shaped sums: acc[u ni + j] += sum_s w[s,u] B[s,j] for j < ni, and
/// acc[no ni + u] += sum_s w[s,u] B[s,ni] for the bias column (when k > ni). w: n x no (row
/// stride ldw), B: n x k. Two GEMMs (the bias column is its own GEMM with one column).
template <class X, class T, class A>
void accumulate_diag(X& x, A* acc, const T* w, i64 ldw, i64 no, const T* B, i64 n, i64 ni, i64 k,
                     Buf<X, T>& tmp) {
  accumulate<X, T>(x, acc, no, ni, ni, tmp, [&](auto* dst, i64 ld, T beta) {
    x.gemm(true, false, no, ni, n, T(1), w, ldw, B, k, beta, dst, ld);
  });
  if (k > ni)
    accumulate<X, T>(x, acc + no * ni, no, 1, 1, tmp, [&](auto* dst, i64 ld, T beta) {
      x.gemm(true, false, no, 1, n, T(1), w, ldw, B + ni, k, beta, dst, ld);
    });
}

/// ones[0 .. n) = 1 (resized to n).
template <class X, class T>
void fill_ones(X& x, Buf<X, T>& ones, i64 n) {
  ones.resize(n);
  T* o = ones.data();
  x.for_each(n, [=] FISHERKIT_LAMBDA(i64 i) { o[i] = T(1); });
}

/// dst (cols, float64) += column sums of A (n x cols, leading dimension lda), by a GEMM
/// against a column of ones.
template <class X, class T>
void add_column_sums(X& x, double* dst, const T* A, i64 lda, i64 n, i64 cols, const T* ones, Buf<X, T>& tmp) {
  accumulate<X, T>(x, dst, cols, 1, 1, tmp, [&](auto* d, i64 ld, T beta) {
    x.gemm(true, false, cols, 1, n, T(1), A, lda, ones, 1, beta, d, ld);
  });
}

/// Zeroed accumulator of `size` values in executor memory (acc: a Buf of any element type).
template <class X, class B>
std::remove_pointer_t<decltype(std::declval<B&>().data())>* zeroed(X& x, B& acc, i64 size) {
  acc.resize(size);
  auto* p = acc.data();
  zero(x, p, size);
  return p;
}

/// dst[0 .. n) = src[0 .. n) (executor memory).
template <class X, class T>
void copy_values(X& x, T* dst, const T* src, i64 n) {
  x.for_each(n, [=] FISHERKIT_LAMBDA(i64 i) { dst[i] = src[i]; });
}

/// out[i] = T(acc[i] * scale), i < size.
template <class X, class T, class A>
void emit_scaled(X& x, const A* acc, double scale, VectorView<T> out, i64 size) {
  x.for_each(size, [=] FISHERKIT_LAMBDA(i64 i) { out[i] = T(acc[i] * scale); });
}

}  // namespace fisherkit::passes
