#include "compute/cuda/kernel_timing.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/half.h"
#include "compute/cuda/kernels.cuh"
#include "compute/entropy_math.h"

namespace entrowatch::compute {
namespace {

absl::Status Check(cudaError_t error, absl::string_view what) {
  if (error == cudaSuccess) {
    return absl::OkStatus();
  }
  return absl::UnavailableError(absl::StrCat("cuda: ", what, ": ", cudaGetErrorString(error)));
}

cuda::ElementType ToElementType(common::DType dtype) {
  return dtype == common::DType::kFloat32   ? cuda::ElementType::kFloat32
         : dtype == common::DType::kFloat16 ? cuda::ElementType::kFloat16
                                            : cuda::ElementType::kBFloat16;
}

// Device buffer freed on scope exit.
struct DeviceBuffer {
  void* ptr = nullptr;
  ~DeviceBuffer() { cudaFree(ptr); }
};

// Fills `bytes` of device memory with a 4 MiB block of random `dtype`
// values (normal, stddev 3) repeated.
absl::Status FillRandom(void* device, size_t bytes, common::DType dtype) {
  const size_t block = std::min<size_t>(bytes, 4 << 20);
  std::vector<uint8_t> host(block);
  std::mt19937_64 rng(7);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  const size_t esize = common::DTypeSize(dtype);
  for (size_t i = 0; i + esize <= block; i += esize) {
    const float v = normal(rng);
    if (dtype == common::DType::kFloat32) {
      std::memcpy(host.data() + i, &v, 4);
    } else {
      const uint16_t h =
          dtype == common::DType::kFloat16 ? common::FloatToHalf(v) : common::FloatToBFloat16(v);
      std::memcpy(host.data() + i, &h, 2);
    }
  }
  for (size_t offset = 0; offset < bytes; offset += block) {
    if (absl::Status s = Check(cudaMemcpy(static_cast<uint8_t*>(device) + offset, host.data(),
                                          std::min(block, bytes - offset), cudaMemcpyHostToDevice),
                               "cudaMemcpy");
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<double> MedianMs(int iterations, const std::function<cudaError_t()>& launch) {
  cudaEvent_t start;
  cudaEvent_t stop;
  if (absl::Status s = Check(cudaEventCreate(&start), "cudaEventCreate"); !s.ok()) {
    return s;
  }
  if (absl::Status s = Check(cudaEventCreate(&stop), "cudaEventCreate"); !s.ok()) {
    cudaEventDestroy(start);
    return s;
  }
  std::vector<float> ms;
  absl::Status status = Check(launch(), "warm-up launch");
  for (int i = 0; status.ok() && i < std::max(1, iterations); ++i) {
    cudaEventRecord(start);
    status = Check(launch(), "launch");
    cudaEventRecord(stop);
    if (status.ok()) {
      status = Check(cudaEventSynchronize(stop), "cudaEventSynchronize");
    }
    float elapsed = 0;
    if (status.ok()) {
      status = Check(cudaEventElapsedTime(&elapsed, start, stop), "cudaEventElapsedTime");
    }
    ms.push_back(elapsed);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  if (!status.ok()) {
    return status;
  }
  std::sort(ms.begin(), ms.end());
  return static_cast<double>(ms[ms.size() / 2]);
}

}  // namespace

absl::StatusOr<double> TimeTokenKernelMs(common::DType dtype, int64_t rows, int64_t vocab,
                                         int iterations) {
  int sms = 0;
  if (absl::Status s = Check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0),
                             "cudaDeviceGetAttribute");
      !s.ok()) {
    return s;
  }
  const int splits = cuda::TokenSplits(rows, vocab, sms);
  const size_t bytes = static_cast<size_t>(rows) * vocab * common::DTypeSize(dtype);
  DeviceBuffer logits, partials, out;
  for (auto [buffer, size] : {std::pair{&logits, bytes},
                              std::pair{&partials, rows * splits * sizeof(cuda::DevicePartial)},
                              std::pair{&out, rows * sizeof(cuda::DeviceRow)}}) {
    if (absl::Status s = Check(cudaMalloc(&buffer->ptr, size), "cudaMalloc"); !s.ok()) {
      return s;
    }
  }
  if (absl::Status s = FillRandom(logits.ptr, bytes, dtype); !s.ok()) {
    return s;
  }
  const float scale2 = Log2Scale(1.0f);
  return MedianMs(iterations, [&] {
    return cuda::LaunchTokenEntropy(ToElementType(dtype), logits.ptr, rows, vocab, vocab, scale2,
                                    nullptr, splits,
                                    static_cast<cuda::DevicePartial*>(partials.ptr),
                                    static_cast<cuda::DeviceRow*>(out.ptr), nullptr);
  });
}

absl::StatusOr<double> TimeAttentionKernelMs(common::DType dtype, int64_t heads, int64_t kv_heads,
                                             int64_t seq, int64_t head_dim, bool causal,
                                             int iterations) {
  const size_t esize = common::DTypeSize(dtype);
  const size_t q_bytes = static_cast<size_t>(heads) * seq * head_dim * esize;
  const size_t k_bytes = static_cast<size_t>(kv_heads) * seq * head_dim * esize;
  const size_t out_bytes = static_cast<size_t>(heads) * seq * sizeof(float);
  DeviceBuffer q, k, shannon, renyi2, row_max;
  for (auto [buffer, size] :
       {std::pair{&q, q_bytes}, std::pair{&k, k_bytes}, std::pair{&shannon, out_bytes},
        std::pair{&renyi2, out_bytes}, std::pair{&row_max, out_bytes}}) {
    if (absl::Status s = Check(cudaMalloc(&buffer->ptr, size), "cudaMalloc"); !s.ok()) {
      return s;
    }
  }
  for (auto [buffer, size] : {std::pair{&q, q_bytes}, std::pair{&k, k_bytes}}) {
    if (absl::Status s = FillRandom(buffer->ptr, size, dtype); !s.ok()) {
      return s;
    }
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  return MedianMs(iterations, [&] {
    return cuda::LaunchAttentionEntropy(
        ToElementType(dtype), q.ptr, k.ptr, heads, kv_heads, seq, seq, head_dim, causal, scale,
        static_cast<float*>(shannon.ptr), static_cast<float*>(renyi2.ptr),
        static_cast<float*>(row_max.ptr), nullptr);
  });
}

}  // namespace entrowatch::compute
