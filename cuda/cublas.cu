// The run-time cuBLAS loader and the row-major GEMM wrappers (cublas.cuh).
#include <dlfcn.h>

#include <climits>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>

#include "common.cuh"
#include "cublas.cuh"

namespace fisherkit::cuda::detail {
namespace {

// The C ABI of the entry points used (cublas_api.h): handles are opaque pointers, enums
// are ints (CUBLAS_OP_N = 0, CUBLAS_OP_T = 1; CUBLAS_STATUS_SUCCESS = 0).
using Handle = void*;
using Status = int;
constexpr int kOpN = 0, kOpT = 1;

const char* status_name(Status st) {
  switch (st) {
    case 1: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case 3: return "CUBLAS_STATUS_ALLOC_FAILED";
    case 7: return "CUBLAS_STATUS_INVALID_VALUE";
    case 8: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case 11: return "CUBLAS_STATUS_MAPPING_ERROR";
    case 13: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case 14: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case 15: return "CUBLAS_STATUS_NOT_SUPPORTED";
  }
  return "cuBLAS status (unknown)";
}

using CreateFn = Status (*)(Handle*);
using SetStreamFn = Status (*)(Handle, cudaStream_t);
using SgemmFn = Status (*)(Handle, int, int, int, int, int, const float*, const float*, int,
                           long long, const float*, int, long long, const float*, float*, int,
                           long long, int);
using DgemmFn = Status (*)(Handle, int, int, int, int, int, const double*, const double*, int,
                           long long, const double*, int, long long, const double*, double*, int,
                           long long, int);

struct Api {
  void* lib = nullptr;
  std::string path;
  CreateFn create = nullptr;
  SetStreamFn set_stream = nullptr;
  SgemmFn sgemm = nullptr;
  DgemmFn dgemm = nullptr;
};

std::mutex g_mutex;
Api g_api;
bool g_tried = false;

const Api& api() {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!g_tried) {
    g_tried = true;
    std::string tried;
    const char* env = std::getenv("FISHERKIT_CUBLAS");
    // the cuBLAS of the CUDA major version fisherkit was built with first
    const bool built_12 = CUDART_VERSION / 1000 == 12;
    const char* names[] = {env, built_12 ? "libcublas.so.12" : "libcublas.so.13",
                           built_12 ? "libcublas.so.13" : "libcublas.so.12", "libcublas.so"};
    for (const char* name : names) {
      if (!name || !*name) continue;
      void* h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
      if (!h) {
        tried += std::string("\n  ") + name + ": " + dlerror();
        continue;
      }
      Api a;
      a.lib = h;
      a.path = name;
      a.create = reinterpret_cast<CreateFn>(dlsym(h, "cublasCreate_v2"));
      a.set_stream = reinterpret_cast<SetStreamFn>(dlsym(h, "cublasSetStream_v2"));
      a.sgemm = reinterpret_cast<SgemmFn>(dlsym(h, "cublasSgemmStridedBatched"));
      a.dgemm = reinterpret_cast<DgemmFn>(dlsym(h, "cublasDgemmStridedBatched"));
      if (a.create && a.set_stream && a.sgemm && a.dgemm) {
        g_api = a;
        break;
      }
      tried += std::string("\n  ") + name + ": missing cuBLAS entry points";
      dlclose(h);
    }
    if (!g_api.lib) g_api.path = "not found:" + tried;
  }
  if (!g_api.lib)
    throw Unavailable("cuBLAS could not be loaded (fisherkit's GPU path needs it for its GEMMs). "
                      "Install it with `pip install fisherkit[cuda12]` (or [cuda13]), which pulls "
                      "CuPy with the nvidia-cublas wheel, or set FISHERKIT_CUBLAS to the path of "
                      "libcublas.so. Tried: " + g_api.path);
  return g_api;
}

/// One handle per (thread, device), created on first use.
Handle handle_for(cudaStream_t stream) {
  const Api& a = api();
  int dev = 0;
  check_cuda(cudaGetDevice(&dev), "cudaGetDevice");
  thread_local std::map<int, Handle> handles;
  auto it = handles.find(dev);
  if (it == handles.end()) {
    Handle h = nullptr;
    const Status st = a.create(&h);
    if (st != 0) throw Unavailable(std::string("cublasCreate failed: ") + status_name(st));
    it = handles.emplace(dev, h).first;
  }
  const Status st = a.set_stream(it->second, stream);
  if (st != 0) throw Unavailable(std::string("cublasSetStream failed: ") + status_name(st));
  return it->second;
}

int to_int(std::int64_t v, const char* what) {
  if (v < 0 || v > INT_MAX) throw Error(std::string("cuBLAS dimension '") + what + "' out of 32-bit range");
  return static_cast<int>(v);
}

// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands.
template <class T, class Fn>
void gemm_impl(Fn fn, cudaStream_t stream, bool ta, bool tb, std::int64_t m, std::int64_t n,
               std::int64_t k, T alpha, const T* A, std::int64_t lda, std::int64_t sA, const T* B,
               std::int64_t ldb, std::int64_t sB, T beta, T* C, std::int64_t ldc, std::int64_t sC,
               std::int64_t batch) {
  if (m == 0 || n == 0 || batch == 0) return;
  if (k == 0) {
    // cuBLAS leaves C = beta C with k = 0 only in recent versions; do not depend on it
    FISHERKIT_CHECK(beta == T(1), "internal: GEMM with k = 0 and beta != 1");
    return;
  }
  Handle h = handle_for(stream);
  const Status st = fn(h, tb ? kOpT : kOpN, ta ? kOpT : kOpN, to_int(n, "n"), to_int(m, "m"),
                       to_int(k, "k"), &alpha, B, to_int(ldb, "ldb"), sB, A, to_int(lda, "lda"), sA,
                       &beta, C, to_int(ldc, "ldc"), sC, to_int(batch, "batch"));
  if (st != 0)
    throw Unavailable(std::string("cuBLAS GEMM failed: ") + status_name(st) + " (m=" + std::to_string(m) +
                      ", n=" + std::to_string(n) + ", k=" + std::to_string(k) + ", lda=" + std::to_string(lda) +
                      ", ldb=" + std::to_string(ldb) + ", ldc=" + std::to_string(ldc) + ", batch=" +
                      std::to_string(batch) + ")");
}

}  // namespace

void cublas_gemm(cudaStream_t stream, bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k,
                 float alpha, const float* A, std::int64_t lda, std::int64_t sA, const float* B,
                 std::int64_t ldb, std::int64_t sB, float beta, float* C, std::int64_t ldc,
                 std::int64_t sC, std::int64_t batch) {
  gemm_impl(api().sgemm, stream, ta, tb, m, n, k, alpha, A, lda, sA, B, ldb, sB, beta, C, ldc, sC, batch);
}
void cublas_gemm(cudaStream_t stream, bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k,
                 double alpha, const double* A, std::int64_t lda, std::int64_t sA, const double* B,
                 std::int64_t ldb, std::int64_t sB, double beta, double* C, std::int64_t ldc,
                 std::int64_t sC, std::int64_t batch) {
  gemm_impl(api().dgemm, stream, ta, tb, m, n, k, alpha, A, lda, sA, B, ldb, sB, beta, C, ldc, sC, batch);
}

const char* cublas_library() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_api.lib ? g_api.path.c_str() : "";
}

}  // namespace fisherkit::cuda::detail

namespace fisherkit {
std::string cublas_library() { return cuda::detail::cublas_library(); }
}  // namespace fisherkit
