#include "compute/cuda/cuda_engine.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "compute/cuda/kernels.cuh"
#include "compute/entropy_math.h"
#include "compute/input_checks.h"
#include "compute/sampling_view.h"

namespace entrowatch::compute {
namespace {

static_assert(cuda::kRowOk == static_cast<int32_t>(RowStatus::kOk));
static_assert(cuda::kRowNonFinite == static_cast<int32_t>(RowStatus::kNonFinite));
static_assert(cuda::kRowAllMasked == static_cast<int32_t>(RowStatus::kAllMasked));

absl::Status CudaError(cudaError_t error, absl::string_view what) {
  return absl::InternalError(absl::StrCat("cuda: ", what, ": ", cudaGetErrorName(error), " (",
                                          cudaGetErrorString(error), ")"));
}

#define CUDA_RETURN_IF_ERROR(call)             \
  do {                                         \
    const cudaError_t ew_cuda_error_ = (call); \
    if (ew_cuda_error_ != cudaSuccess) {       \
      return CudaError(ew_cuda_error_, #call); \
    }                                          \
  } while (0)

cuda::ElementType ToElementType(common::DType dtype) {
  switch (dtype) {
    case common::DType::kFloat32:
      return cuda::ElementType::kFloat32;
    case common::DType::kFloat16:
      return cuda::ElementType::kFloat16;
    case common::DType::kBFloat16:
      return cuda::ElementType::kBFloat16;
  }
  return cuda::ElementType::kFloat32;
}

// Byte offsets rounded up so that every region starts 256-byte aligned.
size_t AlignUp(size_t bytes) { return (bytes + 255) & ~size_t{255}; }

// Half of the pool, with its stream, its pinned staging (same size) and the
// event marking the end of its last batch.
struct Slot {
  cudaStream_t stream = nullptr;
  cudaEvent_t done = nullptr;
  uint8_t* device = nullptr;
  uint8_t* pinned = nullptr;
  size_t bytes = 0;
  // Rows of the batch in flight on this slot, to be copied out.
  int64_t first_row = -1;
  int64_t rows = 0;
  size_t out_offset = 0;
};

class CudaEngine final : public EntropyEngine {
 public:
  CudaEngine(int sms, uint8_t* pool, Slot slots[2]) : sms_(sms), pool_(pool) {
    slots_[0] = slots[0];
    slots_[1] = slots[1];
  }
  ~CudaEngine() override {
    for (Slot& slot : slots_) {
      cudaStreamSynchronize(slot.stream);
      cudaEventDestroy(slot.done);
      cudaStreamDestroy(slot.stream);
      cudaFreeHost(slot.pinned);
    }
    cudaFree(pool_);
  }
  CudaEngine(const CudaEngine&) = delete;
  CudaEngine& operator=(const CudaEngine&) = delete;

  absl::string_view name() const override { return "cuda"; }

  absl::Status TokenEntropy(const LogitsInput& in, absl::Span<RowEntropy> out) override {
    RETURN_IF_ERROR(CheckLogitsInput(in, out.size()));
    absl::MutexLock lock(&mu_);
    absl::Status status = TokenEntropyLocked(in, out);
    if (!status.ok()) {
      // Forget batches of the failed call so the next call starts clean.
      for (Slot& slot : slots_) {
        cudaStreamSynchronize(slot.stream);
        slot.first_row = -1;
      }
    }
    return status;
  }

  absl::Status AttentionEntropy(const AttentionInput& in, AttentionOutput* out) override {
    RETURN_IF_ERROR(CheckAttentionInput(in));
    // NaN / Inf (or scores past the float range) would reach the kernels and
    // come back as unwritten outputs, an InternalError that degrades the
    // engine for good; they are the caller's error, as in the reference.
    RETURN_IF_ERROR(CheckAttentionValues(in));
    if (in.head_dim > cuda::kMaxAttentionHeadDim) {
      return absl::InvalidArgumentError(absl::StrCat("head_dim ", in.head_dim, " above ",
                                                     cuda::kMaxAttentionHeadDim,
                                                     " (the CUDA kernel's limit)"));
    }
    absl::MutexLock lock(&mu_);
    return AttentionEntropyLocked(in, out);
  }

 private:
  struct TokenLayout {
    size_t logits = 0, targets = 0, partials = 0, out = 0, total = 0;
  };

  static TokenLayout Layout(int64_t rows, size_t row_bytes, int splits) {
    TokenLayout l;
    l.targets = AlignUp(rows * row_bytes);
    l.partials = l.targets + AlignUp(rows * sizeof(int32_t));
    l.out = l.partials + AlignUp(rows * splits * sizeof(cuda::DevicePartial));
    l.total = l.out + AlignUp(rows * sizeof(cuda::DeviceRow));
    return l;
  }

  // Copies a finished batch's rows out of the slot's pinned memory.
  absl::Status Collect(Slot& slot, const LogitsInput& in, absl::Span<RowEntropy> out) {
    if (slot.first_row < 0) {
      return absl::OkStatus();
    }
    CUDA_RETURN_IF_ERROR(cudaEventSynchronize(slot.done));
    const auto* rows = reinterpret_cast<const cuda::DeviceRow*>(slot.pinned + slot.out_offset);
    for (int64_t i = 0; i < slot.rows; ++i) {
      const cuda::DeviceRow& d = rows[i];
      RowEntropy& r = out[slot.first_row + i];
      r = RowEntropy();
      if (d.status < cuda::kRowOk || d.status > cuda::kRowAllMasked) {
        return absl::InternalError(
            absl::StrCat("cuda: row ", slot.first_row + i, " was not written by the kernel"));
      }
      r.status = static_cast<RowStatus>(d.status);
      r.entropy = d.entropy;
      r.normalized = d.normalized;
      r.top1_prob = d.top1_prob;
      r.surprisal = d.surprisal;
    }
    slot.first_row = -1;
    return absl::OkStatus();
  }

  absl::Status TokenEntropyLocked(const LogitsInput& in, absl::Span<RowEntropy> out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const int64_t rows = in.logits.rows;
    if (rows == 0) {
      return absl::OkStatus();
    }
    const size_t row_bytes =
        static_cast<size_t>(in.logits.cols) * common::DTypeSize(in.logits.dtype);
    const float scale2 = Log2Scale(1.0f / in.temperature);
    const size_t slot_bytes = slots_[0].bytes;
    // Largest batch that fits a slot (splits computed for that batch size).
    int64_t batch = rows;
    while (batch > 0 &&
           Layout(batch, row_bytes, cuda::TokenSplits(batch, in.logits.cols, sms_)).total >
               slot_bytes) {
      batch = batch > 1 ? batch / 2 : 0;
    }
    if (batch == 0) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "one row of ", row_bytes, " bytes does not fit the CUDA pool share of ", slot_bytes));
    }
    int index = 0;
    for (int64_t first = 0; first < rows; first += batch, index ^= 1) {
      const int64_t n = std::min(batch, rows - first);
      const int splits = cuda::TokenSplits(n, in.logits.cols, sms_);
      const TokenLayout layout = Layout(n, row_bytes, splits);
      Slot& slot = slots_[index];
      RETURN_IF_ERROR(Collect(slot, in, out));
      // Pageable report bytes go through pinned staging so the copy is a
      // real asynchronous DMA that overlaps the other slot's kernels.
      std::memcpy(slot.pinned, in.logits.row(first), n * row_bytes);
      if (!in.target_ids.empty()) {
        std::memcpy(slot.pinned + layout.targets, in.target_ids.data() + first,
                    n * sizeof(int32_t));
      }
      CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(slot.device, slot.pinned, layout.partials,
                                           cudaMemcpyHostToDevice, slot.stream));
      // Poison the outputs: a row the kernels fail to write reads back as an
      // invalid status instead of stale numbers.
      CUDA_RETURN_IF_ERROR(cudaMemsetAsync(slot.device + layout.out, 0xff,
                                           n * sizeof(cuda::DeviceRow), slot.stream));
      CUDA_RETURN_IF_ERROR(cuda::LaunchTokenEntropy(
          ToElementType(in.logits.dtype), slot.device, n, in.logits.cols, in.valid_vocab, scale2,
          in.target_ids.empty() ? nullptr
                                : reinterpret_cast<const int32_t*>(slot.device + layout.targets),
          splits, reinterpret_cast<cuda::DevicePartial*>(slot.device + layout.partials),
          reinterpret_cast<cuda::DeviceRow*>(slot.device + layout.out), slot.stream));
      CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(slot.pinned + layout.out, slot.device + layout.out,
                                           n * sizeof(cuda::DeviceRow), cudaMemcpyDeviceToHost,
                                           slot.stream));
      CUDA_RETURN_IF_ERROR(cudaEventRecord(slot.done, slot.stream));
      slot.first_row = first;
      slot.rows = n;
      slot.out_offset = layout.out;
    }
    RETURN_IF_ERROR(Collect(slots_[0], in, out));
    RETURN_IF_ERROR(Collect(slots_[1], in, out));
    if (in.sampling()) {
      // The sampling view selects and sorts within each row: it runs on the
      // host with the same filters (entropy_math.h) the other engines use.
      std::vector<double> scratch;
      for (int64_t r = 0; r < rows; ++r) {
        if (out[r].status == RowStatus::kOk) {
          const SampledStats s = SamplingView(in, r, scratch);
          out[r].final_entropy = s.entropy;
          out[r].effective_vocab = s.effective_vocab;
          out[r].final_top1_prob = s.top1_prob;
        }
      }
    }
    return absl::OkStatus();
  }

  absl::Status AttentionEntropyLocked(const AttentionInput& in, AttentionOutput* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const size_t esize = common::DTypeSize(in.dtype);
    const int64_t group = in.heads / in.kv_heads;
    const size_t q_head = static_cast<size_t>(in.nq) * in.head_dim * esize;
    const size_t k_head = static_cast<size_t>(in.nk) * in.head_dim * esize;
    const size_t out_head = static_cast<size_t>(in.nq) * sizeof(float);
    const size_t per_kv = AlignUp(group * q_head) + AlignUp(k_head) + 3 * AlignUp(group * out_head);
    Slot& slot = slots_[0];
    const int64_t kv_batch = std::min<int64_t>(in.kv_heads, slot.bytes / per_kv);
    if (kv_batch == 0) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "one kv head group needs ", per_kv, " bytes, the CUDA pool share is ", slot.bytes));
    }
    out->shannon.assign(in.heads * in.nq, 0.0f);
    out->renyi2.assign(in.heads * in.nq, 0.0f);
    out->max_logit.assign(in.heads, -INFINITY);
    const float scale = EffectiveScale(in);
    for (int64_t kv0 = 0; kv0 < in.kv_heads; kv0 += kv_batch) {
      const int64_t kvn = std::min(kv_batch, in.kv_heads - kv0);
      const int64_t hn = kvn * group;
      const size_t q_bytes = hn * q_head;
      const size_t k_off = AlignUp(q_bytes);
      const size_t k_bytes = kvn * k_head;
      const size_t s_off = k_off + AlignUp(k_bytes);
      const size_t r_off = s_off + AlignUp(hn * out_head);
      const size_t m_off = r_off + AlignUp(hn * out_head);
      const size_t out_end = m_off + hn * out_head;
      std::memcpy(slot.pinned, static_cast<const uint8_t*>(in.q) + kv0 * group * q_head, q_bytes);
      std::memcpy(slot.pinned + k_off, static_cast<const uint8_t*>(in.k) + kv0 * k_head, k_bytes);
      CUDA_RETURN_IF_ERROR(
          cudaMemcpyAsync(slot.device, slot.pinned, s_off, cudaMemcpyHostToDevice, slot.stream));
      CUDA_RETURN_IF_ERROR(
          cudaMemsetAsync(slot.device + s_off, 0xff, out_end - s_off, slot.stream));
      CUDA_RETURN_IF_ERROR(cuda::LaunchAttentionEntropy(
          ToElementType(in.dtype), slot.device, slot.device + k_off, hn, kvn, in.nq, in.nk,
          in.head_dim, in.causal, scale, reinterpret_cast<float*>(slot.device + s_off),
          reinterpret_cast<float*>(slot.device + r_off),
          reinterpret_cast<float*>(slot.device + m_off), slot.stream));
      CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(slot.pinned + s_off, slot.device + s_off,
                                           out_end - s_off, cudaMemcpyDeviceToHost, slot.stream));
      CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(slot.stream));
      const auto* shannon = reinterpret_cast<const float*>(slot.pinned + s_off);
      const auto* renyi2 = reinterpret_cast<const float*>(slot.pinned + r_off);
      const auto* row_max = reinterpret_cast<const float*>(slot.pinned + m_off);
      for (int64_t i = 0; i < hn * in.nq; ++i) {
        // Poisoned (NaN) entries were never written.
        if (!(shannon[i] >= 0) || !(renyi2[i] >= 0) || std::isnan(row_max[i])) {
          return absl::InternalError(absl::StrCat("cuda: attention output ", i, " not written"));
        }
        float& head_max = out->max_logit[kv0 * group + i / in.nq];
        head_max = std::max(head_max, row_max[i]);
      }
      std::copy_n(shannon, hn * in.nq, out->shannon.begin() + kv0 * group * in.nq);
      std::copy_n(renyi2, hn * in.nq, out->renyi2.begin() + kv0 * group * in.nq);
    }
    return absl::OkStatus();
  }

  const int sms_;
  uint8_t* const pool_;
  absl::Mutex mu_;
  Slot slots_[2] ABSL_GUARDED_BY(mu_);
};

}  // namespace

