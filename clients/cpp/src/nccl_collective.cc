#include "entrowatch/client/nccl_collective.h"

#include "absl/strings/str_cat.h"

namespace entrowatch::client {
namespace {

absl::Status CudaError(cudaError_t error, const char* what) {
  if (error == cudaSuccess) {
    return absl::OkStatus();
  }
  cudaGetLastError();  // clear the runtime's sticky last error for later callers
  return absl::InternalError(absl::StrCat(what, ": ", cudaGetErrorString(error)));
}

absl::Status NcclError(ncclResult_t result, const char* what) {
  if (result == ncclSuccess) {
    return absl::OkStatus();
  }
  return absl::InternalError(absl::StrCat(what, ": ", ncclGetErrorString(result)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<NcclCollective>> NcclCollective::Create(ncclComm_t comm,
                                                                       cudaStream_t stream) {
  if (comm == nullptr) {
    return absl::InvalidArgumentError("NcclCollective: comm is null");
  }
  int rank = 0;
  int world_size = 0;
  if (absl::Status s = NcclError(ncclCommUserRank(comm, &rank), "ncclCommUserRank"); !s.ok()) {
    return s;
  }
  if (absl::Status s = NcclError(ncclCommCount(comm, &world_size), "ncclCommCount"); !s.ok()) {
    return s;
  }
  return std::unique_ptr<NcclCollective>(new NcclCollective(comm, stream, rank, world_size));
}

NcclCollective::NcclCollective(ncclComm_t comm, cudaStream_t stream, int rank, int world_size)
    : comm_(comm), stream_(stream), rank_(rank), world_size_(world_size) {}

NcclCollective::~NcclCollective() {
  if (scratch_ != nullptr) {
    cudaFree(scratch_);
  }
}

absl::Status NcclCollective::Reserve(size_t bytes) {
  if (bytes <= scratch_bytes_) {
    return absl::OkStatus();
  }
  if (scratch_ != nullptr) {
    // The stream may still use the old buffer only until the previous call's
    // synchronize, which has returned: freeing it now is safe.
    cudaFree(scratch_);
    scratch_ = nullptr;
    scratch_bytes_ = 0;
  }
  if (absl::Status s = CudaError(cudaMalloc(&scratch_, bytes), "cudaMalloc(collective scratch)");
      !s.ok()) {
    scratch_ = nullptr;
    return s;
  }
  scratch_bytes_ = bytes;
  return absl::OkStatus();
}

absl::Status NcclCollective::AllReduce(void* host, size_t count, size_t element_bytes,
                                       ncclDataType_t type, ncclRedOp_t op) {
  if (count == 0) {
    return absl::OkStatus();
  }
  const size_t bytes = count * element_bytes;
  if (absl::Status s = Reserve(bytes); !s.ok()) {
    return s;
  }
  absl::Status s = CudaError(
      cudaMemcpyAsync(scratch_, host, bytes, cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync");
  if (s.ok()) {
    s = NcclError(ncclAllReduce(scratch_, scratch_, count, type, op, comm_, stream_),
                  "ncclAllReduce");
  }
  if (s.ok()) {
    s = CudaError(cudaMemcpyAsync(host, scratch_, bytes, cudaMemcpyDeviceToHost, stream_),
                  "cudaMemcpyAsync");
  }
  // Synchronize even after a failure: nothing may still run on the scratch.
  absl::Status sync = CudaError(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  return s.ok() ? sync : s;
}

absl::Status NcclCollective::Gather(const void* send, size_t count, void* out, size_t out_count,
                                    size_t element_bytes, ncclDataType_t type) {
  if (out_count != count * static_cast<size_t>(world_size_)) {
    return absl::InvalidArgumentError(absl::StrCat("NcclCollective::AllGather: out has ", out_count,
                                                   " values, want ", count, " x ", world_size_,
                                                   " ranks"));
  }
  if (count == 0) {
    return absl::OkStatus();
  }
  const size_t send_bytes = count * element_bytes;
  const size_t out_bytes = out_count * element_bytes;
  // The scratch holds the gathered values; this rank's slice doubles as its
  // send buffer (NCCL's in-place all-gather).
  if (absl::Status s = Reserve(out_bytes); !s.ok()) {
    return s;
  }
  char* const device = static_cast<char*>(scratch_);
  char* const own_slice = device + static_cast<size_t>(rank_) * send_bytes;
  absl::Status s =
      CudaError(cudaMemcpyAsync(own_slice, send, send_bytes, cudaMemcpyHostToDevice, stream_),
                "cudaMemcpyAsync");
  if (s.ok()) {
    s = NcclError(ncclAllGather(own_slice, device, count, type, comm_, stream_), "ncclAllGather");
  }
  if (s.ok()) {
    s = CudaError(cudaMemcpyAsync(out, device, out_bytes, cudaMemcpyDeviceToHost, stream_),
                  "cudaMemcpyAsync");
  }
  absl::Status sync = CudaError(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  return s.ok() ? sync : s;
}

absl::Status NcclCollective::AllReduceSum(absl::Span<double> values) {
  return AllReduce(values.data(), values.size(), sizeof(double), ncclFloat64, ncclSum);
}

absl::Status NcclCollective::AllReduceSum(absl::Span<float> values) {
  return AllReduce(values.data(), values.size(), sizeof(float), ncclFloat32, ncclSum);
}

absl::Status NcclCollective::AllReduceMax(absl::Span<double> values) {
  return AllReduce(values.data(), values.size(), sizeof(double), ncclFloat64, ncclMax);
}

absl::Status NcclCollective::AllGather(absl::Span<const double> send, absl::Span<double> out) {
  return Gather(send.data(), send.size(), out.data(), out.size(), sizeof(double), ncclFloat64);
}

absl::Status NcclCollective::AllGather(absl::Span<const float> send, absl::Span<float> out) {
  return Gather(send.data(), send.size(), out.data(), out.size(), sizeof(float), ncclFloat32);
}

}  // namespace entrowatch::client
