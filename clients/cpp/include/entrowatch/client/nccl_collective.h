#pragma once

// Collective over the training job's own NCCL communicator. Built (CMake
// target entrowatch_client_nccl) only when NCCL and the CUDA runtime are
// found; ENTROWATCH_CLIENT_WITH_NCCL is defined for code that links it.
//
// Each call copies the host values into a device scratch buffer owned by this
// object, runs ncclAllReduce / ncclAllGather on the caller's stream, copies
// the result back and synchronizes that stream; it returns when the host
// result is ready. The stream is therefore ordered after whatever the trainer
// queued on it before the call. The device current on the calling thread must
// be the communicator's device.

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstddef>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "entrowatch/client/collective.h"

namespace entrowatch::client {

class NcclCollective final : public Collective {
 public:
  // Borrows `comm` and `stream`: both must outlive this object, which never
  // destroys them. Reads rank and world size from the communicator.
  static absl::StatusOr<std::unique_ptr<NcclCollective>> Create(ncclComm_t comm,
                                                                cudaStream_t stream);
  // Frees the scratch buffer.
  ~NcclCollective() override;

  NcclCollective(const NcclCollective&) = delete;
  NcclCollective& operator=(const NcclCollective&) = delete;

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }

  absl::Status AllReduceSum(absl::Span<double> values) override;
  absl::Status AllReduceSum(absl::Span<float> values) override;
  absl::Status AllReduceMax(absl::Span<double> values) override;
  absl::Status AllGather(absl::Span<const double> send, absl::Span<double> out) override;
  absl::Status AllGather(absl::Span<const float> send, absl::Span<float> out) override;

 private:
  NcclCollective(ncclComm_t comm, cudaStream_t stream, int rank, int world_size);

  // Grows the scratch buffer to at least `bytes`.
  absl::Status Reserve(size_t bytes);
  absl::Status AllReduce(void* host, size_t count, size_t element_bytes, ncclDataType_t type,
                         ncclRedOp_t op);
  absl::Status Gather(const void* send, size_t count, void* out, size_t out_count,
                      size_t element_bytes, ncclDataType_t type);

  const ncclComm_t comm_;
  const cudaStream_t stream_;
  const int rank_;
  const int world_size_;
  void* scratch_ = nullptr;
  size_t scratch_bytes_ = 0;
};

}  // namespace entrowatch::client
