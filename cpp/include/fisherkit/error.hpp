// Errors thrown by fisherkit's C++ API. Messages name the argument and what was expected.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace fisherkit {

/// Invalid argument to a public function (wrong shape, value, name...). Python: ValueError.
class Error : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// A request that cannot be served by this build or machine (CUDA missing, too much
/// memory). Python: RuntimeError (MemoryError for the memory case).
class Unavailable : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A dense result larger than the memory budget. Python: MemoryError.
class TooLarge : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
template <class... Args>
[[noreturn]] void fail(Args&&... args) {
  std::ostringstream os;
  (os << ... << args);
  throw Error(os.str());
}
}  // namespace detail

}  // namespace fisherkit

/// Throw fisherkit::Error with the streamed message when `cond` is false.
#define FISHERKIT_CHECK(cond, ...)                  \
  do {                                              \
    if (!(cond)) ::fisherkit::detail::fail(__VA_ARGS__); \
  } while (0)
