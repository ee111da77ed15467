#include "daemon/processor.h"

#include <chrono>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/tensor_view.h"
#include "compute/input_checks.h"
#include "google/protobuf/util/time_util.h"
#include "ingest/wire_dtype.h"
#include "spdlog/spdlog.h"

namespace entrowatch::daemon {
namespace {

using entrowatch::v1::Ack;
using entrowatch::v1::Report;
using entrowatch::v1::RunStatus;
using entrowatch::v1::StepSummary;
using google::protobuf::util::TimeUtil;

constexpr int kDefaultHistory = 64;

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Shape of a validated 2-D / 3-D tensor.
int64_t Dim(const entrowatch::v1::Tensor& t, int i) { return static_cast<int64_t>(t.shape(i)); }

}  // namespace

ReportProcessor::ReportProcessor(const config::Config& config, compute::EntropyEngine* engine,
                                 exporter::Metrics* metrics, common::Clock* clock,
                                 store::DurableStore* store)
    : engine_(engine),
      metrics_(metrics),
      clock_(clock),
      store_(store),
      registry_(config.runs.max_runs) {
  Reload(config);
}

void ReportProcessor::Reload(const config::Config& config) {
  Settings s;
  s.aggregation.high_entropy_threshold = config.aggregation.high_entropy_threshold;
  s.aggregation.step_timeout = absl::Seconds(config.aggregation.step_timeout_seconds);
  s.idle_expiry = absl::Seconds(config.runs.idle_expiry_seconds);
  s.dedup_window = config.runs.dedup_window;
  s.history_steps = config.aggregation.history_steps;
  s.skip_nonfinite_rows = config.ingest.skip_nonfinite_rows;
  s.analysis = config.analysis;
  registry_.set_max_runs(config.runs.max_runs);
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
  for (const auto& run : registry_.All()) {
    absl::MutexLock lock(&run->mu);
    run->aggregator.set_options(s.aggregation);
    if (run->analyzer != nullptr) {
      run->analyzer->UpdateThresholds(analysis::ResolveThresholds(s.analysis, run->id),
                                      s.analysis.rules);
    }
  }
}

analysis::RunAnalyzer& ReportProcessor::Analyzer(store::RunState& run) {
  if (run.analyzer == nullptr) {
    const Settings s = settings();
    run.analyzer = std::make_unique<analysis::RunAnalyzer>(
        analysis::ResolveThresholds(s.analysis, run.id), s.analysis.rules);
  }
  return *run.analyzer;
}

ReportProcessor::Settings ReportProcessor::settings() const {
  absl::MutexLock lock(&mu_);
  return settings_;
}

absl::Status ReportProcessor::Compute(const Report& report,
                                      analysis::ReportContribution* out) const {
  const bool skip_nonfinite = settings().skip_nonfinite_rows;
  for (int b = 0; b < report.logits_size(); ++b) {
    const auto& block = report.logits(b);
    compute::LogitsInput in;
    in.logits.dtype = *ingest::DTypeFromProto(block.logits().dtype());
    in.logits.rows = Dim(block.logits(), 0);
    in.logits.cols = Dim(block.logits(), 1);
    in.logits.data = block.logits().data().data();
    in.valid_vocab = block.valid_vocab() == 0 ? in.logits.cols : block.valid_vocab();
    in.temperature = block.temperature() == 0 ? 1.0f : block.temperature();
    in.target_ids = absl::MakeConstSpan(block.target_ids().data(), block.target_ids_size());
    in.top_k = block.sampling().top_k();
    in.top_p = block.sampling().top_p() == 0 ? 1.0f : block.sampling().top_p();
    std::vector<compute::RowEntropy> rows(static_cast<size_t>(in.logits.rows));
    const auto start = std::chrono::steady_clock::now();
    absl::Status status = engine_->TokenEntropy(in, absl::MakeSpan(rows));
    metrics_->ComputeSeconds("token", SecondsSince(start));
    if (engine_->degraded()) {
      metrics_->SetComputeDegraded(true);
    }
    if (!status.ok()) {
      return absl::Status(status.code(), absl::StrCat("logits[", b, "]: ", status.message()));
    }
    int64_t skipped = 0;
    for (size_t r = 0; r < rows.size(); ++r) {
      const compute::RowEntropy& row = rows[r];
      if (row.status != compute::RowStatus::kOk) {
        const char* problem = row.status == compute::RowStatus::kNonFinite
                                  ? "contains NaN or +Inf"
                                  : "has no finite value (all -inf)";
        if (!skip_nonfinite) {
          return absl::InvalidArgumentError(
              absl::StrCat("logits[", b, "].logits row ", r, " ", problem));
        }
        ++skipped;
        continue;
      }
      out->entropies.push_back(static_cast<float>(row.entropy));
      out->normalized.push_back(static_cast<float>(row.normalized));
      out->generated.push_back(block.token_kinds_size() > 0 &&
                               block.token_kinds(static_cast<int>(r)) == entrowatch::v1::GENERATED);
      out->top1_sum += row.top1_prob;
      ++out->top1_count;
      // A target whose logit is -inf has infinite surprisal: not averaged in.
      if (!in.target_ids.empty() && std::isfinite(row.surprisal)) {
        out->surprisal_sum += row.surprisal;
        ++out->surprisal_count;
      }
    }
    if (skipped > 0) {
      metrics_->RowsSkipped("nonfinite", skipped);
    }
  }
  for (const auto& block : report.token_entropies()) {
    const double log_v = std::log(static_cast<double>(block.vocab_size()));
    for (int i = 0; i < block.values_size(); ++i) {
      const float h = block.values(i);
      out->entropies.push_back(h);
      out->normalized.push_back(log_v > 0 ? static_cast<float>(std::min(1.0, h / log_v)) : 0.0f);
      out->generated.push_back(block.token_kinds_size() > 0 &&
                               block.token_kinds(i) == entrowatch::v1::GENERATED);
    }
  }
  for (int b = 0; b < report.attention_size(); ++b) {
    const auto& block = report.attention(b);
    const std::string field = absl::StrCat("attention[", b, "]");
    compute::AttentionInput in;
    in.dtype = *ingest::DTypeFromProto(block.q().dtype());
    in.q = block.q().data().data();
    in.k = block.k().data().data();
    in.heads = Dim(block.q(), 0);
    in.nq = Dim(block.q(), 1);
    in.head_dim = Dim(block.q(), 2);
    in.kv_heads = Dim(block.k(), 0);
    in.nk = Dim(block.k(), 1);
    in.causal = block.causal();
    in.scale = block.scale();
    if (absl::Status values = compute::CheckAttentionValues(in); !values.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".", values.message()));
    }
    compute::AttentionOutput result;
    const auto start = std::chrono::steady_clock::now();
    absl::Status status = engine_->AttentionEntropy(in, &result);
    metrics_->ComputeSeconds("attention", SecondsSince(start));
    if (!status.ok()) {
      return absl::Status(status.code(), absl::StrCat(field, ": ", status.message()));
    }
    auto& heads = out->layers[block.layer()];
    heads.resize(std::max<size_t>(heads.size(), static_cast<size_t>(in.heads)));
    // Engines that compute it report the max attention logit per head.
    for (float m : result.max_logit) {
      out->AddMaxLogit(block.layer(), m);
    }
    for (int64_t h = 0; h < in.heads; ++h) {
      for (int64_t q = 0; q < in.nq; ++q) {
        heads[h].sum += result.shannon[h * in.nq + q];
        heads[h].count += 1;
      }
    }
  }
  for (const auto& block : report.attention_entropies()) {
    if (block.has_max_logit()) {
      out->AddMaxLogit(block.layer(), block.max_logit());
    }
    auto& heads = out->layers[block.layer()];
    heads.resize(std::max<size_t>(heads.size(), block.head_entropy_size()));
    for (int h = 0; h < block.head_entropy_size(); ++h) {
      heads[h].sum += block.head_entropy(h);
      heads[h].count += 1;
    }
  }
  if (report.has_grad()) {
    out->has_grad = true;
    out->grad_norm = report.grad().global_norm();
  }
  if (report.has_scalars()) {
    out->has_loss = report.scalars().has_loss();
    out->loss = report.scalars().loss();
    out->learning_rate = report.scalars().learning_rate();
    out->scalars.insert(report.scalars().values().begin(), report.scalars().values().end());
  }
  return absl::OkStatus();
}

