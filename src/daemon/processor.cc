#include "daemon/processor.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "export/metrics.h"
#include "spdlog/spdlog.h"

namespace entrowatch::daemon {
namespace {

using entrowatch::v1::Ack;
using entrowatch::v1::Report;
using entrowatch::v1::RunStatus;

constexpr int kDefaultHistory = 64;

void SetError(const absl::Status& status, Ack* ack) {
  ack->set_code(static_cast<int>(status.code()));
  ack->set_message(std::string(status.message()));
}

}  // namespace

ReportProcessor::ReportProcessor(const config::Config& config, compute::EntropyEngine* engine,
                                 std::vector<exporter::Sink*> sinks,
                                 exporter::ProcessorStats* stats, common::Clock* clock,
                                 store::DurableStore* store)
    : engine_(engine),
      sinks_(std::move(sinks)),
      stats_(stats),
      clock_(clock),
      store_(store),
      runs_(config.runs.max_runs) {
  Reload(config);
}

void ReportProcessor::Reload(const config::Config& config) {
  Settings s;
  s.run.aggregation.high_entropy_threshold = config.aggregation.high_entropy_threshold;
  s.run.aggregation.step_timeout = absl::Seconds(config.aggregation.step_timeout_seconds);
  s.run.dedup_window = config.runs.dedup_window;
  s.run.history_steps = config.aggregation.history_steps;
  s.run.analysis = config.analysis;
  s.contribution.skip_nonfinite_rows = config.ingest.skip_nonfinite_rows;
  s.idle_expiry = absl::Seconds(config.runs.idle_expiry_seconds);
  runs_.set_max_runs(config.runs.max_runs);
  {
    absl::MutexLock lock(&mu_);
    settings_ = s;
  }
  if (store_ != nullptr) {
    store::StoreLimits limits;
    limits.retention_steps = config.store.retention_steps;
    // One seq more than the window, so a restored window knows its floor.
    limits.seqs_per_rank = config.runs.dedup_window + 1;
    limits.max_db_bytes = config.store.max_db_bytes;
    if (absl::Status status = store_->SetLimits(limits); !status.ok()) {
      spdlog::error("{}", std::string(status.message()));
    }
  }
  for (const auto& run : runs_.All()) {
    run->ApplySettings(s.run);
  }
}

ReportProcessor::Settings ReportProcessor::settings() const {
  absl::MutexLock lock(&mu_);
  return settings_;
}

absl::StatusOr<std::shared_ptr<Run>> ReportProcessor::FindOrOpen(const std::string& run_id) {
  const RunSettings s = settings().run;
  bool created = false;
  auto open = [&] {
    std::vector<std::unique_ptr<exporter::RunSink>> run_sinks;
    for (exporter::Sink* sink : sinks_) {
      run_sinks.push_back(sink->Open(run_id));
    }
    return std::make_unique<Run>(run_id, s, std::move(run_sinks), clock_, store_);
  };
  absl::StatusOr<std::shared_ptr<Run>> run = runs_.FindOrAdd(run_id, open, &created);
  if (created) {
    stats_->SetRuns(static_cast<int64_t>(runs_.size()));
  }
  return run;
}

absl::StatusOr<std::shared_ptr<Run>> ReportProcessor::Find(const std::string& run_id) const {
  std::shared_ptr<Run> run = runs_.Find(run_id);
  if (run == nullptr) {
    return absl::NotFoundError(absl::StrCat("unknown run '", run_id, "'"));
  }
  return run;
}

absl::StatusOr<analysis::ReportContribution> ReportProcessor::Compute(const Report& report) {
  ingest::ComputeCost cost;
  absl::StatusOr<analysis::ReportContribution> contribution =
      ingest::ComputeContribution(report, *engine_, settings().contribution, &cost);
  for (const ingest::ComputeCost::EngineCall& call : cost.engine_calls) {
    stats_->ComputeSeconds(call.kind, call.seconds);
  }
  if (engine_->degraded()) {
    stats_->SetComputeDegraded(true);
  }
  if (cost.skipped_rows > 0) {
    stats_->RowsSkipped("nonfinite", cost.skipped_rows);
  }
  return contribution;
}

Ack ReportProcessor::Process(const Report& report) {
  Ack ack = ingest::AckFor(report);
  absl::StatusOr<std::shared_ptr<Run>> run = FindOrOpen(report.run_id());
  if (!run.ok()) {
    SetError(run.status(), &ack);
    return ack;
  }
  const absl::Time received = clock_->Wall();
  if (!(*run)->Admit(report, &ack)) {
    return ack;
  }
  absl::StatusOr<analysis::ReportContribution> contribution = Compute(report);
  if (!contribution.ok()) {
    (*run)->Reject(contribution.status(), &ack);
    return ack;
  }
  const Run::QueuedWrite write = (*run)->Fold(report, *std::move(contribution), received, &ack);
  if (absl::Status saved = AwaitWrite(**run, write); !saved.ok()) {
    ack = ingest::AckFor(report);  // no step or verdict from the refused state
    SetError(saved, &ack);
  }
  return ack;
}

absl::Status ReportProcessor::AwaitWrite(Run& run, const Run::QueuedWrite& write) {
  absl::Status status = run.AwaitWrite(write);
  if (!status.ok()) {
    stats_->StoreFailure(store::FailureReason(status));
    stats_->SetStoreBytes(store_->DiskBytes());
  }
  return status;
}

absl::Status ReportProcessor::Restore() {
  if (store_ == nullptr) {
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(std::vector<store::StoredRun> stored,
                   store_->LoadAll(settings().run.dedup_window + 1));
  for (store::StoredRun& one : stored) {
    ASSIGN_OR_RETURN(std::shared_ptr<Run> run, FindOrOpen(one.run_id));
    run->RestoreFrom(std::move(one));
  }
  stats_->SetRuns(static_cast<int64_t>(runs_.size()));
  stats_->SetStoreBytes(store_->DiskBytes());
  spdlog::info("restored {} runs from {}", stored.size(), store_->path());
  return absl::OkStatus();
}

absl::StatusOr<RunStatus> ReportProcessor::GetRun(const entrowatch::v1::GetRunRequest& request) {
  ASSIGN_OR_RETURN(std::shared_ptr<Run> run, Find(request.run_id()));
  return run->Describe(request.history() == 0
                           ? kDefaultHistory
                           : static_cast<int>(std::min<uint32_t>(request.history(), 1 << 20)));
}

entrowatch::v1::ListRunsResponse ReportProcessor::ListRuns() {
  entrowatch::v1::ListRunsResponse out;
  for (const auto& run : runs_.All()) {
    *out.add_runs() = run->Describe(0);
  }
  return out;
}

absl::StatusOr<RunStatus> ReportProcessor::EndRun(const std::string& run_id) {
  ASSIGN_OR_RETURN(std::shared_ptr<Run> run, Find(run_id));
  RunStatus status;
  ASSIGN_OR_RETURN(const Run::QueuedWrite write, run->End(kDefaultHistory, &status));
  RETURN_IF_ERROR(AwaitWrite(*run, write));
  return status;
}

absl::StatusOr<RunStatus> ReportProcessor::EndIncident(const std::string& run_id,
                                                       const std::string& reason) {
  ASSIGN_OR_RETURN(std::shared_ptr<Run> run, Find(run_id));
  return run->EndIncident(reason, kDefaultHistory);
}

void ReportProcessor::Sweep() {
  for (const auto& run : runs_.All()) {
    // A refused write leaves the steps' contributions stored: they finalize
    // again.
    AwaitWrite(*run, run->FinalizeTimedOut()).IgnoreError();
  }
  if (store_ != nullptr) {
    stats_->SetStoreBytes(store_->DiskBytes());
  }
  ExpireIdleRuns();
}

void ReportProcessor::ExpireIdleRuns() {
  const std::vector<std::shared_ptr<Run>> expired =
      runs_.RemoveIdle(clock_->Monotonic(), settings().idle_expiry);
  for (const auto& run : expired) {
    run->Expire();
  }
  if (!expired.empty()) {
    stats_->SetRuns(static_cast<int64_t>(runs_.size()));
  }
}

void ReportProcessor::OnReceived(int64_t bytes) { stats_->IngestBytes(bytes); }

void ReportProcessor::OnOutcome(const Ack& ack) {
  stats_->ReportOutcome(exporter::ResultLabel(ack));
}

void ReportProcessor::OnStreamShed() { stats_->StreamShed(); }

}  // namespace entrowatch::daemon
