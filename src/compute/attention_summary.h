#pragma once

// Aggregates of one layer's per-(head, query) attention entropies: what the
// daemon exports per layer and per head.

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "entrowatch/v1/entrowatch.pb.h"

namespace entrowatch::compute {

struct AttentionSummary {
  std::vector<double> head_mean;  // per head, over its queries
  double layer_mean = 0;          // over heads and queries
  double head_variance = 0;       // population variance of head_mean
  // By query kind, when kinds are given (otherwise counts are 0).
  double prompt_mean = 0;
  int64_t prompt_queries = 0;  // (head, query) pairs
  double generated_mean = 0;
  int64_t generated_queries = 0;
};

// `entropies` is indexed head * nq + query (AttentionOutput::shannon or
// renyi2); `query_kinds` is empty or has nq entries. InvalidArgument when
// sizes disagree. Thread-safe (pure).
absl::StatusOr<AttentionSummary> SummarizeAttention(
    absl::Span<const float> entropies, int64_t heads, int64_t nq,
    absl::Span<const entrowatch::v1::TokenKind> query_kinds);

}  // namespace entrowatch::compute
