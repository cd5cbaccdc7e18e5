// The CPU backend: every pass of the table (passes/table.hpp) run by the host executor.
#include "../passes/table.hpp"
#include "../passes/fisher.hpp"
#include "../passes/heads.hpp"
#include "../passes/kfac.hpp"
#include "../passes/mlp.hpp"
#include "../passes/natgrad.hpp"
#include "../passes/variance.hpp"
#include "host_exec.hpp"

namespace fisherkit {

#define FISHERKIT_CPU_PASS(T_, R, name, params, args, dev) \
  FISHERKIT_DEFINE_PASS(T_, R, name, params, args, dev, _cpu, cpu::HostExec x)
#define FISHERKIT_CPU_INSTANTIATE(T_, R, name, params, args, dev) \
  FISHERKIT_INSTANTIATE(T_, R, name, params, args, dev, _cpu)

FISHERKIT_PASS_OPS(FISHERKIT_CPU_PASS, T)
FISHERKIT_PASS_OPS(FISHERKIT_CPU_INSTANTIATE, float)
FISHERKIT_PASS_OPS(FISHERKIT_CPU_INSTANTIATE, double)

template <class T>
std::int64_t fisher_workspace_bytes(const Mlp<T>& mlp, const FisherOptions& opt, std::int64_t N) {
  const std::int64_t per = passes::fisher_per_sample(mlp, opt) * static_cast<std::int64_t>(sizeof(T));
  const std::int64_t chunk = passes::chunk_size<cpu::HostExec>(opt.chunk, N, per, opt.shape == Shape::unit ? 4 : 1);
  return chunk * per;  // the result accumulates in place in a contiguous `out`
}

template <class T>
std::int64_t fisher_result_size(const Mlp<T>& mlp, const FisherOptions& opt) {
  return passes::fisher_result_size_of(mlp, opt);
}
template std::int64_t fisher_result_size<float>(const Mlp<float>&, const FisherOptions&);
template std::int64_t fisher_result_size<double>(const Mlp<double>&, const FisherOptions&);

template std::int64_t fisher_workspace_bytes<float>(const Mlp<float>&, const FisherOptions&, std::int64_t);
template std::int64_t fisher_workspace_bytes<double>(const Mlp<double>&, const FisherOptions&, std::int64_t);

}  // namespace fisherkit
