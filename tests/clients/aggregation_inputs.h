#pragma once

// Per-rank step figures shared by the in-job aggregation tests: random and
// adversarial token entropies, attention heads, grad norms and losses, kept
// raw so a test can pool them itself (float64 reference) or send them to a
// daemon as per-rank reports.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "entrowatch/client/step_aggregator.h"
#include "entrowatch/v1/entrowatch.pb.h"

namespace entrowatch::testing {

inline constexpr int kAggregationRanks = 4;
inline constexpr uint32_t kAggregationVocab = 152064;
inline constexpr uint32_t kAggregationLayers = 3;
inline constexpr uint32_t kAggregationHeads = 4;
inline constexpr float kAggregationThreshold = 0.8f;  // the daemon's default

// One rank's raw figures for one step.
struct RankData {
  std::vector<float> entropies;
  std::vector<uint8_t> generated;                // empty, or one flag per entropy
  std::map<uint32_t, std::vector<float>> heads;  // layer -> per-head entropy
  std::map<uint32_t, float> max_logits;
  std::optional<double> grad_norm;
  std::optional<double> loss;
  std::optional<double> learning_rate;

  // The aggregator's input (spans into this object).
  client::RankStepInput Input(uint64_t step) const;
  // The same figures as one per-rank Report.
  v1::Report RawReport(const std::string& run_id, uint32_t rank, uint64_t step) const;
};

// kAggregationRanks ranks' figures for one step, from `seed`: entropies of
// 0, ln V rounded to float (a hair above ln V), bin edges, values at the
// high-entropy threshold, a cluster and uniform values; rank 2 has no
// tokens, rank 1 no token kinds and no layer 2, rank 3 one head fewer on
// layer 0 and no loss; only rank 0 sends a learning rate.
std::vector<RankData> MakeStep(uint64_t seed);

client::StepAggregatorOptions AggregationOptions(const std::string& run_id);

}  // namespace entrowatch::testing
