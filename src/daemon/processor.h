#pragma once

// The work behind every report, run on worker threads: compute entropies,
// fold the report into its run's step, finalize steps, update metrics and
// answer with an Ack. Also answers the run queries (GetRun, ListRuns,
// EndRun) and sweeps step timeouts and idle runs. Thread-safe.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "compute/entropy_engine.h"
#include "config/config.h"
#include "console/run_history.h"
#include "entrowatch/v1/entrowatch.pb.h"
#include "export/metrics.h"
#include "ingest/monitor_service.h"
#include "store/durable_store.h"
#include "store/run_registry.h"

namespace entrowatch::daemon {

class ReportProcessor final : public ingest::RunDirectory, public ingest::IngestObserver {
 public:
  // engine, metrics, clock and store (null: in memory only) must outlive the
  // processor. With a store, a report is acknowledged once durable; a report
  // whose write is refused (disk full, store.max_db_bytes, I/O error) is
  // answered UNAVAILABLE and its run is rebuilt from the store, so memory
  // holds nothing that is not on disk and a resend is accepted, not taken
  // for a duplicate.
  ReportProcessor(const config::Config& config, compute::EntropyEngine* engine,
                  exporter::Metrics* metrics, common::Clock* clock,
                  store::DurableStore* store = nullptr);

  // Rebuilds every run from the durable store (before serving).
  absl::Status Restore();
  ReportProcessor(const ReportProcessor&) = delete;
  ReportProcessor& operator=(const ReportProcessor&) = delete;

  // Processes one validated report and returns its Ack. Reports of one
  // (run, rank) must come in order from one thread at a time.
  entrowatch::v1::Ack Process(const entrowatch::v1::Report& report);

  // Finalizes steps past their timeout and forgets idle runs.
  void Sweep();

  // Called (under the run's lock, must not block) after steps of a run were
  // finalized, with its active anomalies and verdict. Set before Start.
  using HealthListener =
      std::function<void(const std::string& run, const std::vector<entrowatch::v1::Anomaly>&,
                         const entrowatch::v1::Verdict&)>;
  void set_health_listener(HealthListener listener) { health_listener_ = std::move(listener); }

  // Receives every finalized step and forgets expired runs (the console's
  // history). Null: none. Set before Start; must outlive the processor.
  void set_history(console::RunHistory* history) { history_ = history; }

  // Applies the run-time changeable parts of a new config (SIGHUP).
  void Reload(const config::Config& config);

  // ingest::RunDirectory
  absl::StatusOr<entrowatch::v1::RunStatus> GetRun(
      const entrowatch::v1::GetRunRequest& request) override;
  entrowatch::v1::ListRunsResponse ListRuns() override;
  absl::StatusOr<entrowatch::v1::RunStatus> EndRun(const std::string& run_id) override;
  // Not kept across a restart: the stored steps are replayed through a
  // fresh analyzer, which finds the incident again.
  absl::StatusOr<entrowatch::v1::RunStatus> EndIncident(const std::string& run_id,
                                                        const std::string& reason) override;

  // ingest::IngestObserver
  void OnReceived(int64_t bytes) override;
  void OnOutcome(const entrowatch::v1::Ack& ack) override;
  void OnStreamShed() override;

 private:
  struct Settings {
    analysis::AggregationOptions aggregation;
    absl::Duration idle_expiry;
    int64_t dedup_window = 0;
    int history_steps = 0;
    bool skip_nonfinite_rows = false;
    config::AnalysisConfig analysis;
  };

  Settings settings() const;
  absl::Status Compute(const entrowatch::v1::Report& report,
                       analysis::ReportContribution* out) const;
  // Moves finalized steps into history, metrics and analysis.
  void Drain(store::RunState& run) ABSL_EXCLUSIVE_LOCKS_REQUIRED(run.mu);
  void FillAck(store::RunState& run, entrowatch::v1::Ack* ack) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(run.mu);
  entrowatch::v1::RunStatus Status(store::RunState& run, int history) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(run.mu);
  void Finish(store::RunState& run) ABSL_EXCLUSIVE_LOCKS_REQUIRED(run.mu);
  // Queues the run's unsaved steps (and the report, if any) for the store.
  std::shared_ptr<store::DurableStore::Pending> Save(store::RunState& run, store::WriteBatch batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(run.mu);
  // Waits for a queued save; a failure is counted (the store logs it).
  absl::Status AwaitSave(const std::shared_ptr<store::DurableStore::Pending>& pending);
  // After a refused save of the given epoch: marks the run stale (once per
  // epoch) and rebuilds it.
  void Refused(store::RunState& run, uint64_t epoch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(run.mu);
  // Rebuilds a stale run from the store; UNAVAILABLE while it cannot be read.
  absl::Status Fresh(store::RunState& run) ABSL_EXCLUSIVE_LOCKS_REQUIRED(run.mu);
  // Replaces the run's state with a stored one (replaying its steps through a
  // fresh analyzer); count_steps: the steps are new to the metrics.
  void Load(store::RunState& run, store::StoredRun stored, bool count_steps)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(run.mu);
  analysis::RunAnalyzer& Analyzer(store::RunState& run) ABSL_EXCLUSIVE_LOCKS_REQUIRED(run.mu);

  compute::EntropyEngine* const engine_;
  exporter::Metrics* const metrics_;
  common::Clock* const clock_;
  store::DurableStore* const store_;
  store::RunRegistry registry_;
  HealthListener health_listener_;
  console::RunHistory* history_ = nullptr;
  mutable absl::Mutex mu_;
  Settings settings_ ABSL_GUARDED_BY(mu_);
};

}  // namespace entrowatch::daemon
