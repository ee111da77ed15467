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
#include "absl/types/span.h"
#include "entrowatch/v1/entrowatch.pb.h"

namespace entrowatch::analysis {

// Bins of EntropySummary.histogram (version 1 of the wire protocol): equal
// width over [0, ln V]. The pooled quantiles a step reads from them are
// within (ln V) / kEntropyHistogramBins nats of the exact ones.
inline constexpr int kEntropyHistogramBins = 2048;

// Histogram bin of entropy h (nats) over [0, log_v]: values above log_v
// (float rounding) fall in the last bin. log_v > 0. Inline: ingest's
// validation uses it without linking the aggregator.
inline int EntropyBin(double h, double log_v) {
  const double position = h / log_v * kEntropyHistogramBins;
  if (!(position > 0)) {
    return 0;
  }
  return position >= kEntropyHistogramBins - 1 ? kEntropyHistogramBins - 1
                                               : static_cast<int>(position);
}

// The EntropySummary of `values` (nats, vocabulary vocab_size >= 2), as a
// client builds it. generated: empty, or one flag per value (GENERATED).
// high_entropy_threshold: normalized threshold to count at (0 = not counted).
entrowatch::v1::EntropySummary SummarizeEntropies(absl::Span<const float> values,
                                                  uint32_t vocab_size,
                                                  double high_entropy_threshold,
                                                  const std::vector<bool>& generated = {});

// Adds `from` into `into`, bin by bin (the merge a job does with its
// all-reduce). Both have the same vocab_size (an empty `into` takes from's).
// The high-entropy count stays only when both counted at the same threshold;
// otherwise the result counts none (threshold 0).
void MergeEntropySummary(const entrowatch::v1::EntropySummary& from,
                         entrowatch::v1::EntropySummary* into);

// Values of s with min(1, h / ln V) >= threshold: exact when s counted at
// this threshold (compared as float32), otherwise estimated from the
// histogram, uniform within the bin that straddles the threshold.
double HighEntropyCount(const entrowatch::v1::EntropySummary& s, double threshold);

// Linear-interpolated quantile (as Quantile below) read from `histogram`
// (equal-width bins over [0, log_v]) whose values lie in [min, max]: each
// order statistic is placed uniformly within its bin and clamped to
// [min, max], so the result is within one bin width of the exact quantile.
double HistogramQuantile(absl::Span<const uint64_t> histogram, double log_v, double min, double max,
                         double q);

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
  // Summaries the report carried (validated), pooled with the raw values.
  entrowatch::v1::ReportSummary summary;

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
    // Named scalars: sum and weight over the reports that sent them.
    std::map<std::string, std::pair<double, int64_t>> scalar_sums;
    // Entropy summaries pooled per vocabulary size (bin by bin), and their
    // high-entropy count at options_.high_entropy_threshold.
    std::map<uint32_t, entrowatch::v1::EntropySummary> summaries;
    double summary_high = 0;
  };

  void AddSummary(const entrowatch::v1::ReportSummary& summary, PendingStep& p);
  // Pooled statistics of the raw values and summaries of p into out.
  void FinalizeTokens(PendingStep& p, entrowatch::v1::StepSummary& out) const;

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
