#include "export/metrics.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <functional>
#include <iterator>
#include <string_view>
#include <utility>
#include <variant>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "common/version.h"
#include "prometheus/family.h"
#include "prometheus/text_serializer.h"

namespace entrowatch::exporter {
namespace {

using entrowatch::v1::Anomaly;
using entrowatch::v1::HealthState;
using entrowatch::v1::Phase;
using entrowatch::v1::StepSummary;

enum class Kind { kCounter, kGauge, kHistogram };

struct Row {
  const char* name;
  Kind kind;
  std::array<const char*, 3> labels;  // unused slots null
  const char* help;
};

// The metric catalog: every family entrowatchd exports, in one table. Code
// names a family by its name, checked at compile time (RowOf below): adding a
// metric is one row here, its use, and its line in docs/metrics.md (tested).
// clang-format off
constexpr Row kRows[] = {
    {"entrowatch_token_entropy_mean_nats", Kind::kGauge, {"run", "phase"},
     "Mean token entropy of the latest finalized step."},
    {"entrowatch_token_entropy_p10_nats", Kind::kGauge, {"run", "phase"},
     "10th percentile token entropy of the latest step."},
    {"entrowatch_token_entropy_p50_nats", Kind::kGauge, {"run", "phase"},
     "Median token entropy of the latest step."},
    {"entrowatch_token_entropy_p90_nats", Kind::kGauge, {"run", "phase"},
     "90th percentile token entropy of the latest step."},
    {"entrowatch_token_entropy_normalized_ratio", Kind::kGauge, {"run", "phase"},
     "Mean token entropy divided by log(vocabulary), latest step."},
    {"entrowatch_high_entropy_token_ratio", Kind::kGauge, {"run", "phase"},
     "Fraction of tokens whose normalized entropy reaches the high-entropy threshold."},
    {"entrowatch_token_entropy_nats", Kind::kHistogram, {"run", "phase"},
     "Distribution of accepted token entropies."},
    {"entrowatch_generated_token_entropy_mean_nats", Kind::kGauge, {"run"},
     "Mean entropy of GENERATED tokens (rollouts), latest step that had any."},
    {"entrowatch_attention_entropy_nats", Kind::kGauge, {"run", "layer"},
     "Attention entropy of a layer, mean over heads and queries, latest step."},
    {"entrowatch_attention_head_entropy_nats", Kind::kGauge, {"run", "layer", "head"},
     "Mean attention entropy of one head (metrics.per_head_series), latest step."},
    {"entrowatch_attention_head_entropy_variance", Kind::kGauge, {"run", "layer"},
     "Variance of per-head mean attention entropy within a layer, latest step."},
    {"entrowatch_attention_max_logit", Kind::kGauge, {"run", "layer"},
     "Maximum attention logit of a layer (max over heads and queries of q.k x scale), latest "
     "step that had one."},
    {"entrowatch_scalar", Kind::kGauge, {"run", "name"},
     "A named scalar (reward, kl, ...), mean over ranks, latest step that had it; the first 32 "
     "names of a run only."},
    {"entrowatch_grad_norm", Kind::kGauge, {"run"},
     "Global gradient L2 norm, latest step."},
    {"entrowatch_loss", Kind::kGauge, {"run"},
     "Training loss, latest step (mean over ranks)."},
    {"entrowatch_learning_rate", Kind::kGauge, {"run"},
     "Learning rate, latest step."},
    {"entrowatch_last_step", Kind::kGauge, {"run"},
     "Latest finalized step."},
    {"entrowatch_last_report_timestamp_seconds", Kind::kGauge, {"run"},
     "Unix time of the run's latest report."},
    {"entrowatch_run_finished", Kind::kGauge, {"run"},
     "1 once the run was marked finished."},
    {"entrowatch_steps_finalized_total", Kind::kCounter, {"run", "complete"},
     "Steps finalized; complete=false when finalized by timeout."},
    {"entrowatch_health_state", Kind::kGauge, {"run", "state"},
     "1 for the run's current health state."},
    {"entrowatch_anomaly_active", Kind::kGauge, {"run", "pattern"},
     "1 while an anomaly pattern is active for the run."},
    {"entrowatch_anomalies_total", Kind::kCounter, {"run", "pattern"},
     "Anomalies that became active."},
    {"entrowatch_anomaly_severity", Kind::kGauge, {"run", "pattern"},
     "Highest severity of an active anomaly pattern: 1 info, 2 warning, 3 critical (0 none)."},
    {"entrowatch_reports_total", Kind::kCounter, {"result"},
     "Reports by outcome."},
    {"entrowatch_ingest_bytes_total", Kind::kCounter, {},
     "Serialized bytes of reports received."},
    {"entrowatch_queue_reports", Kind::kGauge, {},
     "Reports accepted and not yet processed."},
    {"entrowatch_queue_bytes", Kind::kGauge, {},
     "Bytes of reports accepted and not yet processed."},
    {"entrowatch_queue_waiting_reports", Kind::kGauge, {},
     "Reports read from streams while the queue was full, waiting for room."},
    {"entrowatch_queue_waiting_bytes", Kind::kGauge, {},
     "Bytes of reports waiting for room; with entrowatch_queue_bytes, bounded by "
     "ingest.memory_limit_bytes."},
    {"entrowatch_compute_seconds", Kind::kHistogram, {"backend", "kind"},
     "Time to compute entropies of one report block."},
    {"entrowatch_compute_degraded", Kind::kGauge, {},
     "1 when the CUDA engine was wanted but the CPU engine is in use."},
    {"entrowatch_rows_skipped_total", Kind::kCounter, {"reason"},
     "Logits rows skipped (skip_nonfinite_rows)."},
    {"entrowatch_runs", Kind::kGauge, {},
     "Runs tracked."},
    {"entrowatch_resident_memory_bytes", Kind::kGauge, {},
     "Resident memory of entrowatchd (RSS)."},
    {"entrowatch_memory_budget_bytes", Kind::kGauge, {},
     "ingest.memory_budget_bytes: above it ingest sheds load (0 = no budget)."},
    {"entrowatch_streams_shed_total", Kind::kCounter, {},
     "New streams refused (RESOURCE_EXHAUSTED) while over the memory budget."},
    {"entrowatch_store_failures_total", Kind::kCounter, {"reason"},
     "Refused writes of the state database (state_dir) by reason: full (disk full or "
     "store.max_db_bytes), io or other; the affected reports were refused with UNAVAILABLE."},
    {"entrowatch_store_db_bytes", Kind::kGauge, {},
     "Bytes of the state database and its WAL on disk."},
    {"entrowatch_build_info", Kind::kGauge, {"version", "backend"},
     "Version and compute backend of this entrowatchd."},
};
// clang-format on

constexpr size_t kNoRow = std::size(kRows);

// The index of the catalog row named `name`; kNoRow when there is none.
constexpr size_t RowOf(std::string_view name) {
  for (size_t i = 0; i < std::size(kRows); ++i) {
    if (name == kRows[i].name) {
      return i;
    }
  }
  return kNoRow;
}

constexpr bool NamesAreUnique() {
  for (size_t i = 0; i < std::size(kRows); ++i) {
    if (RowOf(kRows[i].name) != i) {
      return false;
    }
  }
  return true;
}

constexpr bool CountersEndInTotal() {
  constexpr std::string_view kTotal = "_total";
  for (const Row& row : kRows) {
    const std::string_view name = row.name;
    const bool total =
        name.size() >= kTotal.size() && name.substr(name.size() - kTotal.size()) == kTotal;
    if ((row.kind == Kind::kCounter) != total) {
      return false;
    }
  }
  return true;
}

static_assert(NamesAreUnique(), "a metric name appears twice in the catalog");
static_assert(CountersEndInTotal(), "counters, and only counters, end in _total");

constexpr size_t LabelCount(size_t row) {
  size_t n = 0;
  while (n < kRows[row].labels.size() && kRows[row].labels[n] != nullptr) {
    ++n;
  }
  return n;
}

template <Kind kind>
struct MetricOf;
template <>
struct MetricOf<Kind::kCounter> {
  using type = prometheus::Counter;
};
template <>
struct MetricOf<Kind::kGauge> {
  using type = prometheus::Gauge;
};
template <>
struct MetricOf<Kind::kHistogram> {
  using type = prometheus::Histogram;
};
// The metric type of a row (of row 0 for kNoRow, which static_asserts reject).
template <size_t row>
using MetricT = typename MetricOf<kRows[row < kNoRow ? row : 0].kind>::type;

const char* KindName(Kind kind) {
  switch (kind) {
    case Kind::kCounter:
      return "counter";
    case Kind::kGauge:
      return "gauge";
    case Kind::kHistogram:
      return "histogram";
  }
  return "";
}

// Named-scalar series one run may export (entrowatch_scalar).
constexpr size_t kMaxScalarSeriesPerRun = 32;

constexpr HealthState kStates[] = {
    entrowatch::v1::WARMUP,       entrowatch::v1::NORMAL,
    entrowatch::v1::COMFORT_ZONE, entrowatch::v1::PANIC_ZONE,
    entrowatch::v1::STAGNATION,   entrowatch::v1::PATHOLOGICAL_CONFIDENCE};

constexpr Phase kPhases[] = {entrowatch::v1::TRAIN, entrowatch::v1::EVAL, entrowatch::v1::ROLLOUT};

// kPhases index of a phase; unspecified counts as train.
size_t PhaseIndex(Phase phase) {
  switch (phase) {
    case entrowatch::v1::EVAL:
      return 1;
    case entrowatch::v1::ROLLOUT:
      return 2;
    default:
      return 0;
  }
}

const prometheus::Histogram::BucketBoundaries kComputeBuckets = {1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3,
                                                                 0.01, 0.03, 0.1,  0.3,  1,    3};

// Outcomes whose series exist from the start, so rate() and alerts see zeros.
constexpr const char* kKnownOutcomes[] = {"ok",
                                          "duplicate",
                                          "late",
                                          "invalid_argument",
                                          "resource_exhausted",
                                          "failed_precondition",
                                          "unavailable",
                                          "internal"};
constexpr const char* kSkipReasons[] = {"nonfinite"};
constexpr const char* kStoreFailureReasons[] = {"full", "io", "other"};
constexpr const char* kComputeKinds[] = {"token", "attention"};

}  // namespace

std::vector<MetricDescriptor> MetricCatalog() {
  std::vector<MetricDescriptor> out;
  for (const Row& row : kRows) {
    MetricDescriptor d;
    d.name = row.name;
    d.type = KindName(row.kind);
    for (const char* label : row.labels) {
      if (label != nullptr) {
        d.labels.emplace_back(label);
      }
    }
    d.help = row.help;
    out.push_back(std::move(d));
  }
  return out;
}

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

// The registered families, one per catalog row, and typed access by row: the
// number of label values and the metric type are checked at compile time.
class Metrics::Catalog {
 public:
  explicit Catalog(prometheus::Registry& registry) {
    for (const Row& row : kRows) {
      switch (row.kind) {
        case Kind::kCounter:
          families_[&row - kRows] =
              &prometheus::BuildCounter().Name(row.name).Help(row.help).Register(registry);
          break;
        case Kind::kGauge:
          families_[&row - kRows] =
              &prometheus::BuildGauge().Name(row.name).Help(row.help).Register(registry);
          break;
        case Kind::kHistogram:
          families_[&row - kRows] =
              &prometheus::BuildHistogram().Name(row.name).Help(row.help).Register(registry);
          break;
      }
    }
  }

