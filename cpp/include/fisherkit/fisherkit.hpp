// The umbrella header: everything public in fisherkit's C++ API.
#pragma once
#include "fisherkit/error.hpp"
#include "fisherkit/view.hpp"
#include "fisherkit/heads.hpp"
#include "fisherkit/moments.hpp"
#include "fisherkit/mlp.hpp"
#include "fisherkit/accumulate.hpp"
#include "fisherkit/variance.hpp"
#include "fisherkit/dpr2.hpp"
#include "fisherkit/rank1.hpp"
#include "fisherkit/natgrad.hpp"
#include "fisherkit/layout.hpp"
#include "fisherkit/monitor.hpp"
