// The lower half of a square tile from its upper half (private to the host executor).
#pragma once
#include <cstdint>

namespace fisherkit::cpu {

/// a[(j m + i) st] = a[(i m + j) st] for jb <= j < je, ib <= i < min(ie, j): the part of
/// rows [jb, je) below the diagonal and in columns [ib, ie), read from the upper triangle of
/// the row-major m x m matrix a with element stride st. ib and jb are multiples of 8; the
/// region is meant to be in cache (a tile of emit_symmetric).
void mirror_tile(float* a, std::int64_t st, std::int64_t m, std::int64_t ib, std::int64_t ie, std::int64_t jb,
                 std::int64_t je);
void mirror_tile(double* a, std::int64_t st, std::int64_t m, std::int64_t ib, std::int64_t ie, std::int64_t jb,
                 std::int64_t je);

}  // namespace fisherkit::cpu