  template <size_t row>
  prometheus::Family<MetricT<row>>& family() const {
    static_assert(row < kNoRow, "no catalog row has this name");
    return *std::get<prometheus::Family<MetricT<row>>*>(families_[row]);
  }

  // The series of `row` with these label values, in the order of its labels.
  template <size_t row, typename... Values>
  MetricT<row>& Add(const Values&... values) const {
    static_assert(kRows[row].kind != Kind::kHistogram, "use AddHistogram");
    return family<row>().Add(LabelsOf<row>(values...));
  }

  template <size_t row, typename... Values>
  prometheus::Histogram& AddHistogram(const prometheus::Histogram::BucketBoundaries& buckets,
                                      const Values&... values) const {
    static_assert(kRows[row].kind == Kind::kHistogram, "use Add");
    return family<row>().Add(LabelsOf<row>(values...), buckets);
  }

  // Removes a series returned by Add (nothing for null).
  template <size_t row>
  void Remove(MetricT<row>* series) const {
    if (series != nullptr) {
      family<row>().Remove(series);
    }
  }

 private:
  template <size_t row, typename... Values>
  static prometheus::Labels LabelsOf(const Values&... values) {
    static_assert(sizeof...(Values) == LabelCount(row),
                  "label values must match the labels of the catalog row");
    prometheus::Labels labels;
    size_t i = 0;
    (labels.emplace(kRows[row].labels[i++], std::string(values)), ...);
    return labels;
  }

