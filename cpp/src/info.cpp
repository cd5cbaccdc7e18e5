// Build facts and the thread setting.
#include <cblas.h>

#include <atomic>
#include <string>

#include "fisherkit/mlp.hpp"
#include "parallel.hpp"

#ifndef FISHERKIT_VERSION
#define FISHERKIT_VERSION "unknown"
#endif

namespace fisherkit {

namespace {
std::atomic<int> g_threads{0};
}

namespace detail {
int loop_threads() {
  const int t = g_threads.load();
#if defined(FISHERKIT_HAS_OPENMP)
  return t > 0 ? t : omp_get_max_threads();
#else
  return t > 0 ? t : 1;
#endif
}
}  // namespace detail

void set_num_threads(int n) {
  FISHERKIT_CHECK(n >= 0, "argument 'n' must be >= 0 (0 restores the default), got ", n);
  g_threads.store(n);
#if defined(FISHERKIT_HAS_OPENMP)
  scipy_openblas_set_num_threads(n > 0 ? n : omp_get_max_threads());
#else
  scipy_openblas_set_num_threads(n > 0 ? n : 1);
#endif
}

int num_threads() { return detail::loop_threads(); }

std::string version() { return FISHERKIT_VERSION; }

std::string blas_name() {
  const char* cfg = scipy_openblas_get_config();
  return std::string("scipy-openblas32 (") + (cfg ? cfg : "?") + ", " +
         std::to_string(scipy_openblas_get_num_threads()) + " threads)";
}

bool openmp_enabled() {
#if defined(FISHERKIT_HAS_OPENMP)
  return true;
#else
  return false;
#endif
}

}  // namespace fisherkit
