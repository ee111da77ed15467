#pragma once

// The CUDA engine's entry points, free of CUDA headers so that the engine
// factory and the tests compile with the host compiler alone.

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "compute/entropy_engine.h"

namespace entrowatch::compute {

// Usable CUDA devices; 0 when the driver, the runtime or a device is missing.
int CudaDeviceCount();

// "NVIDIA H100 80GB HBM3, sm_90, 79.1 GiB, driver 13.0", or why none works.
std::string CudaDeviceDescription();

// Builds the CUDA engine on device 0 with a device pool of `pool_bytes`
// (allocated once, here: calls never cudaMalloc) split between two streams,
// each with a pinned host staging buffer of the same size, so the copy of
// one batch of rows overlaps the kernels of the previous one. Inputs larger
// than a stream's share are processed in batches. Unavailable when no device
// works or the pool cannot be allocated. Concurrent calls are safe; they take
// turns on the device.
absl::StatusOr<std::unique_ptr<EntropyEngine>> CreateCudaEngine(int64_t pool_bytes);

}  // namespace entrowatch::compute
