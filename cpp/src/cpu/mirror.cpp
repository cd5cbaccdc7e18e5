// mirror_tile: 8 x 8 blocks transposed in registers by a network of two-source shuffles
// (log2 of the lanes rounds, each swapping the off-diagonal sub-blocks of every 2b x 2b
// block); a plain copy loop read each value from another cache line at a few cycles a value.
#include "mirror.hpp"

#include <cstring>
#include <initializer_list>

namespace fisherkit::cpu {
namespace {

using i64 = std::int64_t;

/// Scalar: the blocks on the diagonal and at the tile's edges, and every block of a strided a.
template <class T>
void mirror_scalar(T* a, i64 st, i64 m, i64 i0, i64 i1, i64 j0, i64 j1) {
  for (i64 j = j0; j < j1; ++j)
    for (i64 i = i0, e = i1 < j ? i1 : j; i < e; ++i) a[(j * m + i) * st] = a[(i * m + j) * st];
}

#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
#define FISHERKIT_SHUFFLE 1
typedef float f8 __attribute__((vector_size(32)));
typedef double d4 __attribute__((vector_size(32)));

template <class V>
V load(const void* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}
template <class V>
void store(void* p, V v) {
  std::memcpy(p, &v, sizeof(V));
}

/// dst[c ldd + r] = src[r lds + c], r, c < 8.
void transpose8(float* dst, i64 ldd, const float* src, i64 lds) {
  f8 r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = load<f8>(src + i * lds);
  for (int i = 0; i < 4; ++i) {
    t[i] = __builtin_shufflevector(r[i], r[i + 4], 0, 1, 2, 3, 8, 9, 10, 11);
    t[i + 4] = __builtin_shufflevector(r[i], r[i + 4], 4, 5, 6, 7, 12, 13, 14, 15);
  }
  for (int i : {0, 1, 4, 5}) {
    r[i] = __builtin_shufflevector(t[i], t[i + 2], 0, 1, 8, 9, 4, 5, 12, 13);
    r[i + 2] = __builtin_shufflevector(t[i], t[i + 2], 2, 3, 10, 11, 6, 7, 14, 15);
  }
  for (int i : {0, 2, 4, 6}) {
    t[i] = __builtin_shufflevector(r[i], r[i + 1], 0, 8, 2, 10, 4, 12, 6, 14);
    t[i + 1] = __builtin_shufflevector(r[i], r[i + 1], 1, 9, 3, 11, 5, 13, 7, 15);
  }
  for (int i = 0; i < 8; ++i) store(dst + i * ldd, t[i]);
}

/// dst[c ldd + r] = src[r lds + c], r, c < 4.
void transpose4(double* dst, i64 ldd, const double* src, i64 lds) {
  d4 r[4], t[4];
  for (int i = 0; i < 4; ++i) r[i] = load<d4>(src + i * lds);
  for (int i = 0; i < 2; ++i) {
    t[i] = __builtin_shufflevector(r[i], r[i + 2], 0, 1, 4, 5);
    t[i + 2] = __builtin_shufflevector(r[i], r[i + 2], 2, 3, 6, 7);
  }
  for (int i : {0, 2}) {
    r[i] = __builtin_shufflevector(t[i], t[i + 1], 0, 4, 2, 6);
    r[i + 1] = __builtin_shufflevector(t[i], t[i + 1], 1, 5, 3, 7);
  }
  for (int i = 0; i < 4; ++i) store(dst + i * ldd, r[i]);
}

void transpose8(double* dst, i64 ldd, const double* src, i64 lds) {
  for (int bi = 0; bi < 8; bi += 4)
    for (int bj = 0; bj < 8; bj += 4) transpose4(dst + bj * ldd + bi, ldd, src + bi * lds + bj, lds);
}
#endif

template <class T>
void mirror(T* a, i64 st, i64 m, i64 ib, i64 ie, i64 jb, i64 je) {
  for (i64 jj = jb; jj < je; jj += 8)
    for (i64 ii = ib; ii < ie && ii <= jj; ii += 8) {
      const i64 i1 = ii + 8 < ie ? ii + 8 : ie, j1 = jj + 8 < je ? jj + 8 : je;
#ifdef FISHERKIT_SHUFFLE
      if (st == 1 && ii < jj && i1 == ii + 8 && j1 == jj + 8) {  // a whole block below the diagonal
        transpose8(a + jj * m + ii, m, a + ii * m + jj, m);
        continue;
      }
#endif
      mirror_scalar(a, st, m, ii, i1, jj, j1);
    }
}

}  // namespace

void mirror_tile(float* a, i64 st, i64 m, i64 ib, i64 ie, i64 jb, i64 je) { mirror(a, st, m, ib, ie, jb, je); }
void mirror_tile(double* a, i64 st, i64 m, i64 ib, i64 ie, i64 jb, i64 je) { mirror(a, st, m, ib, ie, jb, je); }

}  // namespace fisherkit::cpu