  using AnyFamily =
      std::variant<prometheus::Family<prometheus::Counter>*, prometheus::Family<prometheus::Gauge>*,
                   prometheus::Family<prometheus::Histogram>*>;
  std::array<AnyFamily, kNoRow> families_;
};

// Daemon-wide series of one family by the value of one label: the values
// known at start-up are created then and found without a lock; any other is
// created on first use under a mutex (the callers' value sets are bounded).
template <typename T>
class Metrics::SeriesByLabel {
 public:
  using Factory = std::function<T&(const std::string& value)>;

  SeriesByLabel(Factory factory, absl::Span<const char* const> known)
      : factory_(std::move(factory)) {
    for (const char* value : known) {
      known_.emplace_back(value, &factory_(value));
    }
  }

  T& Get(absl::string_view value) {
    for (const auto& [known, series] : known_) {
      if (known == value) {
        return *series;
      }
    }
    absl::MutexLock lock(&mu_);
    auto it = others_.find(value);
    if (it == others_.end()) {
      std::string key(value);
      T* series = &factory_(key);
      it = others_.emplace(std::move(key), series).first;
    }
    return *it->second;
  }

 private:
  const Factory factory_;
  std::vector<std::pair<std::string, T*>> known_;  // immutable after construction
  absl::Mutex mu_;
  std::map<std::string, T*, std::less<>> others_ ABSL_GUARDED_BY(mu_);
};

// The series of one run, cached: the fixed ones from Open, the others on the
// first use of their phase, layer, scalar name or pattern. Called one call at
// a time (the RunSink contract), so it keeps no lock of its own.
class Metrics::PrometheusRunSink final : public RunSink {
 public:
  PrometheusRunSink(const Catalog& catalog, const MetricsOptions& options, std::string run)
      : c_(catalog), options_(options), run_(std::move(run)) {
    grad_norm_ = &c_.Add<RowOf("entrowatch_grad_norm")>(run_);
    loss_ = &c_.Add<RowOf("entrowatch_loss")>(run_);
    learning_rate_ = &c_.Add<RowOf("entrowatch_learning_rate")>(run_);
    last_step_ = &c_.Add<RowOf("entrowatch_last_step")>(run_);
    last_report_ = &c_.Add<RowOf("entrowatch_last_report_timestamp_seconds")>(run_);
    finished_ = &c_.Add<RowOf("entrowatch_run_finished")>(run_);
    steps_complete_ = &c_.Add<RowOf("entrowatch_steps_finalized_total")>(run_, "true");
    steps_timed_out_ = &c_.Add<RowOf("entrowatch_steps_finalized_total")>(run_, "false");
    for (size_t i = 0; i < std::size(kStates); ++i) {
      states_[i] = &c_.Add<RowOf("entrowatch_health_state")>(
          run_, entrowatch::v1::HealthState_Name(kStates[i]));
    }
  }
  PrometheusRunSink(const PrometheusRunSink&) = delete;
  PrometheusRunSink& operator=(const PrometheusRunSink&) = delete;
  ~PrometheusRunSink() override { RemoveAll(); }

