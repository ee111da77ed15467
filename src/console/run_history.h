#pragma once

// The console's per-run history: enough to draw a whole run at a bounded
// cost. The newest max_points/2 steps are kept at full resolution; when the
// history reaches max_points, its older half is merged pairwise into buckets
// (step-weighted means stamped with the bucket's last step), so a bucket's
// width doubles each time it is merged again and a run of S steps costs
// O(max_points) memory and O(1) amortized time per step. Per-head entropies
// are kept for the newest head_points points only; per-rank figures are not
// kept. Also the run's health-state spans and every anomaly it fired.
// Thread-safe.

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "console/console.pb.h"
#include "entrowatch/v1/entrowatch.pb.h"

namespace entrowatch::console {

struct HistoryOptions {
  int max_points = 2048;       // points per run, >= 16
  int head_points = 256;       // newest points that keep per-head entropies
  int max_state_spans = 1024;  // oldest dropped beyond
  int max_anomalies = 512;     // oldest dropped beyond
};

class RunHistory {
 public:
  explicit RunHistory(const HistoryOptions& options);
  RunHistory(const RunHistory&) = delete;
  RunHistory& operator=(const RunHistory&) = delete;

  // One finalized step of a run, in step order, with the run's verdict after
  // it and the anomalies it fired. A step at or below the last recorded one is
  // ignored (a run rebuilt from the durable store replays its steps).
  void Record(const std::string& run, const entrowatch::v1::StepSummary& step,
              const entrowatch::v1::Verdict& verdict,
              absl::Span<const entrowatch::v1::Anomaly> fired);

  // Drops a run (it expired).
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
  struct Point {
    entrowatch::v1::StepSummary summary;
    uint64_t width = 1;  // steps merged into it
  };
  struct Run {
    absl::Mutex mu;
    std::deque<Point> points ABSL_GUARDED_BY(mu);
    std::deque<entrowatch::v1::Verdict> states ABSL_GUARDED_BY(mu);
    std::deque<entrowatch::v1::Anomaly> anomalies ABSL_GUARDED_BY(mu);
    uint64_t steps_recorded ABSL_GUARDED_BY(mu) = 0;
    bool any ABSL_GUARDED_BY(mu) = false;
    uint64_t last_step ABSL_GUARDED_BY(mu) = 0;
  };

  std::shared_ptr<Run> Find(const std::string& run) const;
  void Compact(Run& run) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(run.mu);
  static int64_t Bytes(const Run& run) ABSL_EXCLUSIVE_LOCKS_REQUIRED(run.mu);

  const HistoryOptions options_;
  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<Run>> runs_ ABSL_GUARDED_BY(mu_);
};

// Merges `newer` (width w_newer) into `older` (width w_older): step-weighted
// means, sums of counts, the newer step number and time, the larger max logit.
void MergeInto(entrowatch::v1::StepSummary* older, uint64_t w_older,
               const entrowatch::v1::StepSummary& newer, uint64_t w_newer);

}  // namespace entrowatch::console
