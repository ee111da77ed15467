#pragma once

// Merges the reports of one run into steps. A step is finalized when every
// one of world_size ranks reported it, when a later step is finalized (ranks
// report in step order), or `step_timeout` after its first report. A report
// for an already finalized step is late and not folded in. Not thread-safe:
// the owner serializes calls (the run's lock).

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "entrowatch/v1/entrowatch.pb.h"

namespace entrowatch::analysis {

struct HeadAccum {
  double sum = 0;  // sum of per-query entropies (nats)
  int64_t count = 0;
};

// What one report adds to its step, after entropies were computed.
struct ReportContribution {
  uint32_t rank = 0;
  uint32_t world_size = 1;
  uint64_t step = 0;
  entrowatch::v1::Phase phase = entrowatch::v1::TRAIN;
  std::vector<float> entropies;   // nats, one per token
  std::vector<float> normalized;  // entropy / log(valid vocab), one per token
  std::vector<bool> generated;    // token marked GENERATED, one per token
  double top1_sum = 0;
  int64_t top1_count = 0;
  double surprisal_sum = 0;
  int64_t surprisal_count = 0;
  std::map<uint32_t, std::vector<HeadAccum>> layers;  // layer -> per-head accumulators
  bool has_grad = false;
  double grad_norm = 0;
  bool has_loss = false;
  double loss = 0;  // may be non-finite: evidence for NON_FINITE
  double learning_rate = 0;
  std::map<std::string, double> scalars;  // named scalars (validated names, finite)
  std::map<uint32_t, double> max_logits;  // layer -> max attention logit

  // Folds one max attention logit of `layer` in (the maximum wins).
  void AddMaxLogit(uint32_t layer, double value) {
    auto [it, inserted] = max_logits.emplace(layer, value);
    if (!inserted && value > it->second) {
      it->second = value;
    }
  }
};

struct AggregationOptions {
  double high_entropy_threshold = 0.8;  // normalized
  absl::Duration step_timeout = absl::Seconds(30);
};

class StepAggregator {
 public:
  explicit StepAggregator(AggregationOptions options) : options_(options) {}

  StepAggregator(const StepAggregator&) = delete;
  StepAggregator& operator=(const StepAggregator&) = delete;

  // Folds c into its step (now: monotonic time). Returns false when the step
  // was already finalized (late); nothing is folded in then.
  bool Add(ReportContribution c, absl::Duration now);

  // Finalizes steps whose timeout passed.
  void Sweep(absl::Duration now);

  // Finalizes every pending step (the run ended).
  void FinalizeAll();

  // Steps finalized since the last call, in increasing step order.
  std::vector<entrowatch::v1::StepSummary> TakeFinalized();

  // Forgets every pending and finalized step (the run is rebuilt from its
  // durable state).
  void Reset();

  void set_options(AggregationOptions options) { options_ = options; }
  // Restores "steps up to `step` are finalized" (restart from durable state).
  void RestoreFinalized(uint64_t step) {
    has_finalized_ = true;
    max_finalized_ = step;
  }
  size_t pending_steps() const { return pending_.size(); }
  // Whether any step was finalized, and the highest one.
  bool has_finalized() const { return has_finalized_; }
  uint64_t max_finalized_step() const { return max_finalized_; }
  uint64_t grad_norm_disagreements() const { return grad_disagreements_; }

 private:
  struct PendingStep {
    absl::Duration first_seen;
    uint32_t world_size = 1;
    std::set<uint32_t> ranks;
    ReportContribution sum;  // pooled tokens and sums
    std::vector<double> grad_norms;
    int64_t loss_count = 0;
    // Per rank figures (StepSummary.ranks).
    struct RankAccum {
      int64_t tokens = 0;
      double entropy_sum = 0;
      bool has_grad = false;
      double grad_norm = 0;
      int64_t loss_count = 0;
      double loss_sum = 0;
    };
    std::map<uint32_t, RankAccum> per_rank;
    // Named scalars: sum and count over the reports that sent them.
    std::map<std::string, std::pair<double, int64_t>> scalar_sums;
  };

  void Finalize(uint64_t step, bool complete);
  void FinalizeThrough(uint64_t step);

  AggregationOptions options_;
  std::map<uint64_t, PendingStep> pending_;
  std::vector<entrowatch::v1::StepSummary> finalized_;
  bool has_finalized_ = false;
  uint64_t max_finalized_ = 0;
  uint64_t grad_disagreements_ = 0;
};

// Linear-interpolated quantile (q in [0, 1]) of values; sorts values.
double Quantile(std::vector<float>& values, double q);

}  // namespace entrowatch::analysis