  void OnReportAccepted(absl::Time wall, Phase phase,
                        absl::Span<const float> token_entropies) override {
    ReportSeen(absl::ToDoubleSeconds(wall - absl::UnixEpoch()));
    ObserveEntropies(phase, token_entropies);
  }

  void OnStepFinalized(const Step& step) override {
    if (step.replayed && any_step_ && step.summary->step() <= last_step_seen_) {
      return;  // counted when it was first finalized
    }
    StepFinalized(*step.summary);
  }

  void OnVerdict(const entrowatch::v1::Verdict& verdict, const std::vector<Anomaly>& active,
                 const std::vector<Anomaly>& newly_fired) override {
    Health(verdict.state(), active, newly_fired);
  }

  void OnRunEnded(RunEnd why) override {
    if (why == RunEnd::kFinished) {
      finished_->Set(1);
    } else {
      RemoveAll();
    }
  }

  void ReportSeen(double unix_seconds) { last_report_->Set(unix_seconds); }
  void Finished() { finished_->Set(1); }

  void ObserveEntropies(Phase phase, absl::Span<const float> entropies) {
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
    PhaseOf(phase).histogram->ObserveMultiple(increments, sum);
  }

  void StepFinalized(const StepSummary& step) {
    any_step_ = true;
    last_step_seen_ = std::max(last_step_seen_, step.step());
    last_step_->Set(static_cast<double>(step.step()));
    (step.complete() ? steps_complete_ : steps_timed_out_)->Increment();
    if (step.token_count() > 0) {
      PhaseSeries& p = PhaseOf(step.phase());
      p.mean->Set(step.entropy_mean());
      p.p10->Set(step.entropy_p10());
      p.p50->Set(step.entropy_p50());
      p.p90->Set(step.entropy_p90());
      p.normalized->Set(step.normalized_entropy_mean());
      p.high_ratio->Set(step.high_entropy_ratio());
    }
    if (step.generated_token_count() > 0) {
      if (generated_mean_ == nullptr) {
        generated_mean_ = &c_.Add<RowOf("entrowatch_generated_token_entropy_mean_nats")>(run_);
      }
      generated_mean_->Set(step.generated_entropy_mean());
    }
    if (step.has_grad_norm()) {
      grad_norm_->Set(step.grad_norm());
    }
    if (step.has_loss()) {
      loss_->Set(step.loss());
    }
    if (step.learning_rate() > 0) {
      learning_rate_->Set(step.learning_rate());
    }
    // Bounded cardinality: a run exports its first kMaxScalarSeriesPerRun
    // names (names are validated at ingest); later names stay in the API.
    for (const auto& [name, value] : step.scalars()) {
      auto it = scalars_.find(name);
      if (it == scalars_.end()) {
        if (scalars_.size() >= kMaxScalarSeriesPerRun) {
          continue;
        }
        it = scalars_.emplace(name, &c_.Add<RowOf("entrowatch_scalar")>(run_, name)).first;
      }
      it->second->Set(value);
    }
    for (const auto& layer : step.layers()) {
      LayerSeries* l = LayerOf(layer.layer());
      if (l == nullptr) {
        continue;
      }
      l->entropy->Set(layer.mean_entropy());
      l->variance->Set(layer.head_variance());
      if (layer.has_max_logit()) {
        if (l->max_logit == nullptr) {
          l->max_logit =
              &c_.Add<RowOf("entrowatch_attention_max_logit")>(run_, std::to_string(layer.layer()));
        }
        l->max_logit->Set(layer.max_logit());
      }
      if (options_.per_head_series) {
        const int n = std::min(layer.head_mean_entropy_size(), options_.max_heads_per_layer);
        for (int h = static_cast<int>(l->heads.size()); h < n; ++h) {
          l->heads.push_back(&c_.Add<RowOf("entrowatch_attention_head_entropy_nats")>(
              run_, std::to_string(layer.layer()), std::to_string(h)));
        }
        for (int h = 0; h < n; ++h) {
          l->heads[h]->Set(layer.head_mean_entropy(h));
        }
      }
    }
  }

