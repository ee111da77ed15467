#pragma once

// One tracked run and the rules it keeps: resend detection (a window of seqs
// per rank), the steps still pending (StepAggregator), the finalized history,
// the health analyzer, finishing, counters, and its side of the durable
// store's protocol (the write epoch, and the rebuild after a refused write).
// Everything that leaves the daemon about the run goes to its RunSinks.
//
// The processor drives a report through Admit (before computing its
// entropies), then Fold or Reject, then AwaitWrite (without the run's lock:
// the report is acknowledged once its write is durable). Every method takes
// the run's lock; thread-safe.

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
#include "common/clock.h"
#include "config/analysis_config.h"
#include "entrowatch/v1/entrowatch.pb.h"
#include "export/sink.h"
#include "store/durable_store.h"

namespace entrowatch::daemon {

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

// The configuration a run follows; a reload hands every run the new one.
struct RunSettings {
  analysis::AggregationOptions aggregation;
  int64_t dedup_window = 65536;  // seqs remembered per rank (runs.dedup_window)
  int history_steps = 0;         // finalized steps kept in memory
  config::AnalysisConfig analysis;
};

class Run {
 public:
  // clock and store (null: in memory only) must outlive the run. sinks were
  // opened for this run; the run owns them until it expires.
  Run(std::string id, const RunSettings& settings,
      std::vector<std::unique_ptr<exporter::RunSink>> sinks, common::Clock* clock,
      store::DurableStore* store);
  Run(const Run&) = delete;
  Run& operator=(const Run&) = delete;

  const std::string& id() const { return id_; }

  // Takes new settings: aggregation options and thresholds at once; the
  // dedup window for ranks seen from now on.
  void ApplySettings(const RunSettings& settings);

  // A changed stored state for the durable store (null without a store, or
  // when nothing changed); pass it to AwaitWrite.
  struct QueuedWrite {
    enum class Counted { kNothing, kAccepted, kLate };
    std::shared_ptr<store::DurableStore::Pending> pending;
    Counted counted = Counted::kNothing;  // the report whose effect it carries
  };

  // First look at a report, before its entropies are computed: marks the run
  // active, rebuilds it after a refused write, refuses a finished run and
  // recognises a resend. True when the report is to be computed and folded
  // in; false when `ack` is complete (a duplicate, or refused with its code).
  bool Admit(const entrowatch::v1::Report& report, entrowatch::v1::Ack* ack);

  // Folds the contribution of an admitted report into its step (late when
  // the step was already finalized), remembers its seq, finalizes the steps
  // it completes, finishes the run on a final report, and fills `ack` with
  // the latest step and the verdict. received: when the daemon got it.
  QueuedWrite Fold(const entrowatch::v1::Report& report, analysis::ReportContribution contribution,
                   absl::Time received, entrowatch::v1::Ack* ack);

  // Counts an admitted report whose entropies could not be computed; `ack`
  // gets the run's latest step and verdict besides the error.
  void Reject(const absl::Status& why, entrowatch::v1::Ack* ack);

  // Waits, without the run's lock, until a queued write is durable. When the
  // store refused it (UNAVAILABLE naming the database): the report it
  // carried counts as rejected, and the run is rebuilt from what the store
  // holds (now, or before its next use if the store cannot be read), so a
  // resend is accepted, not taken for a duplicate.
  absl::Status AwaitWrite(const QueuedWrite& write);

  // Finalizes the steps whose timeout passed.
  QueuedWrite FinalizeTimedOut();

  // Marks the run finished (EndRun), finalizing every pending step, and
  // describes it in `status`. UNAVAILABLE while a run rebuilt after a
  // refused write cannot be read back.
  absl::StatusOr<QueuedWrite> End(int history, entrowatch::v1::RunStatus* status);

  // Accepts the current regime (see RunAnalyzer::EndIncident). Not kept
  // across a restart: the stored steps are replayed through a fresh
  // analyzer, which finds the incident again.
  absl::StatusOr<entrowatch::v1::RunStatus> EndIncident(const std::string& reason, int history);

  // The run as GetRun shows it, with its `history` newest steps.
  entrowatch::v1::RunStatus Describe(int history) const;

  // Whether the run saw no activity during the `idle` before `now`
  // (monotonic).
  bool IdleAt(absl::Duration now, absl::Duration idle) const;

  // Rebuilds the run from the durable store at start-up: its steps are
  // replayed through the analyzer and handed to the sinks as new.
  void RestoreFrom(store::StoredRun stored);

  // The run is forgotten (idle expiry): its sinks end and are destroyed, and
  // its stored state is deleted.
  void Expire();

 private:
  // Queues the run's unsaved steps and state, with `report` when given.
  QueuedWrite QueueWrite(store::WriteBatch batch, QueuedWrite::Counted counted)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Folds a contribution into its step, counts the report and tells the
  // sinks. False when the step was already finalized (late).
  bool AddToStep(analysis::ReportContribution contribution, absl::Time received)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // What the store keeps of an accepted report.
  store::WriteBatch ReportWrite(const entrowatch::v1::Report& report,
                                const analysis::ReportContribution& contribution) const;
  // After a refused write of `epoch`: the first to learn of it starts the
  // next epoch and marks the run stale; then the run is rebuilt.
  void StartNewEpoch(uint64_t epoch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Rebuilds a stale run from the store; UNAVAILABLE while it cannot be read.
  absl::Status RebuildIfStale() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Replaces the state with a stored one, replaying its steps to the sinks.
  void ReplaceWith(store::StoredRun stored) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RememberSeq(uint32_t rank, uint64_t seq) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves finalized steps into the history, the analyzer and the sinks.
  void DrainFinalized() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AddToHistory(entrowatch::v1::StepSummary step) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Finish() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PublishVerdict(const std::vector<entrowatch::v1::Anomaly>& newly_fired)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FillAck(entrowatch::v1::Ack* ack) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  entrowatch::v1::RunStatus DescribeLocked(int history) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Refuse(const absl::Status& why, entrowatch::v1::Ack* ack) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Created with the run's resolved thresholds on first use.
  analysis::RunAnalyzer& Analyzer() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string id_;
  common::Clock* const clock_;
  store::DurableStore* const store_;
  mutable absl::Mutex mu_;
  RunSettings settings_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<exporter::RunSink>> sinks_ ABSL_GUARDED_BY(mu_);
  analysis::StepAggregator aggregator_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<analysis::RunAnalyzer> analyzer_ ABSL_GUARDED_BY(mu_);
  std::deque<entrowatch::v1::StepSummary> history_ ABSL_GUARDED_BY(mu_);  // oldest first
  std::map<uint32_t, SeqWindow> seen_ ABSL_GUARDED_BY(mu_);               // by rank
  struct Counters {
    uint64_t accepted = 0;
    uint64_t rejected = 0;
    uint64_t duplicate = 0;
    uint64_t late = 0;
  };
  Counters counters_ ABSL_GUARDED_BY(mu_);
  uint32_t world_size_ ABSL_GUARDED_BY(mu_) = 1;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time last_report_time_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Duration last_activity_ ABSL_GUARDED_BY(mu_);  // monotonic
  // Finalized steps not yet handed to the durable store.
  std::vector<entrowatch::v1::StepSummary> unsaved_ ABSL_GUARDED_BY(mu_);
  // Generation of this state for the durable store (WriteBatch::epoch).
  uint64_t store_epoch_ ABSL_GUARDED_BY(mu_) = 0;
  // A write was refused after this state took its changes in: the state is
  // rebuilt from the store before it is used again.
  bool stale_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace entrowatch::daemon
