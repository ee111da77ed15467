#include "export/metrics.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/version.h"
#include "prometheus/text_serializer.h"

namespace entrowatch::exporter {
namespace {

using entrowatch::v1::Anomaly;
using entrowatch::v1::HealthState;
using entrowatch::v1::Phase;
using entrowatch::v1::StepSummary;

// The metric catalog: every family entrowatchd exports, in one table.
struct MetricSpec {
  const char* name;
  const char* help;
};

// Named-scalar series one run may export (entrowatch_scalar).
constexpr size_t kMaxScalarSeriesPerRun = 32;

constexpr MetricSpec kCatalog[] = {
    {"entrowatch_token_entropy_mean_nats", "Mean token entropy of the latest finalized step."},
    {"entrowatch_token_entropy_p10_nats", "10th percentile token entropy of the latest step."},
    {"entrowatch_token_entropy_p50_nats", "Median token entropy of the latest step."},
    {"entrowatch_token_entropy_p90_nats", "90th percentile token entropy of the latest step."},
    {"entrowatch_token_entropy_normalized_ratio",
     "Mean token entropy divided by log(vocabulary), latest step."},
    {"entrowatch_high_entropy_token_ratio",
     "Fraction of tokens whose normalized entropy reaches the high-entropy threshold."},
    {"entrowatch_token_entropy_nats", "Distribution of accepted token entropies."},
    {"entrowatch_generated_token_entropy_mean_nats",
     "Mean entropy of GENERATED tokens (rollouts), latest step that had any."},
    {"entrowatch_attention_entropy_nats",
     "Attention entropy of a layer, mean over heads and queries, latest step."},
    {"entrowatch_attention_head_entropy_nats",
     "Mean attention entropy of one head (metrics.per_head_series), latest step."},
    {"entrowatch_attention_head_entropy_variance",
     "Variance of per-head mean attention entropy within a layer, latest step."},
    {"entrowatch_attention_max_logit",
     "Maximum attention logit of a layer (max over heads and queries of q.k x scale), latest "
     "step that had one."},
    {"entrowatch_scalar",
     "A named scalar (reward, kl, ...), mean over ranks, latest step that had it; the first 32 "
     "names of a run only."},
    {"entrowatch_grad_norm", "Global gradient L2 norm, latest step."},
    {"entrowatch_loss", "Training loss, latest step (mean over ranks)."},
    {"entrowatch_learning_rate", "Learning rate, latest step."},
    {"entrowatch_last_step", "Latest finalized step."},
    {"entrowatch_last_report_timestamp_seconds", "Unix time of the run's latest report."},
    {"entrowatch_run_finished", "1 once the run was marked finished."},
    {"entrowatch_steps_finalized_total",
     "Steps finalized; complete=false when finalized by timeout."},
    {"entrowatch_health_state", "1 for the run's current health state."},
    {"entrowatch_anomaly_active", "1 while an anomaly pattern is active for the run."},
    {"entrowatch_anomalies_total", "Anomalies that became active."},
    {"entrowatch_anomaly_severity",
     "Highest severity of an active anomaly pattern: 1 info, 2 warning, 3 critical (0 none)."},
    {"entrowatch_reports_total", "Reports by outcome."},
    {"entrowatch_ingest_bytes_total", "Serialized bytes of reports received."},
    {"entrowatch_queue_reports", "Reports accepted and not yet processed."},
    {"entrowatch_queue_bytes", "Bytes of reports accepted and not yet processed."},
    {"entrowatch_queue_waiting_reports",
     "Reports read from streams while the queue was full, waiting for room."},
    {"entrowatch_queue_waiting_bytes",
     "Bytes of reports waiting for room; with entrowatch_queue_bytes, bounded by "
     "ingest.memory_limit_bytes."},
    {"entrowatch_compute_seconds", "Time to compute entropies of one report block."},
    {"entrowatch_compute_degraded",
     "1 when the CUDA engine was wanted but the CPU engine is in use."},
    {"entrowatch_rows_skipped_total", "Logits rows skipped (skip_nonfinite_rows)."},
    {"entrowatch_runs", "Runs tracked."},
    {"entrowatch_resident_memory_bytes", "Resident memory of entrowatchd (RSS)."},
    {"entrowatch_memory_budget_bytes",
     "ingest.memory_budget_bytes: above it ingest sheds load (0 = no budget)."},
    {"entrowatch_streams_shed_total",
     "New streams refused (RESOURCE_EXHAUSTED) while over the memory budget."},
    {"entrowatch_store_failures_total",
     "Refused writes of the state database (state_dir) by reason: full (disk full or "
     "store.max_db_bytes), io or other; the affected reports were refused with UNAVAILABLE."},
    {"entrowatch_store_db_bytes", "Bytes of the state database and its WAL on disk."},
    {"entrowatch_build_info", "Version and compute backend of this entrowatchd."},
};

const MetricSpec& Spec(absl::string_view name) {
  for (const MetricSpec& spec : kCatalog) {
    if (name == spec.name) {
      return spec;
    }
  }
  // A name missing from the catalog is a programming error found by any test.
  std::abort();
}

template <typename Builder>
auto& Register(Builder builder, absl::string_view name, prometheus::Registry& registry) {
  const MetricSpec& spec = Spec(name);
  return builder.Name(spec.name).Help(spec.help).Register(registry);
}

prometheus::Family<prometheus::Gauge>* GaugeFamily(absl::string_view name,
                                                   prometheus::Registry& r) {
  return &Register(prometheus::BuildGauge(), name, r);
}

prometheus::Family<prometheus::Counter>* CounterFamily(absl::string_view name,
                                                       prometheus::Registry& r) {
  return &Register(prometheus::BuildCounter(), name, r);
}

prometheus::Family<prometheus::Histogram>* HistogramFamily(absl::string_view name,
                                                           prometheus::Registry& r) {
  return &Register(prometheus::BuildHistogram(), name, r);
}

constexpr HealthState kStates[] = {
    entrowatch::v1::WARMUP,       entrowatch::v1::NORMAL,
    entrowatch::v1::COMFORT_ZONE, entrowatch::v1::PANIC_ZONE,
    entrowatch::v1::STAGNATION,   entrowatch::v1::PATHOLOGICAL_CONFIDENCE};

const prometheus::Histogram::BucketBoundaries kComputeBuckets = {1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3,
                                                                 0.01, 0.03, 0.1,  0.3,  1,    3};

}  // namespace

std::string PhaseLabel(Phase phase) {
  switch (phase) {
    case entrowatch::v1::EVAL:
      return "eval";
    case entrowatch::v1::ROLLOUT:
      return "rollout";
    default:
      return "train";
  }
}

std::string ResultLabel(const entrowatch::v1::Ack& ack) {
  if (ack.code() == 0) {
    return ack.duplicate() ? "duplicate" : ack.late() ? "late" : "ok";
  }
  std::string name = absl::StatusCodeToString(static_cast<absl::StatusCode>(ack.code()));
  return absl::AsciiStrToLower(name);
}

// The series of one run. Per-phase and per-layer series are created on first use.
struct Metrics::RunSeries {
  struct PhaseSeries {
    prometheus::Gauge* mean;
    prometheus::Gauge* p10;
    prometheus::Gauge* p50;
    prometheus::Gauge* p90;
    prometheus::Gauge* normalized;
    prometheus::Gauge* high_ratio;
    prometheus::Histogram* histogram;
  };
  struct LayerSeries {
    prometheus::Gauge* entropy;
    prometheus::Gauge* variance;
    std::vector<prometheus::Gauge*> heads;   // with per_head_series
    prometheus::Gauge* max_logit = nullptr;  // once the layer reported one
  };
  std::map<Phase, PhaseSeries> phases;
  std::map<uint32_t, LayerSeries> layers;
  prometheus::Gauge* generated_mean = nullptr;
  // entrowatch_scalar by name: the first kMaxScalarSeriesPerRun names only.
  std::map<std::string, prometheus::Gauge*> scalars;
  prometheus::Gauge* grad_norm = nullptr;
  prometheus::Gauge* loss = nullptr;
  prometheus::Gauge* learning_rate = nullptr;
  prometheus::Gauge* last_step = nullptr;
  prometheus::Gauge* last_report = nullptr;
  prometheus::Gauge* finished = nullptr;
  prometheus::Counter* steps_complete = nullptr;
  prometheus::Counter* steps_timed_out = nullptr;
  std::map<HealthState, prometheus::Gauge*> states;
  std::map<std::string, prometheus::Gauge*> anomaly_active;
  std::map<std::string, prometheus::Gauge*> anomaly_severity;
  std::map<std::string, prometheus::Counter*> anomalies_total;
};

Metrics::Metrics(const MetricsOptions& options)
    : options_(options), registry_(std::make_shared<prometheus::Registry>()) {
  prometheus::Registry& r = *registry_;
  entropy_mean_ = GaugeFamily("entrowatch_token_entropy_mean_nats", r);
  entropy_p10_ = GaugeFamily("entrowatch_token_entropy_p10_nats", r);
  entropy_p50_ = GaugeFamily("entrowatch_token_entropy_p50_nats", r);
  entropy_p90_ = GaugeFamily("entrowatch_token_entropy_p90_nats", r);
  normalized_ = GaugeFamily("entrowatch_token_entropy_normalized_ratio", r);
  high_ratio_ = GaugeFamily("entrowatch_high_entropy_token_ratio", r);
  entropy_hist_ = HistogramFamily("entrowatch_token_entropy_nats", r);
  generated_mean_ = GaugeFamily("entrowatch_generated_token_entropy_mean_nats", r);
  attention_ = GaugeFamily("entrowatch_attention_entropy_nats", r);
  head_variance_ = GaugeFamily("entrowatch_attention_head_entropy_variance", r);
  head_entropy_ = GaugeFamily("entrowatch_attention_head_entropy_nats", r);
  max_logit_ = GaugeFamily("entrowatch_attention_max_logit", r);
  scalar_ = GaugeFamily("entrowatch_scalar", r);
  grad_norm_ = GaugeFamily("entrowatch_grad_norm", r);
  loss_ = GaugeFamily("entrowatch_loss", r);
  learning_rate_ = GaugeFamily("entrowatch_learning_rate", r);
  last_step_ = GaugeFamily("entrowatch_last_step", r);
  last_report_ = GaugeFamily("entrowatch_last_report_timestamp_seconds", r);
  finished_ = GaugeFamily("entrowatch_run_finished", r);
  steps_total_ = CounterFamily("entrowatch_steps_finalized_total", r);
  health_state_ = GaugeFamily("entrowatch_health_state", r);
  anomaly_active_ = GaugeFamily("entrowatch_anomaly_active", r);
  anomaly_severity_ = GaugeFamily("entrowatch_anomaly_severity", r);
  anomalies_total_ = CounterFamily("entrowatch_anomalies_total", r);
  reports_total_ = CounterFamily("entrowatch_reports_total", r);
  ingest_bytes_ = CounterFamily("entrowatch_ingest_bytes_total", r);
  queue_reports_ = GaugeFamily("entrowatch_queue_reports", r);
  queue_bytes_ = GaugeFamily("entrowatch_queue_bytes", r);
  queue_waiting_reports_ = GaugeFamily("entrowatch_queue_waiting_reports", r);
  queue_waiting_bytes_ = GaugeFamily("entrowatch_queue_waiting_bytes", r);
  compute_seconds_ = HistogramFamily("entrowatch_compute_seconds", r);
  compute_degraded_ = GaugeFamily("entrowatch_compute_degraded", r);
  rows_skipped_ = CounterFamily("entrowatch_rows_skipped_total", r);
  runs_ = GaugeFamily("entrowatch_runs", r);
  resident_bytes_ = GaugeFamily("entrowatch_resident_memory_bytes", r);
  memory_budget_bytes_ = GaugeFamily("entrowatch_memory_budget_bytes", r);
  streams_shed_ = CounterFamily("entrowatch_streams_shed_total", r);
  store_failures_ = CounterFamily("entrowatch_store_failures_total", r);
  store_bytes_ = GaugeFamily("entrowatch_store_db_bytes", r);
  build_info_ = GaugeFamily("entrowatch_build_info", r);

  // Series that exist from the start, so rate() and alerts see zeros.
  for (const char* result : {"ok", "duplicate", "late", "invalid_argument", "resource_exhausted",
                             "failed_precondition", "unavailable", "internal"}) {
    outcome_counters_[result] = &reports_total_->Add({{"result", result}});
  }
  ingest_bytes_->Add({});
  queue_reports_->Add({});
  queue_bytes_->Add({});
  queue_waiting_reports_->Add({});
  queue_waiting_bytes_->Add({});
  compute_degraded_->Add({});
  runs_->Add({});
  resident_bytes_->Add({});
  memory_budget_bytes_->Add({});
  streams_shed_->Add({});
  for (const char* reason : {"full", "io", "other"}) {
    store_failures_->Add({{"reason", reason}});
  }
  SetBackend(options.backend);
}

Metrics::~Metrics() { StopServing(); }

void Metrics::RequireBasicAuth(const std::string& user_password) {
  http_->RequireBasicAuth(user_password);
}

void Metrics::StopServing() {
  if (http_ != nullptr) {
    http_->Stop();
  }
}

absl::Status Metrics::Serve(const std::string& listen) {
  auto http = HttpServer::Start(listen, /*threads=*/4);
  if (!http.ok()) {
    return http.status();
  }
  http_ = *std::move(http);
  http_->Handle("/metrics", [this](const HttpRequest&) {
    HttpResponse response;
    response.content_type = "text/plain; version=0.0.4; charset=utf-8";
    response.body = Scrape();
    return response;
  });
  port_ = http_->port();
  return absl::OkStatus();
}

void Metrics::ReportOutcome(absl::string_view result) {
  absl::MutexLock lock(&mu_);
  auto it = outcome_counters_.find(std::string(result));
  if (it == outcome_counters_.end()) {
    it = outcome_counters_
             .emplace(std::string(result), &reports_total_->Add({{"result", std::string(result)}}))
             .first;
  }
  it->second->Increment();
}

void Metrics::IngestBytes(int64_t bytes) {
  ingest_bytes_->Add({}).Increment(static_cast<double>(bytes));
}

void Metrics::QueueLevel(int64_t reports, int64_t bytes, int64_t waiting_reports,
                         int64_t waiting_bytes) {
  queue_reports_->Add({}).Set(static_cast<double>(reports));
  queue_bytes_->Add({}).Set(static_cast<double>(bytes));
  queue_waiting_reports_->Add({}).Set(static_cast<double>(waiting_reports));
  queue_waiting_bytes_->Add({}).Set(static_cast<double>(waiting_bytes));
}

void Metrics::RowsSkipped(absl::string_view reason, int64_t rows) {
  absl::MutexLock lock(&mu_);
  auto it = skipped_counters_.find(std::string(reason));
  if (it == skipped_counters_.end()) {
    it = skipped_counters_
             .emplace(std::string(reason), &rows_skipped_->Add({{"reason", std::string(reason)}}))
             .first;
  }
  it->second->Increment(static_cast<double>(rows));
}

void Metrics::ComputeSeconds(absl::string_view kind, double seconds) {
  absl::MutexLock lock(&mu_);
  auto it = compute_histograms_.find(std::string(kind));
  if (it == compute_histograms_.end()) {
    it = compute_histograms_
             .emplace(std::string(kind),
                      &compute_seconds_->Add({{"backend", backend_}, {"kind", std::string(kind)}},
                                             kComputeBuckets))
             .first;
  }
  it->second->Observe(seconds);
}

void Metrics::SetComputeDegraded(bool degraded) {
  compute_degraded_->Add({}).Set(degraded ? 1 : 0);
}

void Metrics::SetBackend(const std::string& backend) {
  absl::MutexLock lock(&mu_);
  if (build_info_gauge_ != nullptr) {
    build_info_->Remove(build_info_gauge_);
  }
  backend_ = backend;
  build_info_gauge_ = &build_info_->Add({{"version", kVersion}, {"backend", backend}});
  build_info_gauge_->Set(1);
  // Compute timings are labelled with the backend that produced them.
  for (auto& [kind, histogram] : compute_histograms_) {
    compute_seconds_->Remove(histogram);
  }
  compute_histograms_.clear();
}

void Metrics::StoreFailure(absl::string_view reason) {
  store_failures_->Add({{"reason", std::string(reason)}}).Increment();
}

void Metrics::SetStoreBytes(int64_t bytes) {
  store_bytes_->Add({}).Set(static_cast<double>(bytes));
}

void Metrics::SetRuns(int64_t runs) { runs_->Add({}).Set(static_cast<double>(runs)); }

void Metrics::MemoryLevel(int64_t resident_bytes, int64_t budget_bytes) {
  resident_bytes_->Add({}).Set(static_cast<double>(resident_bytes));
  memory_budget_bytes_->Add({}).Set(static_cast<double>(budget_bytes));
}

void Metrics::StreamShed() { streams_shed_->Add({}).Increment(); }

Metrics::RunSeries& Metrics::Series(const std::string& run) {
  auto& slot = runs_by_id_[run];
  if (!slot) {
    slot = std::make_unique<RunSeries>();
    RunSeries& s = *slot;
    const prometheus::Labels labels = {{"run", run}};
    s.grad_norm = &grad_norm_->Add(labels);
    s.loss = &loss_->Add(labels);
    s.learning_rate = &learning_rate_->Add(labels);
    s.last_step = &last_step_->Add(labels);
    s.last_report = &last_report_->Add(labels);
    s.finished = &finished_->Add(labels);
    s.steps_complete = &steps_total_->Add({{"run", run}, {"complete", "true"}});
    s.steps_timed_out = &steps_total_->Add({{"run", run}, {"complete", "false"}});
    for (HealthState state : kStates) {
      s.states[state] =
          &health_state_->Add({{"run", run}, {"state", entrowatch::v1::HealthState_Name(state)}});
    }
  }
  return *slot;
}

void Metrics::TokenEntropies(const std::string& run, Phase phase,
                             const std::vector<float>& entropies) {
  if (entropies.empty()) {
    return;
  }
  const auto& bounds = options_.entropy_buckets;
  std::vector<double> increments(bounds.size() + 1, 0.0);
  double sum = 0;
  for (float h : entropies) {
    const size_t bucket =
        std::lower_bound(bounds.begin(), bounds.end(), static_cast<double>(h)) - bounds.begin();
    increments[bucket] += 1;
    sum += h;
  }
  absl::MutexLock lock(&mu_);
  RunSeries& s = Series(run);
  auto it = s.phases.find(phase);
  if (it == s.phases.end()) {
    const prometheus::Labels labels = {{"run", run}, {"phase", PhaseLabel(phase)}};
    RunSeries::PhaseSeries p;
    p.mean = &entropy_mean_->Add(labels);
    p.p10 = &entropy_p10_->Add(labels);
    p.p50 = &entropy_p50_->Add(labels);
    p.p90 = &entropy_p90_->Add(labels);
    p.normalized = &normalized_->Add(labels);
    p.high_ratio = &high_ratio_->Add(labels);
    p.histogram = &entropy_hist_->Add(labels, bounds);
    it = s.phases.emplace(phase, p).first;
  }
  it->second.histogram->ObserveMultiple(increments, sum);
}

void Metrics::StepFinalized(const std::string& run, const StepSummary& step) {
  absl::MutexLock lock(&mu_);
  RunSeries& s = Series(run);
  s.last_step->Set(static_cast<double>(step.step()));
  (step.complete() ? s.steps_complete : s.steps_timed_out)->Increment();
  if (step.token_count() > 0) {
    auto it = s.phases.find(step.phase());
    if (it != s.phases.end()) {
      it->second.mean->Set(step.entropy_mean());
      it->second.p10->Set(step.entropy_p10());
      it->second.p50->Set(step.entropy_p50());
      it->second.p90->Set(step.entropy_p90());
      it->second.normalized->Set(step.normalized_entropy_mean());
      it->second.high_ratio->Set(step.high_entropy_ratio());
    }
  }
  if (step.generated_token_count() > 0) {
    if (s.generated_mean == nullptr) {
      s.generated_mean = &generated_mean_->Add({{"run", run}});
    }
    s.generated_mean->Set(step.generated_entropy_mean());
  }
  if (step.has_grad_norm()) {
    s.grad_norm->Set(step.grad_norm());
  }
  if (step.has_loss()) {
    s.loss->Set(step.loss());
  }
  if (step.learning_rate() > 0) {
    s.learning_rate->Set(step.learning_rate());
  }
  // Bounded cardinality: a run exports its first kMaxScalarSeriesPerRun
  // names (names are validated at ingest); later names stay in the API.
  for (const auto& [name, value] : step.scalars()) {
    auto it = s.scalars.find(name);
    if (it == s.scalars.end()) {
      if (s.scalars.size() >= kMaxScalarSeriesPerRun) {
        continue;
      }
      it = s.scalars.emplace(name, &scalar_->Add({{"run", run}, {"name", name}})).first;
    }
    it->second->Set(value);
  }
  for (const auto& layer : step.layers()) {
    auto it = s.layers.find(layer.layer());
    if (it == s.layers.end()) {
      if (static_cast<int>(s.layers.size()) >= options_.max_layers_per_run) {
        continue;
      }
      const prometheus::Labels labels = {{"run", run}, {"layer", std::to_string(layer.layer())}};
      it = s.layers
               .emplace(layer.layer(),
                        RunSeries::LayerSeries{
                            &attention_->Add(labels), &head_variance_->Add(labels), {}})
               .first;
    }
    it->second.entropy->Set(layer.mean_entropy());
    it->second.variance->Set(layer.head_variance());
    if (layer.has_max_logit()) {
      if (it->second.max_logit == nullptr) {
        it->second.max_logit =
            &max_logit_->Add({{"run", run}, {"layer", std::to_string(layer.layer())}});
      }
      it->second.max_logit->Set(layer.max_logit());
    }
    if (options_.per_head_series) {
      auto& heads = it->second.heads;
      const int n = std::min(layer.head_mean_entropy_size(), options_.max_heads_per_layer);
      for (int h = static_cast<int>(heads.size()); h < n; ++h) {
        heads.push_back(&head_entropy_->Add(
            {{"run", run}, {"layer", std::to_string(layer.layer())}, {"head", std::to_string(h)}}));
      }
      for (int h = 0; h < n; ++h) {
        heads[h]->Set(layer.head_mean_entropy(h));
      }
    }
  }
}

void Metrics::ReportSeen(const std::string& run, double unix_seconds) {
  absl::MutexLock lock(&mu_);
  Series(run).last_report->Set(unix_seconds);
}

void Metrics::Health(const std::string& run, HealthState state, const std::vector<Anomaly>& active,
                     const std::vector<Anomaly>& newly_fired) {
  absl::MutexLock lock(&mu_);
  RunSeries& s = Series(run);
  for (auto& [st, gauge] : s.states) {
    gauge->Set(st == state ? 1 : 0);
  }
  for (auto& [pattern, gauge] : s.anomaly_active) {
    gauge->Set(0);
  }
  for (const Anomaly& a : active) {
    const std::string pattern = entrowatch::v1::Pattern_Name(a.pattern());
    auto it = s.anomaly_active.find(pattern);
    if (it == s.anomaly_active.end()) {
      it = s.anomaly_active
               .emplace(pattern, &anomaly_active_->Add({{"run", run}, {"pattern", pattern}}))
               .first;
    }
    it->second->Set(1);
  }
  // Highest severity per active pattern (1 info, 2 warning, 3 critical, 0
  // none), so alert rules can page on warning and critical only.
  for (auto& [pattern, gauge] : s.anomaly_severity) {
    gauge->Set(0);
  }
  for (const Anomaly& a : active) {
    const std::string pattern = entrowatch::v1::Pattern_Name(a.pattern());
    auto it = s.anomaly_severity.find(pattern);
    if (it == s.anomaly_severity.end()) {
      it = s.anomaly_severity
               .emplace(pattern, &anomaly_severity_->Add({{"run", run}, {"pattern", pattern}}))
               .first;
    }
    it->second->Set(std::max(it->second->Value(), static_cast<double>(a.severity())));
  }
  for (const Anomaly& a : newly_fired) {
    const std::string pattern = entrowatch::v1::Pattern_Name(a.pattern());
    auto it = s.anomalies_total.find(pattern);
    if (it == s.anomalies_total.end()) {
      it = s.anomalies_total
               .emplace(pattern, &anomalies_total_->Add({{"run", run}, {"pattern", pattern}}))
               .first;
    }
    it->second->Increment();
  }
}

void Metrics::RunFinished(const std::string& run) {
  absl::MutexLock lock(&mu_);
  Series(run).finished->Set(1);
}

void Metrics::ForgetRun(const std::string& run) {
  absl::MutexLock lock(&mu_);
  auto node = runs_by_id_.extract(run);
  if (node.empty()) {
    return;
  }
  RunSeries& s = *node.mapped();
  for (auto& [phase, p] : s.phases) {
    entropy_mean_->Remove(p.mean);
    entropy_p10_->Remove(p.p10);
    entropy_p50_->Remove(p.p50);
    entropy_p90_->Remove(p.p90);
    normalized_->Remove(p.normalized);
    high_ratio_->Remove(p.high_ratio);
    entropy_hist_->Remove(p.histogram);
  }
  for (auto& [layer, l] : s.layers) {
    attention_->Remove(l.entropy);
    head_variance_->Remove(l.variance);
    for (prometheus::Gauge* head : l.heads) {
      head_entropy_->Remove(head);
    }
    if (l.max_logit != nullptr) {
      max_logit_->Remove(l.max_logit);
    }
  }
  for (auto& [name, g] : s.scalars) {
    scalar_->Remove(g);
  }
  if (s.generated_mean != nullptr) {
    generated_mean_->Remove(s.generated_mean);
  }
  grad_norm_->Remove(s.grad_norm);
  loss_->Remove(s.loss);
  learning_rate_->Remove(s.learning_rate);
  last_step_->Remove(s.last_step);
  last_report_->Remove(s.last_report);
  finished_->Remove(s.finished);
  steps_total_->Remove(s.steps_complete);
  steps_total_->Remove(s.steps_timed_out);
  for (auto& [st, g] : s.states) {
    health_state_->Remove(g);
  }
  for (auto& [p, g] : s.anomaly_active) {
    anomaly_active_->Remove(g);
  }
  for (auto& [p, g] : s.anomaly_severity) {
    anomaly_severity_->Remove(g);
  }
  for (auto& [p, c] : s.anomalies_total) {
    anomalies_total_->Remove(c);
  }
}

std::string Metrics::Scrape() const {
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace entrowatch::exporter
