// The host executor of the passes (cpp/src/passes): buffers are std::vectors, loops run on
// OpenMP threads, GEMMs go to OpenBLAS. Its coarse primitives keep the CPU fast where a
// generic element loop would not: SYRK where a result is symmetric, the sign-split weighted
// Gram of the unit blocks, vectorised activation rows (libmvec), and symmetric blocks
// emitted in cache-sized tiles. The CUDA executor (cuda/exec.cuh) has the same members.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <new>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../blas.hpp"
#include "../parallel.hpp"
#include "../simd.hpp"
#include "fisherkit/detail/math.hpp"
#include "fisherkit/error.hpp"
#include "fisherkit/monitor.hpp"
#include "fisherkit/view.hpp"
#include "mirror.hpp"
#include "stream.hpp"
#include "workspace_cache.hpp"

namespace fisherkit::cpu {

/// An allocator whose resize leaves new values uninitialised (workspaces are written before
/// they are read): a value-initialising resize would zero every workspace on every call.
/// Large blocks come from, and go back to, the per-thread WorkspaceCache.
template <class T>
struct UninitAllocator : std::allocator<T> {
  template <class U>
  struct rebind {
    using other = UninitAllocator<U>;
  };
  UninitAllocator() = default;
  template <class U>
  UninitAllocator(const UninitAllocator<U>&) noexcept {}
  template <class U>
  void construct(U* p) noexcept(std::is_nothrow_default_constructible_v<U>) {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... A>
  void construct(U* p, A&&... a) {
    ::new (static_cast<void*>(p)) U(std::forward<A>(a)...);
  }
  T* allocate(std::size_t n) {
    if (n > SIZE_MAX / sizeof(T)) throw std::bad_alloc();
    if (n * sizeof(T) < WorkspaceCache::kMinBytes) return std::allocator<T>::allocate(n);
    return static_cast<T*>(WorkspaceCache::take(n * sizeof(T)));
  }
  void deallocate(T* p, std::size_t n) noexcept {
    if (n * sizeof(T) < WorkspaceCache::kMinBytes) return std::allocator<T>::deallocate(p, n);
    WorkspaceCache::give(p);
  }
};

class HostExec {
  template <class T>
  using Scratch = std::vector<T, UninitAllocator<T>>;

 public:
  static constexpr Device device = Device::host;
  /// Per-chunk workspace budget (bytes) and the largest chunk (inputs): chunks stay in the
  /// last-level cache's neighbourhood while BLAS still sees tall enough matrices.
  static constexpr std::int64_t chunk_budget = std::int64_t(32) << 20;
  static constexpr std::int64_t chunk_cap = 4096;
  /// Bytes of result blocks emitted right after their sums, while still in cache (unit
  /// blocks are computed and emitted in groups of about this size).
  static constexpr std::int64_t emit_group_bytes = std::int64_t(4) << 20;

  /// Growable workspace; resize never shrinks and does not keep values.
  template <class T>
  class Buf {
   public:
    explicit Buf(HostExec&) {}
    Buf(Buf&&) noexcept = default;
    Buf& operator=(Buf&&) noexcept = default;
    Buf(const Buf&) = delete;
    void resize(std::int64_t n) {
      if (static_cast<size_t>(n) <= v_.size()) return;
      try {
        v_.resize(static_cast<size_t>(n));
      } catch (const std::bad_alloc&) {  // name the bytes: a bare std::bad_alloc helps nobody
        throw TooLarge("could not allocate " + std::to_string(double(n) * double(sizeof(T)) / double(1 << 20)) +
                       " MiB of workspace (" + std::to_string(n) + " values of " + std::to_string(sizeof(T)) +
                       " bytes); pass a smaller chunk, fewer samples or a smaller shape");
      }
    }
    T* data() { return v_.data(); }
    const T* data() const { return v_.data(); }
    void swap(Buf& o) noexcept { v_.swap(o.v_); }

   private:
    std::vector<T, UninitAllocator<T>> v_;
  };

  /// Called by the passes after the layout checks, before any work.
  void start() const {}
  void check_device_of(const void*, const char*) const {}

  /// f(i) for i in [0, n).
  template <class F>
  void for_each(std::int64_t n, F f) {
    if (n > 0) detail::parallel_for(n, 16, f);
  }

