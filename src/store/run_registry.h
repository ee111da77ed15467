#pragma once

// The state of every tracked run, in memory: step aggregation, the finalized
// step history, resend detection and counters. Bounded: at most max_runs
// runs, history_steps steps each, dedup_window seqs per (run, rank).

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "analysis/health/run_analyzer.h"
#include "analysis/step_aggregator.h"
#include "entrowatch/v1/entrowatch.pb.h"

namespace entrowatch::store {

// The seqs recently seen from one (run, rank). Seqs older than the window
// (below the lowest remembered one once the window is full) count as seen.
class SeqWindow {
 public:
  explicit SeqWindow(int64_t capacity) : capacity_(capacity) {}
  bool Contains(uint64_t seq) const;
  void Insert(uint64_t seq);

 private:
  int64_t capacity_;
  std::set<uint64_t> recent_;
  bool evicted_ = false;
  uint64_t floor_ = 0;  // with evicted_: every seq <= floor_ counts as seen
};

struct RunCounters {
  uint64_t accepted = 0;
  uint64_t rejected = 0;
  uint64_t duplicate = 0;
  uint64_t late = 0;
};

// One run. Fields are guarded by mu; the id is immutable.
struct RunState {
  RunState(std::string run_id, analysis::AggregationOptions options)
      : id(std::move(run_id)), aggregator(options) {}

  const std::string id;
  absl::Mutex mu;
  analysis::StepAggregator aggregator ABSL_GUARDED_BY(mu);
  std::deque<entrowatch::v1::StepSummary> history ABSL_GUARDED_BY(mu);  // oldest first
  std::map<uint32_t, SeqWindow> seen ABSL_GUARDED_BY(mu);               // by rank
  RunCounters counters ABSL_GUARDED_BY(mu);
  uint32_t world_size ABSL_GUARDED_BY(mu) = 1;
  bool finished ABSL_GUARDED_BY(mu) = false;
  absl::Time last_report_time ABSL_GUARDED_BY(mu) = absl::InfinitePast();
  absl::Duration last_activity ABSL_GUARDED_BY(mu);  // monotonic
  // Finalized steps not yet handed to the durable store.
  std::vector<entrowatch::v1::StepSummary> unsaved ABSL_GUARDED_BY(mu);
  // Generation of this state for the durable store (WriteBatch::epoch).
  uint64_t store_epoch ABSL_GUARDED_BY(mu) = 0;
  // A write was refused after this state took its changes in: the state is
  // rebuilt from the store before it is used again.
  bool stale ABSL_GUARDED_BY(mu) = false;
  // Created with the run's resolved thresholds on its first finalized step.
  std::unique_ptr<analysis::RunAnalyzer> analyzer ABSL_GUARDED_BY(mu);
};

// Thread-safe.
class RunRegistry {
 public:
  explicit RunRegistry(int max_runs) : max_runs_(max_runs) {}
  RunRegistry(const RunRegistry&) = delete;
  RunRegistry& operator=(const RunRegistry&) = delete;

  // The run, created when new. ResourceExhausted when max_runs are tracked.
  absl::StatusOr<std::shared_ptr<RunState>> GetOrCreate(const std::string& run_id,
                                                        const analysis::AggregationOptions& options,
                                                        bool* created);
  // nullptr when unknown.
  std::shared_ptr<RunState> Find(const std::string& run_id) const;
  // Every run, ordered by id.
  std::vector<std::shared_ptr<RunState>> All() const;
  // Removes runs whose last activity is older than now - idle; returns them.
  std::vector<std::shared_ptr<RunState>> ExpireIdle(absl::Duration now, absl::Duration idle);
  size_t size() const;
  void set_max_runs(int max_runs);

 private:
  mutable absl::Mutex mu_;
  int max_runs_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<RunState>> runs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace entrowatch::store
