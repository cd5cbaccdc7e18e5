// The public operations (mlp.hpp, accumulate.hpp, variance.hpp, natgrad.hpp, heads.hpp,
// dpr2.hpp): each runs on the device its views live on, through the one table of
// passes/table.hpp.
#include "passes/table.hpp"

namespace fisherkit {

#define FISHERKIT_DISPATCH(T_, R, name, params, args, dev)                              \
  template <class T>                                                                    \
  R name FISHERKIT_WITH_STREAM params {                                                 \
    if ((dev) == Device::cuda) return name##_cuda<T>(FISHERKIT_UNPAREN args, stream);   \
    return name##_cpu<T>(FISHERKIT_UNPAREN args, stream);                               \
  }
#define FISHERKIT_PUBLIC_INSTANTIATE(T_, R, name, params, args, dev) \
  template R name<T_> FISHERKIT_WITH_STREAM params;

FISHERKIT_ALL_OPS(FISHERKIT_DISPATCH, T)
FISHERKIT_ALL_OPS(FISHERKIT_PUBLIC_INSTANTIATE, float)
FISHERKIT_ALL_OPS(FISHERKIT_PUBLIC_INSTANTIATE, double)

template <class T>
std::int64_t fisher_size(const Mlp<T>& mlp, Shape shape) {
  return mlp.layout().size(shape);
}
template std::int64_t fisher_size<float>(const Mlp<float>&, Shape);
template std::int64_t fisher_size<double>(const Mlp<double>&, Shape);

}  // namespace fisherkit