  /// f(r, j) for r in [0, rows), j in [0, cols): rows over threads, each row's inner loop
  /// contiguous (vectorisable).
  template <class F>
  void for_2d(std::int64_t rows, std::int64_t cols, F f) {
    if (rows <= 0 || cols <= 0) return;
    detail::parallel_for(rows, cols, [&](std::int64_t r) {
      for (std::int64_t j = 0; j < cols; ++j) f(r, j);
    });
  }

  /// store(r, j, sum_t term(r, t, j)) for r in [0, rows), j in [0, cols), t in [0, terms):
  /// per row the sums run over blocks of j outside, t in the middle and the block's j inside,
  /// so the j loop vectorises even when term(r, t, j) reads with a stride in t, and a block's
  /// sums (a local array of constant size) stay in registers across the t loop.
  template <class Term, class Store>
  void for_2d_sum(std::int64_t rows, std::int64_t cols, std::int64_t terms, Term term, Store store) {
    if (rows <= 0 || cols <= 0) return;
    using V = std::decay_t<decltype(term(std::int64_t(0), std::int64_t(0), std::int64_t(0)))>;
    constexpr std::int64_t JB = 256 / std::int64_t(sizeof(V));  // four 512-bit registers
    // the sums of units [j0, j0 + len): len is JB as a constant (whole blocks, whose sums
    // stay in registers) or the remainder
    auto block = [&](std::int64_t r, std::int64_t j0, auto len) {
      V a[JB];
      for (std::int64_t j = 0; j < len; ++j) a[j] = V(0);
      for (std::int64_t t = 0; t < terms; ++t)
        for (std::int64_t j = 0; j < len; ++j) a[j] += term(r, t, j0 + j);
      for (std::int64_t j = 0; j < len; ++j) store(r, j0 + j, a[j]);
    };
    detail::parallel_for(rows, cols * (terms > 0 ? terms : 1), [&](std::int64_t r) {
      std::int64_t j0 = 0;
      for (; j0 + JB <= cols; j0 += JB) block(r, j0, std::integral_constant<std::int64_t, JB>{});
      if (j0 < cols) block(r, j0, cols - j0);
    });
  }

  /// Rows of parameter-gradient form: for each backward row r (of sample s = r / M), the
  /// layer's block D[r] (x) abar_s at base + s ld + (r % M) mstride (weights u ni + j, then
  /// the biases when `bias`). With `stream` (a result the caller reads later, such as
  /// per-sample gradients) the weight rows go out by non-temporal stores.
  template <class T>
  void outer_rows(T* base, std::int64_t ld, std::int64_t M, std::int64_t mstride, const T* D, std::int64_t rows,
                  std::int64_t no, const T* A, std::int64_t lda, std::int64_t ni, bool bias, bool stream) {
    if (rows <= 0 || no <= 0) return;
    detail::parallel_for(rows, no * (ni + 1), [&](std::int64_t r) {
      const std::int64_t s = r / M;
      T* row = base + s * ld + (r % M) * mstride;
      const T* a = A + s * lda;
      const T* d = D + r * no;
      for (std::int64_t u = 0; u < no; ++u) scaled_row(row + u * ni, d[u], a, ni, stream);
      if (bias)
        for (std::int64_t u = 0; u < no; ++u) row[no * ni + u] = d[u];
    });
    if (stream) store_fence();
  }

  /// Whether passes that stream rows of T out compute the next chunk's first-layer products
  /// inside the store loop (outer_rows_next). Measured on one AMD EPYC core with OpenBLAS,
  /// per-sample gradients of 784-128-10 into `out`: 5% less time in float64; 3% more in
  /// float32, where the fused multiply-adds cost more beside the stores than SGEMM alone.
  template <class T>
  static constexpr bool fuses_products = sizeof(T) == 8;

