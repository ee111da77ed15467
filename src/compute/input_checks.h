#pragma once

// Precondition checks every engine runs before touching memory, so all
// engines reject the same inputs with the same messages.

#include <cstddef>

#include "absl/status/status.h"
#include "compute/entropy_engine.h"

namespace entrowatch::compute {

// Smallest temperature an engine accepts: below it 1 / temperature scales
// logits past what float arithmetic holds (the distribution is one-hot long
// before).
inline constexpr float kMinTemperature = 1e-6f;

// InvalidArgument unless the preconditions documented on LogitsInput hold and
// out_rows == rows. Does not read the logits themselves (non-finite values
// are reported per row, not failed).
absl::Status CheckLogitsInput(const LogitsInput& in, size_t out_rows);

// InvalidArgument unless the shapes documented on AttentionInput hold
// (positive sizes, heads % kv_heads == 0, nq <= nk when causal, non-null
// data, finite scale).
absl::Status CheckAttentionInput(const AttentionInput& in);

// Reads q and k: InvalidArgument naming the tensor and element when a value
// is NaN or infinite, or when the scores could overflow float arithmetic
// (max|q| * max|k| * head_dim * scale beyond 1e30; real attention logits are
// many orders of magnitude smaller). Callers run it before AttentionEntropy.
absl::Status CheckAttentionValues(const AttentionInput& in);

// Scale to apply to q . k: in.scale, or 1/sqrt(head_dim) when it is 0.
float EffectiveScale(const AttentionInput& in);

}  // namespace entrowatch::compute