  void Health(HealthState state, const std::vector<Anomaly>& active,
              const std::vector<Anomaly>& newly_fired) {
    for (size_t i = 0; i < std::size(kStates); ++i) {
      states_[i]->Set(kStates[i] == state ? 1 : 0);
    }
    // Highest severity per active pattern (1 info, 2 warning, 3 critical, 0
    // none), so alert rules can page on warning and critical only.
    for (auto& [pattern, p] : patterns_) {
      p.active->Set(0);
      p.severity->Set(0);
    }
    for (const Anomaly& a : active) {
      PatternSeries& p = PatternOf(a.pattern());
      p.active->Set(1);
      p.severity->Set(std::max(p.severity->Value(), static_cast<double>(a.severity())));
    }
    for (const Anomaly& a : newly_fired) {
      PatternOf(a.pattern()).fired->Increment();
    }
  }

 private:
  struct PhaseSeries {
    prometheus::Gauge* mean = nullptr;
    prometheus::Gauge* p10 = nullptr;
    prometheus::Gauge* p50 = nullptr;
    prometheus::Gauge* p90 = nullptr;
    prometheus::Gauge* normalized = nullptr;
    prometheus::Gauge* high_ratio = nullptr;
    prometheus::Histogram* histogram = nullptr;
  };
  struct LayerSeries {
    prometheus::Gauge* entropy = nullptr;
    prometheus::Gauge* variance = nullptr;
    std::vector<prometheus::Gauge*> heads;   // with per_head_series
    prometheus::Gauge* max_logit = nullptr;  // once the layer reported one
  };
  struct PatternSeries {
    prometheus::Gauge* active = nullptr;
    prometheus::Gauge* severity = nullptr;
    prometheus::Counter* fired = nullptr;
  };

