#include "daemon/run.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "analysis/contribution_proto.h"
#include "google/protobuf/util/time_util.h"
#include "spdlog/spdlog.h"

namespace entrowatch::daemon {
namespace {

using entrowatch::v1::Ack;
using entrowatch::v1::Anomaly;
using entrowatch::v1::Report;
using entrowatch::v1::RunStatus;
using entrowatch::v1::StepSummary;
using google::protobuf::util::TimeUtil;

google::protobuf::Timestamp TimestampOf(absl::Time t) {
  return TimeUtil::NanosecondsToTimestamp(absl::ToInt64Nanoseconds(t - absl::UnixEpoch()));
}

}  // namespace

bool SeqWindow::Contains(uint64_t seq) const {
  return (evicted_ && seq <= floor_) || recent_.count(seq) != 0;
}

void SeqWindow::Insert(uint64_t seq) {
  recent_.insert(seq);
  while (static_cast<int64_t>(recent_.size()) > capacity_) {
    floor_ = *recent_.begin();
    evicted_ = true;
    recent_.erase(recent_.begin());
  }
}

Run::Run(std::string id, const RunSettings& settings,
         std::vector<std::unique_ptr<exporter::RunSink>> sinks, common::Clock* clock,
         store::DurableStore* store)
    : id_(std::move(id)),
      clock_(clock),
      store_(store),
      settings_(settings),
      sinks_(std::move(sinks)),
      aggregator_(settings.aggregation),
      last_activity_(clock->Monotonic()) {}

void Run::ApplySettings(const RunSettings& settings) {
  absl::MutexLock lock(&mu_);
  settings_ = settings;
  aggregator_.set_options(settings.aggregation);
  if (analyzer_ != nullptr) {
    analyzer_->UpdateThresholds(analysis::ResolveThresholds(settings.analysis, id_),
                                settings.analysis.rules);
  }
}

analysis::RunAnalyzer& Run::Analyzer() {
  if (analyzer_ == nullptr) {
    analyzer_ = std::make_unique<analysis::RunAnalyzer>(
        analysis::ResolveThresholds(settings_.analysis, id_), settings_.analysis.rules);
  }
  return *analyzer_;
}

bool Run::Admit(const Report& report, Ack* ack) {
  absl::MutexLock lock(&mu_);
  last_activity_ = clock_->Monotonic();
  if (absl::Status rebuilt = RebuildIfStale(); !rebuilt.ok()) {
    Refuse(rebuilt, ack);
    return false;
  }
  if (finished_) {
    Refuse(absl::FailedPreconditionError(
               absl::StrCat("run '", id_, "' was marked finished; use a new run_id")),
           ack);
    return false;
  }
  auto seen = seen_.find(report.rank());
  if (report.seq() != 0 && seen != seen_.end() && seen->second.Contains(report.seq())) {
    counters_.duplicate++;
    ack->set_duplicate(true);
    FillAck(ack);
    return false;
  }
  return true;
}

Run::QueuedWrite Run::Fold(const Report& report, analysis::ReportContribution contribution,
                           absl::Time received, Ack* ack) {
  absl::MutexLock lock(&mu_);
  // Another report of the run may have been refused meanwhile.
  if (absl::Status rebuilt = RebuildIfStale(); !rebuilt.ok()) {
    Refuse(rebuilt, ack);
    return {};
  }
  if (report.seq() != 0) {
    RememberSeq(report.rank(), report.seq());
  }
  last_report_time_ = received;
  world_size_ = contribution.world_size;
  store::WriteBatch batch;
  if (store_ != nullptr) {
    batch = ReportWrite(report, contribution);
  }
  const bool accepted = AddToStep(std::move(contribution), received);
  if (!accepted) {
    ack->set_late(true);
    batch = store::WriteBatch();  // a late report changes nothing stored
  }
  DrainFinalized();
  if (report.final()) {
    Finish();
  }
  FillAck(ack);
  return QueueWrite(std::move(batch),
                    accepted ? QueuedWrite::Counted::kAccepted : QueuedWrite::Counted::kLate);
}

bool Run::AddToStep(analysis::ReportContribution contribution, absl::Time received) {
  const std::vector<float> entropies = contribution.entropies;
  const entrowatch::v1::Phase phase = contribution.phase;
  const bool accepted = aggregator_.Add(std::move(contribution), clock_->Monotonic());
  (accepted ? counters_.accepted : counters_.late)++;
  for (auto& sink : sinks_) {
    // A late report was seen, but its entropies are not part of any step.
    sink->OnReportAccepted(received, phase,
                           accepted ? absl::MakeConstSpan(entropies) : absl::Span<const float>());
  }
  return accepted;
}

store::WriteBatch Run::ReportWrite(const Report& report,
                                   const analysis::ReportContribution& contribution) const {
  store::WriteBatch batch;
  batch.contribution = analysis::ToProto(contribution);
  batch.has_report = true;
  batch.rank = report.rank();
  batch.seq = report.seq();
  return batch;
}

void Run::Reject(const absl::Status& why, Ack* ack) {
  absl::MutexLock lock(&mu_);
  FillAck(ack);
  Refuse(why, ack);
}

void Run::Refuse(const absl::Status& why, Ack* ack) {
  counters_.rejected++;
  ack->set_code(static_cast<int>(why.code()));
  ack->set_message(std::string(why.message()));
}

Run::QueuedWrite Run::QueueWrite(store::WriteBatch batch, QueuedWrite::Counted counted) {
  if (store_ == nullptr) {
    return {};
  }
  batch.run_id = id_;
  batch.epoch = store_epoch_;
  batch.world_size = world_size_;
  batch.finished = finished_;
  batch.last_report_time = last_report_time_;
  batch.finalized.swap(unsaved_);
  return {store_->Enqueue(std::move(batch)), counted};
}

absl::Status Run::AwaitWrite(const QueuedWrite& write) {
  if (write.pending == nullptr) {
    return absl::OkStatus();
  }
  absl::Status status = store_->Wait(write.pending);
  if (status.ok()) {
    return status;
  }
  absl::MutexLock lock(&mu_);
  if (write.counted == QueuedWrite::Counted::kAccepted) {
    counters_.accepted--;
  } else if (write.counted == QueuedWrite::Counted::kLate) {
    counters_.late--;
  }
  if (write.counted != QueuedWrite::Counted::kNothing) {
    counters_.rejected++;
  }
  // Finalized steps of the refused write finalize again from their
  // contributions, which the store still holds.
  StartNewEpoch(write.pending->batch.epoch);
  return status;
}

void Run::StartNewEpoch(uint64_t epoch) {
  // The store voided every queued batch of this epoch; the first to learn
  // of it starts the next one.
  if (store_epoch_ <= epoch) {
    store_epoch_ = epoch + 1;
    stale_ = true;
  }
  RebuildIfStale().IgnoreError();  // else retried before the run's next use
}

absl::Status Run::RebuildIfStale() {
  if (!stale_) {
    return absl::OkStatus();
  }
  auto stored = store_->LoadRun(id_, settings_.dedup_window + 1);
  if (!stored.ok() && !absl::IsNotFound(stored.status())) {
    return absl::UnavailableError(absl::StrCat(
        "run '", id_, "' must be reloaded after a refused write: ", stored.status().message()));
  }
  store::StoredRun nothing;
  nothing.run_id = id_;
  ReplaceWith(stored.ok() ? *std::move(stored) : std::move(nothing));
  stale_ = false;
  return absl::OkStatus();
}

void Run::ReplaceWith(store::StoredRun stored) {
  const absl::Duration now = clock_->Monotonic();
  aggregator_.Reset();
  history_.clear();
  seen_.clear();
  unsaved_.clear();
  analyzer_.reset();
  world_size_ = stored.world_size;
  finished_ = stored.finished;
  last_report_time_ = stored.last_report_time;
  last_activity_ = now;
  for (const auto& [rank, seqs] : stored.seqs) {
    for (uint64_t seq : seqs) {
      RememberSeq(rank, seq);
    }
  }
  // Replaying the finalized steps rebuilds baselines, states and detectors.
  analysis::RunAnalyzer& analyzer = Analyzer();
  for (StepSummary& step : stored.steps) {
    analyzer.Observe(step);
    const std::vector<Anomaly> fired = analyzer.NewlyFired();
    for (auto& sink : sinks_) {
      sink->OnStepFinalized({&step, &analyzer.verdict(), &fired, /*replayed=*/true});
    }
    aggregator_.RestoreFinalized(step.step());
    AddToHistory(std::move(step));
  }
  for (const store::v1::Contribution& c : stored.pending) {
    aggregator_.Add(analysis::FromProto(c), now);
  }
  PublishVerdict({});
}

void Run::RestoreFrom(store::StoredRun stored) {
  absl::MutexLock lock(&mu_);
  ReplaceWith(std::move(stored));
  for (auto& sink : sinks_) {
    if (last_report_time_ != absl::InfinitePast()) {
      sink->OnReportAccepted(last_report_time_, entrowatch::v1::PHASE_UNSPECIFIED, {});
    }
    if (finished_) {
      sink->OnRunEnded(exporter::RunEnd::kFinished);
    }
  }
}

void Run::RememberSeq(uint32_t rank, uint64_t seq) {
  seen_.try_emplace(rank, settings_.dedup_window).first->second.Insert(seq);
}

void Run::AddToHistory(StepSummary step) {
  history_.push_back(std::move(step));
  while (static_cast<int>(history_.size()) > settings_.history_steps) {
    history_.pop_front();
  }
}

void Run::DrainFinalized() {
  std::vector<StepSummary> steps = aggregator_.TakeFinalized();
  if (steps.empty()) {
    return;
  }
  analysis::RunAnalyzer& analyzer = Analyzer();
  std::vector<Anomaly> fired;
  for (StepSummary& step : steps) {
    *step.mutable_finalized_time() = TimestampOf(clock_->Wall());
    analyzer.Observe(step);
    const std::vector<Anomaly> newly_fired = analyzer.NewlyFired();
    for (auto& sink : sinks_) {
      sink->OnStepFinalized({&step, &analyzer.verdict(), &newly_fired});
    }
    fired.insert(fired.end(), newly_fired.begin(), newly_fired.end());
    if (store_ != nullptr) {
      unsaved_.push_back(step);
    }
    AddToHistory(std::move(step));
  }
  PublishVerdict(fired);
}

void Run::PublishVerdict(const std::vector<Anomaly>& newly_fired) {
  analysis::RunAnalyzer& analyzer = Analyzer();
  const std::vector<Anomaly> active = analyzer.ActiveAnomalies();
  for (auto& sink : sinks_) {
    sink->OnVerdict(analyzer.verdict(), active, newly_fired);
  }
}

void Run::Finish() {
  aggregator_.FinalizeAll();
  DrainFinalized();
  finished_ = true;
  for (auto& sink : sinks_) {
    sink->OnRunEnded(exporter::RunEnd::kFinished);
  }
}

Run::QueuedWrite Run::FinalizeTimedOut() {
  absl::MutexLock lock(&mu_);
  if (!RebuildIfStale().ok()) {
    return {};  // still stale; retried at the next sweep
  }
  aggregator_.Sweep(clock_->Monotonic());
  DrainFinalized();
  if (unsaved_.empty()) {
    return {};
  }
  return QueueWrite(store::WriteBatch(), QueuedWrite::Counted::kNothing);
}

absl::StatusOr<Run::QueuedWrite> Run::End(int history, RunStatus* status) {
  absl::MutexLock lock(&mu_);
  if (absl::Status rebuilt = RebuildIfStale(); !rebuilt.ok()) {
    return rebuilt;
  }
  if (!finished_) {
    Finish();
  }
  last_activity_ = clock_->Monotonic();
  *status = DescribeLocked(history);
  return QueueWrite(store::WriteBatch(), QueuedWrite::Counted::kNothing);
}

absl::StatusOr<RunStatus> Run::EndIncident(const std::string& reason, int history) {
  absl::MutexLock lock(&mu_);
  if (absl::Status rebuilt = RebuildIfStale(); !rebuilt.ok()) {
    return rebuilt;
  }
  analysis::RunAnalyzer& analyzer = Analyzer();
  spdlog::info("run {}: incident ended at step {} ({} state, {} active anomalies){}{}", id_,
               analyzer.verdict().step(),
               entrowatch::v1::HealthState_Name(analyzer.verdict().state()),
               analyzer.ActiveAnomalies().size(), reason.empty() ? "" : ": ", reason);
  analyzer.EndIncident(reason);
  PublishVerdict({});
  return DescribeLocked(history);
}

void Run::FillAck(Ack* ack) const {
  if (!history_.empty()) {
    *ack->mutable_latest_step() = history_.back();
  }
  if (analyzer_ == nullptr) {
    return;
  }
  *ack->mutable_verdict() = analyzer_->verdict();
  const Anomaly* worst = nullptr;
  for (auto& anomaly : analyzer_->ActiveAnomalies()) {
    *ack->add_anomalies() = std::move(anomaly);
  }
  for (const auto& anomaly : ack->anomalies()) {
    if (worst == nullptr || anomaly.severity() > worst->severity()) {
      worst = &anomaly;
    }
  }
  // The most severe active anomaly says what to do; otherwise the state does.
  ack->set_recommended_action(worst != nullptr ? worst->recommended_action()
                                               : ack->verdict().recommended_action());
}

RunStatus Run::Describe(int history) const {
  absl::MutexLock lock(&mu_);
  return DescribeLocked(history);
}

RunStatus Run::DescribeLocked(int history) const {
  RunStatus out;
  out.set_run_id(id_);
  if (aggregator_.has_finalized()) {
    out.set_last_step(aggregator_.max_finalized_step());
  }
  if (!history_.empty()) {
    *out.mutable_latest() = history_.back();
  }
  const int size = static_cast<int>(history_.size());
  for (int i = size - std::min(history, size); i < size; ++i) {
    *out.add_history() = history_[i];
  }
  out.set_world_size(world_size_);
  out.set_finished(finished_);
  if (last_report_time_ != absl::InfinitePast()) {
    *out.mutable_last_report_time() = TimestampOf(last_report_time_);
  }
  out.set_reports_accepted(counters_.accepted);
  out.set_reports_rejected(counters_.rejected);
  out.set_reports_duplicate(counters_.duplicate);
  out.set_reports_late(counters_.late);
  out.set_pending_steps(static_cast<uint32_t>(aggregator_.pending_steps()));
  if (analyzer_ != nullptr) {
    *out.mutable_verdict() = analyzer_->verdict();
    for (auto& anomaly : analyzer_->ActiveAnomalies()) {
      *out.add_anomalies() = std::move(anomaly);
    }
  }
  return out;
}

bool Run::IdleAt(absl::Duration now, absl::Duration idle) const {
  absl::MutexLock lock(&mu_);
  return now - last_activity_ >= idle;
}

void Run::Expire() {
  {
    absl::MutexLock lock(&mu_);
    for (auto& sink : sinks_) {
      sink->OnRunEnded(exporter::RunEnd::kExpired);
    }
    sinks_.clear();
  }
  if (store_ != nullptr) {
    if (absl::Status forgot = store_->ForgetRun(id_); !forgot.ok()) {
      spdlog::error("cannot forget run '{}' in the state database: {}", id_,
                    std::string(forgot.message()));
    }
  }
}

}  // namespace entrowatch::daemon
