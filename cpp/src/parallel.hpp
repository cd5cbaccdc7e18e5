// OpenMP helpers: one place that decides how many threads a loop gets.
#pragma once
#include <cstdint>

#if defined(FISHERKIT_HAS_OPENMP)
#include <omp.h>
#endif

namespace fisherkit::detail {

int loop_threads();

/// Run f(i) for i in [0, n), in parallel when the work is large enough to pay for it.
template <class F>
void parallel_for(std::int64_t n, std::int64_t work_per_item, F&& f) {
#if defined(FISHERKIT_HAS_OPENMP)
  const int nt = loop_threads();
  if (nt > 1 && n > 1 && n * work_per_item > 32768) {
#pragma omp parallel for num_threads(nt) schedule(static)
    for (std::int64_t i = 0; i < n; ++i) f(i);
    return;
  }
#endif
  (void)work_per_item;
  for (std::int64_t i = 0; i < n; ++i) f(i);
}

}  // namespace fisherkit::detail