  PhaseSeries& PhaseOf(Phase phase) {
    const size_t index = PhaseIndex(phase);
    PhaseSeries& p = phases_[index];
    if (p.mean == nullptr) {
      const std::string label = PhaseLabel(kPhases[index]);
      p.mean = &c_.Add<RowOf("entrowatch_token_entropy_mean_nats")>(run_, label);
      p.p10 = &c_.Add<RowOf("entrowatch_token_entropy_p10_nats")>(run_, label);
      p.p50 = &c_.Add<RowOf("entrowatch_token_entropy_p50_nats")>(run_, label);
      p.p90 = &c_.Add<RowOf("entrowatch_token_entropy_p90_nats")>(run_, label);
      p.normalized = &c_.Add<RowOf("entrowatch_token_entropy_normalized_ratio")>(run_, label);
      p.high_ratio = &c_.Add<RowOf("entrowatch_high_entropy_token_ratio")>(run_, label);
      p.histogram = &c_.AddHistogram<RowOf("entrowatch_token_entropy_nats")>(
          options_.entropy_buckets, run_, label);
    }
    return p;
  }

  // Null beyond max_layers_per_run layers.
  LayerSeries* LayerOf(uint32_t layer) {
    auto it = layers_.find(layer);
    if (it == layers_.end()) {
      if (static_cast<int>(layers_.size()) >= options_.max_layers_per_run) {
        return nullptr;
      }
      const std::string label = std::to_string(layer);
      LayerSeries l;
      l.entropy = &c_.Add<RowOf("entrowatch_attention_entropy_nats")>(run_, label);
      l.variance = &c_.Add<RowOf("entrowatch_attention_head_entropy_variance")>(run_, label);
      it = layers_.emplace(layer, std::move(l)).first;
    }
    return &it->second;
  }

  PatternSeries& PatternOf(entrowatch::v1::Pattern pattern) {
    auto it = patterns_.find(pattern);
    if (it == patterns_.end()) {
      const std::string label = entrowatch::v1::Pattern_Name(pattern);
      PatternSeries p;
      p.active = &c_.Add<RowOf("entrowatch_anomaly_active")>(run_, label);
      p.severity = &c_.Add<RowOf("entrowatch_anomaly_severity")>(run_, label);
      p.fired = &c_.Add<RowOf("entrowatch_anomalies_total")>(run_, label);
      it = patterns_.emplace(pattern, p).first;
    }
    return it->second;
  }

