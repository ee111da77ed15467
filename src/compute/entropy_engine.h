#pragma once

// The compute contract: per-row token entropy statistics from raw logits and
// per-(head, query) attention entropies from Q and K. Implementations: the
// float64 reference engine (cpu/reference_engine.h), the vectorized CPU
// engine (cpu/), and the CUDA engine (cuda/, built only with CUDA).

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/tensor_view.h"

namespace entrowatch::compute {

// One block of logits, [rows, vocab]. Preconditions (checked by ingest, and
// again by engines with InvalidArgument): 1 <= valid_vocab <= vocab,
// temperature > 0 and finite, top_p > 0 (not NaN), target_ids empty or one
// per row, each in [0, valid_vocab).
struct LogitsInput {
  common::MatrixView logits;
  int64_t valid_vocab = 0;  // columns >= valid_vocab are padding, excluded
  float temperature = 1.0f;
  absl::Span<const int32_t> target_ids;
  // Sampling view (computed only when sampling() is true).
  uint32_t top_k = 0;  // 0 = off
  float top_p = 1.0f;  // >= 1 = off
  bool sampling() const { return top_k > 0 || top_p < 1.0f; }
};

enum class RowStatus : uint8_t {
  kOk = 0,
  kNonFinite,  // a NaN or +Inf among the valid columns
  kAllMasked,  // no finite value among the valid columns (all -inf)
};

// Statistics of one row of p = softmax(z / temperature) over the valid
// columns. When status != kOk the numeric fields are unspecified.
struct RowEntropy {
  RowStatus status = RowStatus::kOk;
  double entropy = 0;     // nats, in [0, log(valid_vocab)]
  double normalized = 0;  // entropy / log(valid_vocab); 0 when valid_vocab == 1
  double top1_prob = 0;
  // -log p(target); only when target_ids is given; +inf when the target's
  // logit is -inf.
  double surprisal = 0;
  // Sampling view, only when LogitsInput::sampling(): the distribution after
  // temperature, then top-k (ties with the k-th value kept), then top-p
  // (smallest prefix whose cumulative probability exceeds p; top-1 kept).
  double final_entropy = 0;
  int64_t effective_vocab = 0;  // tokens left with nonzero probability
  double final_top1_prob = 0;
};

// Attention for one layer and one sequence. q: [heads, nq, d], k:
// [kv_heads, nk, d], heads % kv_heads == 0 (GQA: head h reads kv head
// h / (heads / kv_heads)). With causal, query i (0-based among nq) sits at
// absolute position nk - nq + i and sees keys 0 ..= that position.
struct AttentionInput {
  common::DType dtype = common::DType::kFloat32;
  const void* q = nullptr;
  const void* k = nullptr;
  int64_t heads = 0;
  int64_t kv_heads = 0;
  int64_t nq = 0;
  int64_t nk = 0;
  int64_t head_dim = 0;
  bool causal = true;
  float scale = 0;  // 0 = 1/sqrt(head_dim)
};

// Per (head, query) entropies in nats, index head * nq + query.
struct AttentionOutput {
  std::vector<float> shannon;
  std::vector<float> renyi2;
  // Per head: the largest score q.k * scale over its queries and the keys
  // each query sees. Empty when the engine does not compute it.
  std::vector<float> max_logit;
};

// Thread-compatible per call; implementations document whether concurrent
// calls are allowed (all current ones allow them).
class EntropyEngine {
 public:
  virtual ~EntropyEngine() = default;

  // "cpu-reference", "cpu" or "cuda".
  virtual absl::string_view name() const = 0;

  // Fills out[r] for every row. out.size() must equal rows. Rows with
  // NaN/+Inf or no finite value are flagged in RowEntropy::status, not
  // failed: the caller decides to reject or skip. Returns InvalidArgument
  // for violated preconditions, Internal/Unavailable for device failures.
  virtual absl::Status TokenEntropy(const LogitsInput& in, absl::Span<RowEntropy> out) = 0;

  // Never materializes the nq x nk score matrix.
  virtual absl::Status AttentionEntropy(const AttentionInput& in, AttentionOutput* out) = 0;

  // True once a device failure has moved this engine to its CPU fallback for
  // good (see degrading_engine.h); the daemon exports it as
  // entrowatch_compute_degraded. Thread-safe.
  virtual bool degraded() const { return false; }
};

}  // namespace entrowatch::compute
