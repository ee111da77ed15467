#pragma once

// Synthetic training runs for `entrowatch simulate`: a healthy warm-up, then
// a named pathology from an onset step, expressed in the signals entrowatchd
// watches (token entropy, attention head entropy, grad norm, loss, LR).
// Deterministic for a given seed.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/random/random.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "entrowatch/v1/entrowatch.pb.h"

namespace entrowatch::cli {

enum class Scenario {
  kHealthy,
  kEntropyCollapse,
  kPanic,
  kStagnation,
  kPathologicalConfidence,
  kComfortZone,
  kOverload,
  kAttentionLocking,
  kDrift,
};

struct ScenarioInfo {
  Scenario scenario;
  absl::string_view name;
  absl::string_view description;
};

// Every scenario, in the order `simulate --help` lists them.
const std::vector<ScenarioInfo>& AllScenarios();
// InvalidArgument listing the known names when `name` is not one.
absl::StatusOr<Scenario> ScenarioFromName(absl::string_view name);
absl::string_view ScenarioName(Scenario scenario);

struct SimulationOptions {
  Scenario scenario = Scenario::kHealthy;
  std::string run_id = "sim";
  int64_t steps = 200;       // steps 1..steps
  int64_t onset_step = 100;  // first step of the pathology
  uint32_t ranks = 1;
  uint32_t vocab = 4096;      // vocabulary of token entropies and logits
  int tokens_per_rank = 256;  // client-computed token entropies per report
  int layers = 4;
  int heads = 8;
  int logits_every = 5;  // a raw logits block every this many steps (0: never)
  int logits_rows = 8;
  uint64_t seed = 1;
};

// The run-wide signals of one step (identical on every rank).
struct StepSignals {
  double entropy_mean = 0;  // nats, mean token entropy the pathology aims at
  double grad_norm = 0;
  double loss = 0;
  double learning_rate = 0;
  std::vector<std::vector<float>> head_entropy;  // [layer][head], nats
};

// Generates the reports of a synthetic run. Not thread-safe.
class ScenarioGenerator {
 public:
  explicit ScenarioGenerator(SimulationOptions options);

  const SimulationOptions& options() const { return options_; }
  StepSignals Signals(int64_t step) const;
  // The report of `rank` at `step` (seq left 0 for the client to assign).
  v1::Report MakeReport(int64_t step, uint32_t rank) const;

 private:
  std::vector<std::vector<float>> HeadEntropies(int64_t step) const;

  SimulationOptions options_;
};

// float64 entropy (nats) of softmax(logits).
double EntropyOfLogits(const std::vector<double>& logits);

// Scales `base` by an inverse temperature found by bisection so that the
// entropy of the row, rounded to bfloat16, is `target_nats` (clamped to
// [0, log V)). Returns the bfloat16 bit patterns.
std::vector<uint16_t> BFloat16RowWithEntropy(const std::vector<double>& base, double target_nats);

}  // namespace entrowatch::cli
