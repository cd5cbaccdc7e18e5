// Compiled instead of cuda/*.cu when FISHERKIT_ENABLE_CUDA is off: every GPU backend entry
// of the table (passes/table.hpp) throws a clear error; no signature is written twice.
#include "passes/table.hpp"

namespace fisherkit {

bool cuda_compiled() { return false; }
int cuda_device_count() { return 0; }
std::string cublas_library() { return ""; }

namespace {
[[noreturn]] void no_cuda() { throw Unavailable("fisherkit was built without CUDA: pass host (NumPy) arrays"); }
}  // namespace

// The stubs take every parameter of the real entry points and use none.
#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wunused-parameter"
#endif

#define FISHERKIT_CUDA_STUB(T_, R, name, params, args, dev) \
  template <class T>                                        \
  R name##_cuda FISHERKIT_WITH_STREAM params {              \
    (void)stream;                                           \
    no_cuda();                                              \
  }
#define FISHERKIT_CUDA_STUB_INSTANTIATE(T_, R, name, params, args, dev) \
  FISHERKIT_INSTANTIATE(T_, R, name, params, args, dev, _cuda)

FISHERKIT_ALL_OPS(FISHERKIT_CUDA_STUB, T)
FISHERKIT_ALL_OPS(FISHERKIT_CUDA_STUB_INSTANTIATE, float)
FISHERKIT_ALL_OPS(FISHERKIT_CUDA_STUB_INSTANTIATE, double)

}  // namespace fisherkit
