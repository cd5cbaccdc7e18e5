// Progress reports and cancellation of long calls. Every pass checks in between chunks of
// inputs (and inside long chunks); a Monitor installed on the calling thread is told the
// progress and may stop the call, which then throws Interrupted. Python installs one that
// checks for Ctrl-C and drives the `progress` option; C++ callers may install their own.
#pragma once
#include <cstdint>
#include <stdexcept>

namespace fisherkit {

/// Receives the progress of the calls made on the thread where it is installed.
class Monitor {
 public:
  virtual ~Monitor() = default;
  /// Called between chunks (done of total inputs; the same values again inside a long
  /// chunk). Return false to stop the call: it throws Interrupted.
  virtual bool progress(std::int64_t done, std::int64_t total) = 0;
};

/// Thrown by a call that its Monitor stopped. Workspace is released; outputs are undefined.
class Interrupted : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Installs `monitor` (may be nullptr) for the calling thread while the scope lives; the
/// previous one is restored on exit.
class MonitorScope {
 public:
  explicit MonitorScope(Monitor* monitor);
  ~MonitorScope();
  MonitorScope(const MonitorScope&) = delete;
  MonitorScope& operator=(const MonitorScope&) = delete;

 private:
  Monitor* previous_;
};

namespace detail {
/// Report progress to the current thread's monitor; throws Interrupted when it says stop.
void checkpoint(std::int64_t done, std::int64_t total);
/// The same with the last reported progress (inside a long chunk).
void poll();
}  // namespace detail

}  // namespace fisherkit
