// The calling thread's Monitor (monitor.hpp).
#include "fisherkit/monitor.hpp"

namespace fisherkit {

namespace {
struct State {
  Monitor* monitor = nullptr;
  std::int64_t done = 0, total = 0;
};
thread_local State g_state;
}  // namespace

MonitorScope::MonitorScope(Monitor* monitor) : previous_(g_state.monitor) {
  g_state.monitor = monitor;
  g_state.done = g_state.total = 0;
}

MonitorScope::~MonitorScope() { g_state.monitor = previous_; }

namespace detail {

void checkpoint(std::int64_t done, std::int64_t total) {
  g_state.done = done;
  g_state.total = total;
  if (g_state.monitor && !g_state.monitor->progress(done, total))
    throw Interrupted("the computation was interrupted");
}

void poll() { checkpoint(g_state.done, g_state.total); }

}  // namespace detail
}  // namespace fisherkit
