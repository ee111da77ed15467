#pragma once

// The sampling view of one row for the fast engines: the same filters as
// FilterSorted (entropy_math.h) while sorting only what they read.

#include <cstdint>
#include <vector>

#include "compute/entropy_engine.h"
#include "compute/entropy_math.h"

namespace entrowatch::compute {

// Final entropy, effective vocabulary and top-1 probability of row r of `in`
// after temperature, top-k and top-p. Selects the top-k survivors without
// sorting them, skips sorting entirely without top-p, and with top-p sorts a
// growing prefix until it holds the nucleus. `scratch` is reused between
// calls. The row must have at least one finite value. Thread-compatible.
SampledStats SamplingView(const LogitsInput& in, int64_t r, std::vector<double>& scratch);

}  // namespace entrowatch::compute
