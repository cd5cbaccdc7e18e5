// Helpers shared by the C++ unit tests.
#pragma once
#include <doctest/doctest.h>

#include <string>

#include "fisherkit/error.hpp"

namespace fisherkit_test {

/// Runs f and returns what() of the fisherkit::Error it throws ("" and a failed check if
/// it throws nothing or something else).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const fisherkit::Error& e) {
    return e.what();
  } catch (...) {
    FAIL_CHECK("threw something other than fisherkit::Error");
    return "";
  }
  FAIL_CHECK("did not throw");
  return "";
}

inline bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

}  // namespace fisherkit_test
