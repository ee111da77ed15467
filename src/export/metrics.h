#pragma once

// Prometheus export. Every metric family is registered once at start-up from
// the catalog (metrics.cc); per-run series are created when a run appears and
// removed when it expires, so label cardinality is bounded by runs.max_runs.
// Thread-safe.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "entrowatch/v1/entrowatch.pb.h"
#include "export/http_server.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace entrowatch::exporter {

struct MetricsOptions {
  std::vector<double> entropy_buckets;
  std::string backend;           // compute backend in use, for entrowatch_build_info
  int max_layers_per_run = 256;  // attention series per run beyond this are not exported
  bool per_head_series = false;  // entrowatch_attention_head_entropy_nats
  int max_heads_per_layer = 256;
};

class Metrics {
 public:
  explicit Metrics(const MetricsOptions& options);
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;
  ~Metrics();

  // Serves /metrics on host:port (port 0 picks one). Fails when the address
  // cannot be bound.
  absl::Status Serve(const std::string& listen);
  // The listener behind /metrics, for other handlers (the console). After
  // Serve; null before.
  HttpServer* http_server() const { return http_.get(); }
  // The bound port, once serving.
  int port() const { return port_; }
  // Requires HTTP basic auth ("user:password") on /metrics and every other
  // path of its listener. After Serve.
  void RequireBasicAuth(const std::string& user_password);
  // Stops serving /metrics (promptly; also done by the destructor).
  void StopServing();
  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

  // Ingest.
  void ReportOutcome(absl::string_view result);
  void IngestBytes(int64_t bytes);
  void QueueLevel(int64_t reports, int64_t bytes, int64_t waiting_reports, int64_t waiting_bytes);
  void RowsSkipped(absl::string_view reason, int64_t rows);
  void ComputeSeconds(absl::string_view kind, double seconds);
  void SetComputeDegraded(bool degraded);
  void SetBackend(const std::string& backend);
  void SetRuns(int64_t runs);
  // The daemon's resident memory and its budget (0 = none).
  void MemoryLevel(int64_t resident_bytes, int64_t budget_bytes);
  // A new stream refused because the daemon was over its memory budget.
  void StreamShed();
  // A write of the state database failed; reason: full, io or other.
  void StoreFailure(absl::string_view reason);
  void SetStoreBytes(int64_t bytes);

  // Runs. Each call is cheap after the first for a run.
  void TokenEntropies(const std::string& run, entrowatch::v1::Phase phase,
                      const std::vector<float>& entropies);
  void StepFinalized(const std::string& run, const entrowatch::v1::StepSummary& step);
  void ReportSeen(const std::string& run, double unix_seconds);
  void Health(const std::string& run, entrowatch::v1::HealthState state,
              const std::vector<entrowatch::v1::Anomaly>& active,
              const std::vector<entrowatch::v1::Anomaly>& newly_fired);
  void RunFinished(const std::string& run);
  // Removes every series of the run.
  void ForgetRun(const std::string& run);

  // The text exposition of everything registered (tests, `entrowatch status`).
  std::string Scrape() const;

 private:
  struct RunSeries;
  RunSeries& Series(const std::string& run) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  MetricsOptions options_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<HttpServer> http_;
  int port_ = 0;

  // Families (owned by the registry).
  prometheus::Family<prometheus::Gauge>* entropy_mean_;
  prometheus::Family<prometheus::Gauge>* entropy_p10_;
  prometheus::Family<prometheus::Gauge>* entropy_p50_;
  prometheus::Family<prometheus::Gauge>* entropy_p90_;
  prometheus::Family<prometheus::Gauge>* normalized_;
  prometheus::Family<prometheus::Gauge>* high_ratio_;
  prometheus::Family<prometheus::Histogram>* entropy_hist_;
  prometheus::Family<prometheus::Gauge>* generated_mean_;
  prometheus::Family<prometheus::Gauge>* attention_;
  prometheus::Family<prometheus::Gauge>* head_variance_;
  prometheus::Family<prometheus::Gauge>* head_entropy_;
  prometheus::Family<prometheus::Gauge>* max_logit_;
  prometheus::Family<prometheus::Gauge>* scalar_;
  prometheus::Family<prometheus::Gauge>* grad_norm_;
  prometheus::Family<prometheus::Gauge>* loss_;
  prometheus::Family<prometheus::Gauge>* learning_rate_;
  prometheus::Family<prometheus::Gauge>* last_step_;
  prometheus::Family<prometheus::Gauge>* last_report_;
  prometheus::Family<prometheus::Gauge>* finished_;
  prometheus::Family<prometheus::Counter>* steps_total_;
  prometheus::Family<prometheus::Gauge>* health_state_;
  prometheus::Family<prometheus::Gauge>* anomaly_active_;
  prometheus::Family<prometheus::Gauge>* anomaly_severity_;
  prometheus::Family<prometheus::Counter>* anomalies_total_;
  prometheus::Family<prometheus::Counter>* reports_total_;
  prometheus::Family<prometheus::Counter>* ingest_bytes_;
  prometheus::Family<prometheus::Gauge>* queue_reports_;
  prometheus::Family<prometheus::Gauge>* queue_bytes_;
  prometheus::Family<prometheus::Gauge>* queue_waiting_reports_;
  prometheus::Family<prometheus::Gauge>* queue_waiting_bytes_;
  prometheus::Family<prometheus::Histogram>* compute_seconds_;
  prometheus::Family<prometheus::Gauge>* compute_degraded_;
  prometheus::Family<prometheus::Counter>* rows_skipped_;
  prometheus::Family<prometheus::Gauge>* runs_;
  prometheus::Family<prometheus::Gauge>* resident_bytes_;
  prometheus::Family<prometheus::Gauge>* memory_budget_bytes_;
  prometheus::Family<prometheus::Counter>* streams_shed_;
  prometheus::Family<prometheus::Counter>* store_failures_;
  prometheus::Family<prometheus::Gauge>* store_bytes_;
  prometheus::Family<prometheus::Gauge>* build_info_;

  mutable absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<RunSeries>> runs_by_id_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, prometheus::Counter*> outcome_counters_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, prometheus::Counter*> skipped_counters_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, prometheus::Histogram*> compute_histograms_ ABSL_GUARDED_BY(mu_);
  prometheus::Gauge* build_info_gauge_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::string backend_ ABSL_GUARDED_BY(mu_);
};

// The Prometheus `result` label of an Ack: ok, duplicate, late, or the
// lower-case gRPC code name (invalid_argument, resource_exhausted, ...).
std::string ResultLabel(const entrowatch::v1::Ack& ack);

// Lower-case names used as label values.
std::string PhaseLabel(entrowatch::v1::Phase phase);

}  // namespace entrowatch::exporter