Ack ReportProcessor::Process(const Report& report) {
  Ack ack = ingest::AckFor(report);
  const Settings s = settings();
  bool created = false;
  auto run_or = registry_.GetOrCreate(report.run_id(), s.aggregation, &created);
  if (!run_or.ok()) {
    ack.set_code(static_cast<int>(run_or.status().code()));
    ack.set_message(std::string(run_or.status().message()));
    return ack;
  }
  if (created) {
    metrics_->SetRuns(static_cast<int64_t>(registry_.size()));
  }
  store::RunState& run = **run_or;
  const absl::Time wall = clock_->Wall();
  auto refuse = [&](const absl::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(run.mu) {
    run.counters.rejected++;
    ack.set_code(static_cast<int>(status.code()));
    ack.set_message(std::string(status.message()));
    return ack;
  };
  {
    absl::MutexLock lock(&run.mu);
    run.last_activity = clock_->Monotonic();
    if (absl::Status fresh = Fresh(run); !fresh.ok()) {
      return refuse(fresh);
    }
    if (run.finished) {
      return refuse(absl::FailedPreconditionError(
          absl::StrCat("run '", run.id, "' was marked finished; use a new run_id")));
    }
    auto seen = run.seen.find(report.rank());
    if (report.seq() != 0 && seen != run.seen.end() && seen->second.Contains(report.seq())) {
      run.counters.duplicate++;
      ack.set_duplicate(true);
      FillAck(run, &ack);
      return ack;
    }
  }

  analysis::ReportContribution contribution;
  absl::Status status = Compute(report, &contribution);

  absl::ReleasableMutexLock lock(&run.mu);
  if (!status.ok()) {
    FillAck(run, &ack);
    return refuse(status);
  }
  // Another report of the run may have been refused meanwhile.
  if (absl::Status fresh = Fresh(run); !fresh.ok()) {
    return refuse(fresh);
  }
  if (report.seq() != 0) {
    run.seen.try_emplace(report.rank(), s.dedup_window).first->second.Insert(report.seq());
  }
  run.last_report_time = wall;
  run.world_size = ingest::EffectiveWorldSize(report);
  metrics_->ReportSeen(run.id, absl::ToDoubleSeconds(wall - absl::UnixEpoch()));
  contribution.rank = report.rank();
  contribution.world_size = run.world_size;
  contribution.step = report.step();
  contribution.phase =
      report.phase() == entrowatch::v1::PHASE_UNSPECIFIED ? entrowatch::v1::TRAIN : report.phase();
  store::WriteBatch batch;
  if (store_ != nullptr) {
    batch.contribution = contribution;
  }
  const std::vector<float> entropies = contribution.entropies;
  const entrowatch::v1::Phase phase = contribution.phase;
  const bool accepted = run.aggregator.Add(std::move(contribution), clock_->Monotonic());
  if (accepted) {
    run.counters.accepted++;
    metrics_->TokenEntropies(run.id, phase, entropies);
    batch.has_report = true;
    batch.rank = report.rank();
    batch.seq = report.seq();
  } else {
    run.counters.late++;
    ack.set_late(true);
  }
  Drain(run);
  if (report.final()) {
    Finish(run);
  }
  FillAck(run, &ack);
  std::shared_ptr<store::DurableStore::Pending> pending;
  if (store_ != nullptr) {
    pending = Save(run, std::move(batch));
  }
  lock.Release();
  if (pending != nullptr) {
    if (absl::Status saved = AwaitSave(pending); !saved.ok()) {
      absl::MutexLock relock(&run.mu);
      (accepted ? run.counters.accepted : run.counters.late)--;
      Refused(run, pending->batch.epoch);
      ack = ingest::AckFor(report);  // no step or verdict from the refused state
      return refuse(saved);
    }
  }
  return ack;
}

std::shared_ptr<store::DurableStore::Pending> ReportProcessor::Save(store::RunState& run,
                                                                    store::WriteBatch batch) {
  batch.run_id = run.id;
  batch.epoch = run.store_epoch;
  batch.world_size = run.world_size;
  batch.finished = run.finished;
  batch.last_report_time = run.last_report_time;
  batch.finalized.swap(run.unsaved);
  return store_->Enqueue(std::move(batch));
}

absl::Status ReportProcessor::AwaitSave(
    const std::shared_ptr<store::DurableStore::Pending>& pending) {
  absl::Status status = store_->Wait(pending);
  if (!status.ok()) {
    metrics_->StoreFailure(store::FailureReason(status));
    metrics_->SetStoreBytes(store_->DiskBytes());
  }
  return status;
}

void ReportProcessor::Refused(store::RunState& run, uint64_t epoch) {
  // The store voided every queued batch of this epoch; the first to learn
  // of it starts the next one.
  if (run.store_epoch <= epoch) {
    run.store_epoch = epoch + 1;
    run.stale = true;
  }
  Fresh(run).IgnoreError();  // else retried before the run's next use
}

absl::Status ReportProcessor::Fresh(store::RunState& run) {
  if (!run.stale) {
    return absl::OkStatus();
  }
  auto stored = store_->LoadRun(run.id, settings().dedup_window + 1);
  if (!stored.ok() && !absl::IsNotFound(stored.status())) {
    return absl::UnavailableError(absl::StrCat(
        "run '", run.id, "' must be reloaded after a refused write: ", stored.status().message()));
  }
  store::StoredRun nothing;
  nothing.run_id = run.id;
  Load(run, stored.ok() ? *std::move(stored) : std::move(nothing), /*count_steps=*/false);
  run.stale = false;
  return absl::OkStatus();
}

void ReportProcessor::Load(store::RunState& run, store::StoredRun stored, bool count_steps) {
  const Settings s = settings();
  const absl::Duration now = clock_->Monotonic();
  run.aggregator.Reset();
  run.history.clear();
  run.seen.clear();
  run.unsaved.clear();
  run.analyzer.reset();
  run.world_size = stored.world_size;
  run.finished = stored.finished;
  run.last_report_time = stored.last_report_time;
  run.last_activity = now;
  for (const auto& [rank, seqs] : stored.seqs) {
    auto& window = run.seen.try_emplace(rank, s.dedup_window).first->second;
    for (uint64_t seq : seqs) {
      window.Insert(seq);
    }
  }
  // Replaying the finalized steps rebuilds baselines, states and detectors.
  analysis::RunAnalyzer& analyzer = Analyzer(run);
  for (StepSummary& step : stored.steps) {
    analyzer.Observe(step);
    if (history_ != nullptr) {
      history_->Record(run.id, step, analyzer.verdict(), analyzer.NewlyFired());
    }
    if (count_steps) {
      metrics_->StepFinalized(run.id, step);
    }
    run.aggregator.RestoreFinalized(step.step());
    run.history.push_back(std::move(step));
    while (static_cast<int>(run.history.size()) > s.history_steps) {
      run.history.pop_front();
    }
  }
  for (analysis::ReportContribution& c : stored.pending) {
    run.aggregator.Add(std::move(c), now);
  }
  const std::vector<entrowatch::v1::Anomaly> active = analyzer.ActiveAnomalies();
  metrics_->Health(run.id, analyzer.verdict().state(), active, {});
  if (health_listener_) {
    health_listener_(run.id, active, analyzer.verdict());
  }
}

absl::Status ReportProcessor::Restore() {
  if (store_ == nullptr) {
    return absl::OkStatus();
  }
  const Settings s = settings();
  auto runs = store_->LoadAll(s.dedup_window + 1);
  if (!runs.ok()) {
    return runs.status();
  }
  for (store::StoredRun& stored : *runs) {
    bool created = false;
    auto run_or = registry_.GetOrCreate(stored.run_id, s.aggregation, &created);
    if (!run_or.ok()) {
      return run_or.status();
    }
    store::RunState& run = **run_or;
    absl::MutexLock lock(&run.mu);
    Load(run, std::move(stored), /*count_steps=*/true);
    if (run.last_report_time != absl::InfinitePast()) {
      metrics_->ReportSeen(run.id, absl::ToDoubleSeconds(run.last_report_time - absl::UnixEpoch()));
    }
    if (run.finished) {
      metrics_->RunFinished(run.id);
    }
  }
  metrics_->SetRuns(static_cast<int64_t>(registry_.size()));
  metrics_->SetStoreBytes(store_->DiskBytes());
  spdlog::info("restored {} runs from {}", runs->size(), store_->path());
  return absl::OkStatus();
}

void ReportProcessor::Drain(store::RunState& run) {
  std::vector<StepSummary> steps = run.aggregator.TakeFinalized();
  if (steps.empty()) {
    return;
  }
  const int history_steps = settings().history_steps;
  analysis::RunAnalyzer& analyzer = Analyzer(run);
  std::vector<entrowatch::v1::Anomaly> fired;
  for (StepSummary& step : steps) {
    *step.mutable_finalized_time() = TimeUtil::NanosecondsToTimestamp(
        absl::ToInt64Nanoseconds(clock_->Wall() - absl::UnixEpoch()));
    metrics_->StepFinalized(run.id, step);
    analyzer.Observe(step);
    if (history_ != nullptr) {
      history_->Record(run.id, step, analyzer.verdict(), analyzer.NewlyFired());
    }
    for (auto& anomaly : analyzer.NewlyFired()) {
      fired.push_back(std::move(anomaly));
    }
    if (store_ != nullptr) {
      run.unsaved.push_back(step);
    }
    run.history.push_back(std::move(step));
    while (static_cast<int>(run.history.size()) > history_steps) {
      run.history.pop_front();
    }
  }
  const std::vector<entrowatch::v1::Anomaly> active = analyzer.ActiveAnomalies();
  metrics_->Health(run.id, analyzer.verdict().state(), active, fired);
  if (health_listener_) {
    health_listener_(run.id, active, analyzer.verdict());
  }
}

void ReportProcessor::Finish(store::RunState& run) {
  run.aggregator.FinalizeAll();
  Drain(run);
  run.finished = true;
  metrics_->RunFinished(run.id);
}

void ReportProcessor::FillAck(store::RunState& run, Ack* ack) const {
  if (!run.history.empty()) {
    *ack->mutable_latest_step() = run.history.back();
  }
  if (run.analyzer == nullptr) {
    return;
  }
  *ack->mutable_verdict() = run.analyzer->verdict();
  const entrowatch::v1::Anomaly* worst = nullptr;
  for (auto& anomaly : run.analyzer->ActiveAnomalies()) {
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

RunStatus ReportProcessor::Status(store::RunState& run, int history) const {
  RunStatus out;
  out.set_run_id(run.id);
  if (run.aggregator.has_finalized()) {
    out.set_last_step(run.aggregator.max_finalized_step());
  }
  if (!run.history.empty()) {
    *out.mutable_latest() = run.history.back();
  }
  const int n = std::min<int>(history, static_cast<int>(run.history.size()));
  for (int i = static_cast<int>(run.history.size()) - n; i < static_cast<int>(run.history.size());
       ++i) {
    *out.add_history() = run.history[i];
  }
  out.set_world_size(run.world_size);
  out.set_finished(run.finished);
  if (run.last_report_time != absl::InfinitePast()) {
    *out.mutable_last_report_time() = TimeUtil::NanosecondsToTimestamp(
        absl::ToInt64Nanoseconds(run.last_report_time - absl::UnixEpoch()));
  }
  out.set_reports_accepted(run.counters.accepted);
  out.set_reports_rejected(run.counters.rejected);
  out.set_reports_duplicate(run.counters.duplicate);
  out.set_reports_late(run.counters.late);
  out.set_pending_steps(static_cast<uint32_t>(run.aggregator.pending_steps()));
  if (run.analyzer != nullptr) {
    *out.mutable_verdict() = run.analyzer->verdict();
    for (auto& anomaly : run.analyzer->ActiveAnomalies()) {
      *out.add_anomalies() = std::move(anomaly);
    }
  }
  return out;
}

absl::StatusOr<RunStatus> ReportProcessor::GetRun(const entrowatch::v1::GetRunRequest& request) {
  auto run = registry_.Find(request.run_id());
  if (run == nullptr) {
    return absl::NotFoundError(absl::StrCat("unknown run '", request.run_id(), "'"));
  }
  const int history = request.history() == 0
                          ? kDefaultHistory
                          : static_cast<int>(std::min<uint32_t>(request.history(), 1 << 20));
  absl::MutexLock lock(&run->mu);
  return Status(*run, history);
}

entrowatch::v1::ListRunsResponse ReportProcessor::ListRuns() {
  entrowatch::v1::ListRunsResponse out;
  for (const auto& run : registry_.All()) {
    absl::MutexLock lock(&run->mu);
    *out.add_runs() = Status(*run, 0);
  }
  return out;
}

absl::StatusOr<RunStatus> ReportProcessor::EndRun(const std::string& run_id) {
  auto run = registry_.Find(run_id);
  if (run == nullptr) {
    return absl::NotFoundError(absl::StrCat("unknown run '", run_id, "'"));
  }
  std::shared_ptr<store::DurableStore::Pending> pending;
  RunStatus status;
  {
    absl::MutexLock lock(&run->mu);
    RETURN_IF_ERROR(Fresh(*run));
    if (!run->finished) {
      Finish(*run);
    }
    run->last_activity = clock_->Monotonic();
    status = Status(*run, kDefaultHistory);
    if (store_ != nullptr) {
      pending = Save(*run, store::WriteBatch());
    }
  }
  if (pending != nullptr) {
    if (absl::Status saved = AwaitSave(pending); !saved.ok()) {
      absl::MutexLock lock(&run->mu);
      Refused(*run, pending->batch.epoch);
      return saved;
    }
  }
  return status;
}

absl::StatusOr<RunStatus> ReportProcessor::EndIncident(const std::string& run_id,
                                                       const std::string& reason) {
  auto run = registry_.Find(run_id);
  if (run == nullptr) {
    return absl::NotFoundError(absl::StrCat("unknown run '", run_id, "'"));
  }
  absl::MutexLock lock(&run->mu);
  RETURN_IF_ERROR(Fresh(*run));
  analysis::RunAnalyzer& analyzer = Analyzer(*run);
  spdlog::info("run {}: incident ended at step {} ({} state, {} active anomalies){}{}", run->id,
               analyzer.verdict().step(),
               entrowatch::v1::HealthState_Name(analyzer.verdict().state()),
               analyzer.ActiveAnomalies().size(), reason.empty() ? "" : ": ", reason);
  analyzer.EndIncident(reason);
  const std::vector<entrowatch::v1::Anomaly> active = analyzer.ActiveAnomalies();
  metrics_->Health(run->id, analyzer.verdict().state(), active, {});
  if (health_listener_) {
    health_listener_(run->id, active, analyzer.verdict());
  }
  return Status(*run, kDefaultHistory);
}

void ReportProcessor::Sweep() {
  const Settings s = settings();
  const absl::Duration now = clock_->Monotonic();
  for (const auto& run : registry_.All()) {
    std::shared_ptr<store::DurableStore::Pending> pending;
    {
      absl::MutexLock lock(&run->mu);
      if (!Fresh(*run).ok()) {
        continue;  // still stale; retried at the next sweep
      }
      run->aggregator.Sweep(now);
      Drain(*run);
      if (store_ != nullptr && !run->unsaved.empty()) {
        pending = Save(*run, store::WriteBatch());
      }
    }
    if (pending != nullptr && !AwaitSave(pending).ok()) {
      absl::MutexLock lock(&run->mu);
      Refused(*run, pending->batch.epoch);  // the steps finalize again from their contributions
    }
  }
  if (store_ != nullptr) {
    metrics_->SetStoreBytes(store_->DiskBytes());
  }
  const auto expired = registry_.ExpireIdle(now, s.idle_expiry);
  for (const auto& run : expired) {
    metrics_->ForgetRun(run->id);
    if (history_ != nullptr) {
      history_->Forget(run->id);
    }
    if (store_ != nullptr) {
      if (absl::Status forgot = store_->ForgetRun(run->id); !forgot.ok()) {
        spdlog::error("cannot forget run '{}' in the state database: {}", run->id,
                      std::string(forgot.message()));
      }
    }
    if (health_listener_) {
      health_listener_(run->id, {}, entrowatch::v1::Verdict());  // resolves its alerts
    }
  }
  if (!expired.empty()) {
    metrics_->SetRuns(static_cast<int64_t>(registry_.size()));
  }
}

void ReportProcessor::OnReceived(int64_t bytes) { metrics_->IngestBytes(bytes); }

void ReportProcessor::OnOutcome(const Ack& ack) {
  metrics_->ReportOutcome(exporter::ResultLabel(ack));
}

void ReportProcessor::OnStreamShed() { metrics_->StreamShed(); }

}  // namespace entrowatch::daemon