  void RemoveAll() {
    if (removed_) {
      return;
    }
    removed_ = true;
    for (PhaseSeries& p : phases_) {
      c_.Remove<RowOf("entrowatch_token_entropy_mean_nats")>(p.mean);
      c_.Remove<RowOf("entrowatch_token_entropy_p10_nats")>(p.p10);
      c_.Remove<RowOf("entrowatch_token_entropy_p50_nats")>(p.p50);
      c_.Remove<RowOf("entrowatch_token_entropy_p90_nats")>(p.p90);
      c_.Remove<RowOf("entrowatch_token_entropy_normalized_ratio")>(p.normalized);
      c_.Remove<RowOf("entrowatch_high_entropy_token_ratio")>(p.high_ratio);
      c_.Remove<RowOf("entrowatch_token_entropy_nats")>(p.histogram);
    }
    for (auto& [layer, l] : layers_) {
      c_.Remove<RowOf("entrowatch_attention_entropy_nats")>(l.entropy);
      c_.Remove<RowOf("entrowatch_attention_head_entropy_variance")>(l.variance);
      c_.Remove<RowOf("entrowatch_attention_max_logit")>(l.max_logit);
      for (prometheus::Gauge* head : l.heads) {
        c_.Remove<RowOf("entrowatch_attention_head_entropy_nats")>(head);
      }
    }
    for (auto& [name, gauge] : scalars_) {
      c_.Remove<RowOf("entrowatch_scalar")>(gauge);
    }
    for (auto& [pattern, p] : patterns_) {
      c_.Remove<RowOf("entrowatch_anomaly_active")>(p.active);
      c_.Remove<RowOf("entrowatch_anomaly_severity")>(p.severity);
      c_.Remove<RowOf("entrowatch_anomalies_total")>(p.fired);
    }
    for (prometheus::Gauge* state : states_) {
      c_.Remove<RowOf("entrowatch_health_state")>(state);
    }
    c_.Remove<RowOf("entrowatch_generated_token_entropy_mean_nats")>(generated_mean_);
    c_.Remove<RowOf("entrowatch_grad_norm")>(grad_norm_);
    c_.Remove<RowOf("entrowatch_loss")>(loss_);
    c_.Remove<RowOf("entrowatch_learning_rate")>(learning_rate_);
    c_.Remove<RowOf("entrowatch_last_step")>(last_step_);
    c_.Remove<RowOf("entrowatch_last_report_timestamp_seconds")>(last_report_);
    c_.Remove<RowOf("entrowatch_run_finished")>(finished_);
    c_.Remove<RowOf("entrowatch_steps_finalized_total")>(steps_complete_);
    c_.Remove<RowOf("entrowatch_steps_finalized_total")>(steps_timed_out_);
  }

