// The doctest runner of fisherkit's C++ unit tests (see CMakeLists.txt in this folder).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