  /// Z (n2 x no, n2 <= rows) = B W^T for B (n2 x ni, leading dimension ldb) and W (no x ni,
  /// ldw), the next chunk's products with the weights of the layer whose rows go out here by
  /// outer_rows(base, ld, 1, 0, D, rows, no, A, lda, ni, bias, true). Row r of the stores
  /// carries row r of the product, so its multiply-adds run beneath the streaming stores that
  /// bound the loop.
  template <class T>
  void outer_rows_next(T* base, std::int64_t ld, const T* D, std::int64_t rows, std::int64_t no, const T* A,
                       std::int64_t lda, std::int64_t ni, bool bias, const T* B, std::int64_t ldb, const T* W,
                       std::int64_t ldw, T* Z, std::int64_t n2) {
    if (rows <= 0 || no <= 0) return;
    detail::parallel_for(rows, no * (ni + 1), [&](std::int64_t r) {
      T* row = base + r * ld;
      const T* a = A + r * lda;
      const T* d = D + r * no;
      if (r < n2) {
        const T* b = B + r * ldb;
        for (std::int64_t u = 0; u < no; ++u)
          Z[r * no + u] = scaled_row_dot(row + u * ni, d[u], a, ni, b, W + u * ldw);
      } else {
        for (std::int64_t u = 0; u < no; ++u) scaled_row(row + u * ni, d[u], a, ni, true);
      }
      if (bias)
        for (std::int64_t u = 0; u < no; ++u) row[no * ni + u] = d[u];
    });
    store_fence();
  }

  /// The smallest i in [0, n) with pred(i), or -1. Blocks of 256 are tested branch-free (a
  /// loop the compiler vectorises; an early exit per element kept the finiteness scans of a
  /// result scalar, a cycle per value), and only a block that holds a match is searched.
  template <class P>
  std::int64_t first_if(std::int64_t n, P pred) {
    constexpr std::int64_t B = 256;
    for (std::int64_t b = 0; b < n; b += B) {
      const std::int64_t e = b + B < n ? b + B : n;
      unsigned any = 0;  // not bool: GCC does not vectorise an OR of bools
      for (std::int64_t i = b; i < e; ++i) any |= unsigned(pred(i));
      if (!any) continue;
      for (std::int64_t i = b; i < e; ++i)
        if (pred(i)) return i;
    }
    return -1;
  }

  /// Row-major C = alpha op(A) op(B) + beta C.
  template <class T>
  void gemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const T* A, std::int64_t lda,
            const T* B, std::int64_t ldb, T beta, T* C, std::int64_t ldc) {
    blas::gemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
  }

  /// `batch` GEMMs, the i-th on A + i sA, B + i sB, C + i sC (a stride may be 0).
  template <class T>
  void gemm_batched(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const T* A,
                    std::int64_t lda, std::int64_t sA, const T* B, std::int64_t ldb, std::int64_t sB, T beta, T* C,
                    std::int64_t ldc, std::int64_t sC, std::int64_t batch) {
    for (std::int64_t i = 0; i < batch; ++i)
      blas::gemm(ta, tb, m, n, k, alpha, A + i * sA, lda, B + i * sB, ldb, beta, C + i * sC, ldc);
  }

  /// Upper triangle of C (n x n) = alpha A^T A + beta C, A: k x n (the Gram of k rows).
  template <class T>
  void syrk(std::int64_t n, std::int64_t k, T alpha, const T* A, std::int64_t lda, T beta, T* C, std::int64_t ldc) {
    blas::syrk_rows(n, k, alpha, A, lda, beta, C, ldc);
  }

  /// z (n x no) += bias (stride bs; none when null), then a = phi(z), d1 = phi'(z),
  /// d2 = phi''(z) (each skipped when null; a null: the output layer, z only).
  template <class T>
  void bias_activation(Activation act, T* z, const T* bias, std::int64_t bs, T* a, T* d1, T* d2, std::int64_t n,
                       std::int64_t no) {
    detail::parallel_for(n, no * 8, [&](std::int64_t s) {
      T* zr = z + s * no;
      if (bias)
        for (std::int64_t u = 0; u < no; ++u) zr[u] += bias[u * bs];
      if (a) detail::activation_bulk(act, zr, a + s * no, d1 ? d1 + s * no : nullptr, d2 ? d2 + s * no : nullptr, no);
    });
  }