  const Catalog& c_;
  const MetricsOptions& options_;
  const std::string run_;
  prometheus::Gauge* grad_norm_;
  prometheus::Gauge* loss_;
  prometheus::Gauge* learning_rate_;
  prometheus::Gauge* last_step_;
  prometheus::Gauge* last_report_;
  prometheus::Gauge* finished_;
  prometheus::Counter* steps_complete_;
  prometheus::Counter* steps_timed_out_;
  std::array<prometheus::Gauge*, std::size(kStates)> states_;
  std::array<PhaseSeries, std::size(kPhases)> phases_;
  prometheus::Gauge* generated_mean_ = nullptr;
  absl::flat_hash_map<uint32_t, LayerSeries> layers_;
  absl::flat_hash_map<std::string, prometheus::Gauge*> scalars_;
  absl::flat_hash_map<int, PatternSeries> patterns_;
  bool any_step_ = false;
  uint64_t last_step_seen_ = 0;
  bool removed_ = false;
};

Metrics::Metrics(const MetricsOptions& options)
    : options_(options),
      registry_(std::make_shared<prometheus::Registry>()),
      catalog_(std::make_unique<Catalog>(*registry_)) {
  const Catalog& c = *catalog_;
  ingest_bytes_ = &c.Add<RowOf("entrowatch_ingest_bytes_total")>();
  streams_shed_ = &c.Add<RowOf("entrowatch_streams_shed_total")>();
  queue_reports_ = &c.Add<RowOf("entrowatch_queue_reports")>();
  queue_bytes_ = &c.Add<RowOf("entrowatch_queue_bytes")>();
  queue_waiting_reports_ = &c.Add<RowOf("entrowatch_queue_waiting_reports")>();
  queue_waiting_bytes_ = &c.Add<RowOf("entrowatch_queue_waiting_bytes")>();
  compute_degraded_ = &c.Add<RowOf("entrowatch_compute_degraded")>();
  runs_ = &c.Add<RowOf("entrowatch_runs")>();
  resident_bytes_ = &c.Add<RowOf("entrowatch_resident_memory_bytes")>();
  memory_budget_bytes_ = &c.Add<RowOf("entrowatch_memory_budget_bytes")>();
  store_bytes_ = &c.Add<RowOf("entrowatch_store_db_bytes")>();
  c.Add<RowOf("entrowatch_build_info")>(kVersion, options_.backend).Set(1);
  outcomes_ = std::make_unique<SeriesByLabel<prometheus::Counter>>(
      [&c](const std::string& result) -> prometheus::Counter& {
        return c.Add<RowOf("entrowatch_reports_total")>(result);
      },
      kKnownOutcomes);
  rows_skipped_ = std::make_unique<SeriesByLabel<prometheus::Counter>>(
      [&c](const std::string& reason) -> prometheus::Counter& {
        return c.Add<RowOf("entrowatch_rows_skipped_total")>(reason);
      },
      kSkipReasons);
  store_failures_ = std::make_unique<SeriesByLabel<prometheus::Counter>>(
      [&c](const std::string& reason) -> prometheus::Counter& {
        return c.Add<RowOf("entrowatch_store_failures_total")>(reason);
      },
      kStoreFailureReasons);
  compute_seconds_ = std::make_unique<SeriesByLabel<prometheus::Histogram>>(
      [&c, backend = options_.backend](const std::string& kind) -> prometheus::Histogram& {
        return c.AddHistogram<RowOf("entrowatch_compute_seconds")>(kComputeBuckets, backend, kind);
      },
      kComputeKinds);
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

void Metrics::ReportOutcome(absl::string_view result) { outcomes_->Get(result).Increment(); }

void Metrics::IngestBytes(int64_t bytes) { ingest_bytes_->Increment(static_cast<double>(bytes)); }

void Metrics::QueueLevel(int64_t reports, int64_t bytes, int64_t waiting_reports,
                         int64_t waiting_bytes) {
  queue_reports_->Set(static_cast<double>(reports));
  queue_bytes_->Set(static_cast<double>(bytes));
  queue_waiting_reports_->Set(static_cast<double>(waiting_reports));
  queue_waiting_bytes_->Set(static_cast<double>(waiting_bytes));
}

void Metrics::RowsSkipped(absl::string_view reason, int64_t rows) {
  rows_skipped_->Get(reason).Increment(static_cast<double>(rows));
}

void Metrics::ComputeSeconds(absl::string_view kind, double seconds) {
  compute_seconds_->Get(kind).Observe(seconds);
}

void Metrics::SetComputeDegraded(bool degraded) { compute_degraded_->Set(degraded ? 1 : 0); }

void Metrics::StoreFailure(absl::string_view reason) { store_failures_->Get(reason).Increment(); }

void Metrics::SetStoreBytes(int64_t bytes) { store_bytes_->Set(static_cast<double>(bytes)); }

void Metrics::SetRuns(int64_t runs) { runs_->Set(static_cast<double>(runs)); }

void Metrics::MemoryLevel(int64_t resident_bytes, int64_t budget_bytes) {
  resident_bytes_->Set(static_cast<double>(resident_bytes));
  memory_budget_bytes_->Set(static_cast<double>(budget_bytes));
}

void Metrics::StreamShed() { streams_shed_->Increment(); }

std::unique_ptr<RunSink> Metrics::Open(const std::string& run_id) {
  return std::make_unique<PrometheusRunSink>(*catalog_, options_, run_id);
}

Metrics::PrometheusRunSink& Metrics::LegacyRun(const std::string& run) {
  auto& slot = legacy_runs_[run];
  if (slot == nullptr) {
    slot = std::make_unique<PrometheusRunSink>(*catalog_, options_, run);
  }
  return *slot;
}

void Metrics::TokenEntropies(const std::string& run, Phase phase,
                             const std::vector<float>& entropies) {
  absl::MutexLock lock(&legacy_mu_);
  LegacyRun(run).ObserveEntropies(phase, entropies);
}

void Metrics::StepFinalized(const std::string& run, const StepSummary& step) {
  absl::MutexLock lock(&legacy_mu_);
  LegacyRun(run).StepFinalized(step);
}

void Metrics::ReportSeen(const std::string& run, double unix_seconds) {
  absl::MutexLock lock(&legacy_mu_);
  LegacyRun(run).ReportSeen(unix_seconds);
}

void Metrics::Health(const std::string& run, HealthState state, const std::vector<Anomaly>& active,
                     const std::vector<Anomaly>& newly_fired) {
  absl::MutexLock lock(&legacy_mu_);
  LegacyRun(run).Health(state, active, newly_fired);
}

void Metrics::RunFinished(const std::string& run) {
  absl::MutexLock lock(&legacy_mu_);
  LegacyRun(run).Finished();
}

void Metrics::ForgetRun(const std::string& run) {
  absl::MutexLock lock(&legacy_mu_);
  legacy_runs_.erase(run);
}

std::string Metrics::Scrape() const {
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace entrowatch::exporter
