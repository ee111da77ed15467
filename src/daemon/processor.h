#pragma once

// The work behind every report, run on worker threads: finds or opens the
// report's run, computes its entropies (ingest/report_adapter.h) and hands
// the result to the run, which folds it into its step, finalizes steps and
// tells its sinks; answers with the Ack once the change is durable. Also
// answers the run queries (GetRun, ListRuns, EndRun, EndIncident) and sweeps
// step timeouts and idle runs. Thread-safe.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "compute/entropy_engine.h"
#include "config/config.h"
#include "daemon/run.h"
#include "daemon/run_table.h"
#include "entrowatch/v1/entrowatch.pb.h"
#include "export/sink.h"
#include "ingest/monitor_service.h"
#include "ingest/report_adapter.h"
#include "store/durable_store.h"

namespace entrowatch::daemon {

class ReportProcessor final : public ingest::RunDirectory, public ingest::IngestObserver {
 public:
  // engine, sinks, stats, clock and store (null: in memory only) must outlive
  // the processor. Everything that leaves the daemon goes to the sinks (per
  // run) and to stats (daemon-wide). With a store, a report is acknowledged
  // once durable; a report whose write is refused (disk full,
  // store.max_db_bytes, I/O error) is answered UNAVAILABLE and its run is
  // rebuilt from the store, so memory holds nothing that is not on disk and a
  // resend is accepted, not taken for a duplicate.
  ReportProcessor(const config::Config& config, compute::EntropyEngine* engine,
                  std::vector<exporter::Sink*> sinks, exporter::ProcessorStats* stats,
                  common::Clock* clock, store::DurableStore* store = nullptr);
  ReportProcessor(const ReportProcessor&) = delete;
  ReportProcessor& operator=(const ReportProcessor&) = delete;

  // Rebuilds every run from the durable store (before serving).
  absl::Status Restore();

  // Processes one validated report and returns its Ack. Reports of one
  // (run, rank) must come in order from one thread at a time.
  entrowatch::v1::Ack Process(const entrowatch::v1::Report& report);

  // Finalizes steps past their timeout and forgets idle runs.
  void Sweep();

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
    RunSettings run;
    ingest::ContributionOptions contribution;
    absl::Duration idle_expiry;
  };

  Settings settings() const;
  // The run, opened with a RunSink of every sink when new.
  absl::StatusOr<std::shared_ptr<Run>> FindOrOpen(const std::string& run_id);
  // NotFound naming the run when it is not tracked.
  absl::StatusOr<std::shared_ptr<Run>> Find(const std::string& run_id) const;
  absl::StatusOr<analysis::ReportContribution> Compute(const entrowatch::v1::Report& report);
  // Run::AwaitWrite; a refused write is counted (the store logs it).
  absl::Status AwaitWrite(Run& run, const Run::QueuedWrite& write);
  void ExpireIdleRuns();

  compute::EntropyEngine* const engine_;
  const std::vector<exporter::Sink*> sinks_;
  exporter::ProcessorStats* const stats_;
  common::Clock* const clock_;
  store::DurableStore* const store_;
  RunTable runs_;
  mutable absl::Mutex mu_;
  Settings settings_ ABSL_GUARDED_BY(mu_);
};

}  // namespace entrowatch::daemon