  /// Unit blocks: acc + u k^2 (k x k, upper triangle, element type A) += sum_s w[s, u] B_s B_s^T
  /// for every unit u < no (w: n x no with row stride ldw; B: n x k); with `overwrite`, =
  /// instead of += (acc is not read). Narrow blocks of many units (k <= kPackedWidth, no >=
  /// kPackedUnits) are one GEMM per layer, w^T Q with Q the packed upper triangles of
  /// B_s B_s^T: a SYRK this narrow runs at a fifth to a third of the GEMM rate. Otherwise rows
  /// are split by the sign of w and each part is a SYRK of sqrt|w_s| B_s, so signed weights
  /// cost one SYRK per unit.
  template <class T, class A>
  void unit_gram(A* acc, const T* w, std::int64_t ldw, std::int64_t no, const T* B, std::int64_t n,
                 std::int64_t k, bool overwrite = false) {
    if (k <= kPackedWidth && no >= kPackedUnits) return packed_unit_gram(acc, w, ldw, no, B, n, k, overwrite);
    auto& pos = scratch<T>(0), &neg = scratch<T>(1), &tmp = scratch<T>(2);
    pos.resize(static_cast<size_t>(n * k));
    neg.resize(static_cast<size_t>(n * k));
    for (std::int64_t u = 0; u < no; ++u) {
      A* blk = acc + u * k * k;
      std::int64_t np = 0, nn = 0;
      for (std::int64_t s = 0; s < n; ++s) {
        const T ws = w[s * ldw + u];
        if (ws == T(0)) continue;
        const T sw = std::sqrt(ws > T(0) ? ws : -ws);
        T* dst = ws > T(0) ? pos.data() + (np++) * k : neg.data() + (nn++) * k;
        for (std::int64_t j = 0; j < k; ++j) dst[j] = sw * B[s * k + j];
      }
      bool set = !overwrite;  // blk holds a sum to add to
      if (np > 0) syrk_into(blk, k, np, T(1), pos.data(), tmp, set), set = true;
      if (nn > 0) syrk_into(blk, k, nn, T(-1), neg.data(), tmp, set), set = true;
      if (!set)
        for (std::int64_t i = 0; i < k; ++i) std::fill(blk + i * k + i, blk + (i + 1) * k, A(0));
      detail::poll();  // a chunk of wide units takes seconds: Ctrl-C is checked per unit
    }
  }

  /// out[off + b m^2 + i m + j] = scale * acc[off + b m^2 + min(i,j) m + max(i,j)] for `count`
  /// blocks of m x m: symmetric blocks mirrored from their upper triangles, converted to T,
  /// in 64 x 64 tiles (a plain column-order mirror of a block larger than the cache was as
  /// slow as the SYRKs that filled it). acc may be out's own storage (A = T, unit stride).
  /// Returns whether every emitted value is finite (checked on the way: no second pass).
  template <class T, class A>
  bool emit_symmetric(const A* acc, double scale, VectorView<T> out, std::int64_t off, std::int64_t m,
                      std::int64_t count) {
    return out.stride == 1 ? emit_symmetric_tiles<1>(acc, scale, out.data, 1, off, m, count)
                           : emit_symmetric_tiles<0>(acc, scale, out.data, out.stride, off, m, count);
  }

  /// Copy n values of executor memory to the host.
  template <class T>
  void to_host(T* dst, const T* src, std::int64_t n) {
    for (std::int64_t i = 0; i < n; ++i) dst[i] = src[i];
  }

 private:
  static constexpr std::int64_t kPackedWidth = 128, kPackedUnits = 8;

  /// emit_symmetric, with out's stride a constant 1 (Unit) or st. Per tile, the upper part
  /// is scaled row by row (contiguous loops that vectorise, with the finiteness test), then
  /// its lower part mirrored while the tile is in L1 (mirror_tile: 8 x 8 blocks transposed
  /// in registers). One scalar loop storing both halves took 15% of the float32 unit
  /// blocks of 784-128-10.
  template <int Unit, class T, class A>
  static bool emit_symmetric_tiles(const A* acc, double scale, T* out, std::int64_t st, std::int64_t off,
                                   std::int64_t m, std::int64_t count) {
    constexpr std::int64_t TB = 64;
    const std::int64_t s = Unit ? 1 : st;
    unsigned bad = 0;  // not bool: GCC does not vectorise an OR of bools
    for (std::int64_t b = 0; b < count; ++b) {
      const std::int64_t o = off + b * m * m;
      for (std::int64_t ib = 0; ib < m; ib += TB)
        for (std::int64_t jb = ib; jb < m; jb += TB) {
          const std::int64_t ie = ib + TB < m ? ib + TB : m, je = jb + TB < m ? jb + TB : m;
          for (std::int64_t i = ib; i < ie; ++i) {
            const A* src = acc + o + i * m;
            T* dst = out + (o + i * m) * s;
            for (std::int64_t j = (jb > i ? jb : i); j < je; ++j) {
              const T v = T(src[j] * scale);
              bad |= unsigned(!detail::fk_isfinite(v));
              dst[j * s] = v;
            }
          }
          mirror_tile(out + o * s, s, m, ib, ie, jb, je);
        }
    }
    return !bad;
  }