int CudaDeviceCount() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // reset the runtime's last error for later callers
    return 0;
  }
  return count;
}

std::string CudaDeviceDescription() {
  int count = 0;
  const cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess) {
    cudaGetLastError();
    return absl::StrCat("no CUDA device: ", cudaGetErrorString(error));
  }
  if (count == 0) {
    return "no CUDA device";
  }
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
    return "CUDA device 0 unreadable";
  }
  int driver = 0;
  cudaDriverGetVersion(&driver);
  return absl::StrFormat("%s, sm_%d%d, %.1f GiB, %d SMs, driver %d.%d", prop.name, prop.major,
                         prop.minor, prop.totalGlobalMem / 1073741824.0, prop.multiProcessorCount,
                         driver / 1000, (driver % 1000) / 10);
}

absl::StatusOr<std::unique_ptr<EntropyEngine>> CreateCudaEngine(int64_t pool_bytes) {
  if (pool_bytes < (1 << 20)) {
    return absl::InvalidArgumentError(
        absl::StrCat("CUDA pool of ", pool_bytes, " bytes is below 1 MiB"));
  }
  if (CudaDeviceCount() == 0) {
    return absl::UnavailableError(CudaDeviceDescription());
  }
  auto unavailable = [](cudaError_t error, absl::string_view what) {
    return absl::UnavailableError(absl::StrCat("cuda: ", what, ": ", cudaGetErrorString(error)));
  };
  cudaError_t error = cudaSetDevice(0);
  if (error != cudaSuccess) {
    return unavailable(error, "cudaSetDevice");
  }
  int sms = 0;
  error = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  if (error != cudaSuccess) {
    return unavailable(error, "cudaDeviceGetAttribute");
  }
  void* pool = nullptr;
  error = cudaMalloc(&pool, static_cast<size_t>(pool_bytes));
  if (error != cudaSuccess) {
    return unavailable(error, "cudaMalloc of the pool");
  }
  Slot slots[2];
  const size_t half = (static_cast<size_t>(pool_bytes) / 2) & ~size_t{255};
  for (int i = 0; i < 2; ++i) {
    slots[i].device = static_cast<uint8_t*>(pool) + i * half;
    slots[i].bytes = half;
    void* pinned = nullptr;
    error = cudaMallocHost(&pinned, half);
    if (error == cudaSuccess) {
      slots[i].pinned = static_cast<uint8_t*>(pinned);
      error = cudaStreamCreateWithFlags(&slots[i].stream, cudaStreamNonBlocking);
    }
    if (error == cudaSuccess) {
      error = cudaEventCreateWithFlags(&slots[i].done, cudaEventDisableTiming);
    }
    if (error != cudaSuccess) {
      for (int j = 0; j <= i; ++j) {
        cudaFreeHost(slots[j].pinned);
        if (slots[j].stream != nullptr) {
          cudaStreamDestroy(slots[j].stream);
        }
        if (slots[j].done != nullptr) {
          cudaEventDestroy(slots[j].done);
        }
      }
      cudaFree(pool);
      return unavailable(error, "pinned staging, stream or event");
    }
  }
  return std::unique_ptr<EntropyEngine>(
      std::make_unique<CudaEngine>(sms, static_cast<uint8_t*>(pool), slots));
}

}  // namespace entrowatch::compute
