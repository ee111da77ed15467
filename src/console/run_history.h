#pragma once

// The console's per-run history: enough to draw a whole run at a bounded
// cost. The newest max_points/4 steps are kept at full resolution; older
// steps go into buckets of one width (step-weighted means stamped with the
// bucket's last step), and when those reach 3/4 of max_points they are merged
// pairwise, so the width doubles as the run grows. A run of any length is
// drawn from at most max_points points at an even resolution, at O(1)
// amortized cost per step. Per-head entropies are kept for the newest
// head_points steps only (at most max_points/4); per-rank figures are not
// kept. Also the run's health-state spans and every anomaly it fired.
// A sink: a run's RunSink records its finalized steps and forgets the run
// when it expires. Thread-safe.

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "console/console.pb.h"
#include "entrowatch/v1/entrowatch.pb.h"
#include "export/sink.h"

namespace entrowatch::console {

struct HistoryOptions {
  int max_points = 2048;       // points per run, >= 16
  int head_points = 256;       // newest steps that keep per-head entropies
  int max_state_spans = 1024;  // oldest dropped beyond
  int max_anomalies = 512;     // oldest dropped beyond
};

class RunHistory final : public exporter::Sink {
 public:
  explicit RunHistory(const HistoryOptions& options);
  RunHistory(const RunHistory&) = delete;
  RunHistory& operator=(const RunHistory&) = delete;

  // Sink: OnStepFinalized records as Record() does (replayed steps the
  // history already holds are ignored), OnRunEnded(kExpired) forgets the run.
  // A run opened but without a recorded step is NOT_FOUND below.
  std::unique_ptr<exporter::RunSink> Open(const std::string& run_id) override;

  // One finalized step of a run, in step order, with the run's verdict after
  // it and the anomalies it fired. A step at or below the last recorded one is
  // ignored (a run rebuilt from the durable store replays its steps).
  void Record(const std::string& run, const entrowatch::v1::StepSummary& step,
              const entrowatch::v1::Verdict& verdict,
              absl::Span<const entrowatch::v1::Anomaly> fired);

  // Drops a run (it expired); what a RunSink still open for it records
  // afterwards is not kept.
  void Forget(const std::string& run);

  // The run's points, oldest first; the newest `limit` when limit > 0.
  // NOT_FOUND for a run never recorded or forgotten.
  absl::StatusOr<std::vector<entrowatch::v1::StepSummary>> Points(const std::string& run,
                                                                  int limit) const;

  // The run's state spans and anomaly log. NOT_FOUND as above.
  absl::StatusOr<v1::RunTimeline> Timeline(const std::string& run) const;

  // Bytes held for a run (0 when unknown).
  int64_t BytesUsed(const std::string& run) const;

 private:
  // One step, or a bucket of steps, in about a quarter of a StepSummary's
  // memory: plain doubles, floats per layer and head, no per-rank figures.
  struct Point {
    uint64_t step = 0;   // the last step it covers
    uint64_t width = 1;  // steps merged into it
    uint64_t token_count = 0;
    uint64_t surprisal_count = 0;
    uint64_t generated_token_count = 0;
    double entropy_mean = 0;
    double entropy_p10 = 0;
    double entropy_p50 = 0;
    double entropy_p90 = 0;
    double normalized_entropy_mean = 0;
    double high_entropy_ratio = 0;
    double top1_prob_mean = 0;
    double surprisal_mean = 0;
    double grad_norm = 0;
    double loss = 0;
    double learning_rate = 0;
    double generated_entropy_mean = 0;
    int64_t finalized_nanos = 0;
    uint32_t ranks_reported = 0;
    uint32_t world_size = 0;
    uint32_t grad_norm_disagreements = 0;
    entrowatch::v1::Phase phase = entrowatch::v1::PHASE_UNSPECIFIED;
    bool complete = false;
    bool has_grad_norm = false;
    bool has_loss = false;
    std::vector<uint32_t> layer_ids;
    std::vector<float> layer_mean;
    std::vector<float> layer_variance;
    std::vector<float> layer_max_logit;  // NaN: none reported
    std::vector<uint32_t> head_counts;   // per layer; empty once aged out
    std::vector<float> heads;            // per layer, head_counts[i] values each
    std::vector<std::pair<std::string, double>> scalars;
  };
  static Point FromSummary(const entrowatch::v1::StepSummary& step);
  static entrowatch::v1::StepSummary ToSummary(const Point& point);
  // Folds `newer` into `older`: step-weighted means, sums of counts, the
  // newer step number and time, the larger max logit.
  static void Merge(Point* older, const Point& newer);
  static int64_t PointBytes(const Point& point);

  struct Run {
    absl::Mutex mu;
    std::deque<Point> buckets ABSL_GUARDED_BY(mu);  // older steps, oldest first
    uint64_t bucket_width ABSL_GUARDED_BY(mu) = 1;  // steps per full bucket
    std::deque<Point> recent ABSL_GUARDED_BY(mu);   // newest steps, one each
    std::deque<entrowatch::v1::Verdict> states ABSL_GUARDED_BY(mu);
    std::deque<entrowatch::v1::Anomaly> anomalies ABSL_GUARDED_BY(mu);
    uint64_t steps_recorded ABSL_GUARDED_BY(mu) = 0;
    bool any ABSL_GUARDED_BY(mu) = false;
    uint64_t last_step ABSL_GUARDED_BY(mu) = 0;
  };

  class HistoryRunSink;

  std::shared_ptr<Run> Find(const std::string& run) const;
  std::shared_ptr<Run> FindOrAdd(const std::string& run);
  void RecordInto(Run& run, const entrowatch::v1::StepSummary& step,
                  const entrowatch::v1::Verdict& verdict,
                  absl::Span<const entrowatch::v1::Anomaly> fired);
  // Moves the oldest recent step into the buckets, halving them when full.
  void Age(Run& run) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(run.mu);
  static int64_t Bytes(const Run& run) ABSL_EXCLUSIVE_LOCKS_REQUIRED(run.mu);

  const HistoryOptions options_;
  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<Run>> runs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace entrowatch::console