  /// unit_gram's narrow case: G (units x k(k+1)/2) = sum over row blocks of w_b^T Q_b, Q_b[s]
  /// the packed upper triangle of B_s B_s^T (row blocks of about 2 MiB of Q, in cache), then
  /// G's rows scattered into the units' upper triangles. Units go in groups whose G fits in
  /// 8 MiB (each group packs Q again), so the scratch stays small beside the result.
  template <class T, class A>
  void packed_unit_gram(A* acc, const T* w, std::int64_t ldw, std::int64_t no, const T* B, std::int64_t n,
                        std::int64_t k, bool overwrite) {
    const std::int64_t kp = k * (k + 1) / 2, bytes = kp * std::int64_t(sizeof(T));
    const std::int64_t rows = std::max<std::int64_t>(64, std::min<std::int64_t>(512, (std::int64_t(2) << 20) / bytes));
    const std::int64_t group = std::max<std::int64_t>(1, std::min(no, (std::int64_t(8) << 20) / bytes));
    auto& Q = scratch<T>(0), &G = scratch<T>(1);
    Q.resize(static_cast<size_t>(std::min(rows, n) * kp));
    G.resize(static_cast<size_t>(group * kp));
    for (std::int64_t u0 = 0; u0 < no; u0 += group) {
      const std::int64_t nu = std::min(group, no - u0);
      if (n == 0) std::fill(G.begin(), G.begin() + nu * kp, T(0));
      for (std::int64_t s0 = 0; s0 < n; s0 += rows) {
        const std::int64_t nb = std::min(rows, n - s0);
        for (std::int64_t s = 0; s < nb; ++s) {
          const T* b = B + (s0 + s) * k;
          T* q = Q.data() + s * kp;
          for (std::int64_t i = 0; i < k; ++i) {
            const T bi = b[i];
            for (std::int64_t j = i; j < k; ++j) q[j - i] = bi * b[j];
            q += k - i;
          }
        }
        blas::gemm(true, false, nu, kp, nb, T(1), w + s0 * ldw + u0, ldw, Q.data(), kp, s0 == 0 ? T(0) : T(1),
                   G.data(), kp);
        detail::poll();
      }
      for (std::int64_t u = 0; u < nu; ++u) {
        A* blk = acc + (u0 + u) * k * k;
        const T* g = G.data() + u * kp;
        for (std::int64_t i = 0; i < k; ++i) {
          A* row = blk + i * k;
          for (std::int64_t j = i; j < k; ++j, ++g) row[j] = (overwrite ? A(0) : row[j]) + A(*g);
        }
      }
    }
  }

  /// The upper triangle of blk (k x k, element type Acc) += alpha * the Gram of `rows` rows of
  /// M (in T), or = without `add`: in place when Acc is T.
  template <class T, class Acc>
  void syrk_into(Acc* blk, std::int64_t k, std::int64_t rows, T alpha, const T* M, Scratch<T>& tmp, bool add) {
    if constexpr (std::is_same_v<T, Acc>) {
      blas::syrk_rows(k, rows, alpha, M, k, add ? T(1) : T(0), blk, k);
    } else {
      tmp.resize(static_cast<size_t>(k * k));
      blas::syrk_rows(k, rows, alpha, M, k, T(0), tmp.data(), k);
      for (std::int64_t i = 0; i < k; ++i)
        for (std::int64_t j = i; j < k; ++j) blk[i * k + j] = (add ? blk[i * k + j] : Acc(0)) + Acc(tmp[i * k + j]);
    }
  }

  template <class T>
  Scratch<T>& scratch(int i) {
    if constexpr (std::is_same_v<T, double>) return scratch_d_[i];
    else return scratch_f_[i];
  }
  Scratch<double> scratch_d_[3];
  Scratch<float> scratch_f_[3];
};

}  // namespace fisherkit::cpu
