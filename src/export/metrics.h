#pragma once

// Prometheus export. Every metric family is registered once at start-up from
// the catalog (one table in metrics.cc: name, type, labels, help). A run's
// series are created when the run is opened as a sink and cached on its
// RunSink, so per-run updates take no lock and look nothing up; they are
// removed when the run expires, so label cardinality is bounded by
// runs.max_runs. Daemon-wide series with a label are created at start-up for
// the label values known then. Thread-safe.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "entrowatch/v1/entrowatch.pb.h"
#include "export/http_server.h"
#include "export/sink.h"
#include "prometheus/counter.h"
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

// One row of the metric catalog.
struct MetricDescriptor {
  absl::string_view name;
  absl::string_view type;  // counter, gauge or histogram
  std::vector<absl::string_view> labels;
  absl::string_view help;
};

// Every family entrowatchd exports, in catalog order.
std::vector<MetricDescriptor> MetricCatalog();

class Metrics final : public ProcessorStats, public Sink {
 public:
  explicit Metrics(const MetricsOptions& options);
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;
  ~Metrics() override;

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

  // ProcessorStats. Lock-free for the label values known at start-up.
  void ReportOutcome(absl::string_view result) override;
  void IngestBytes(int64_t bytes) override;
  void StreamShed() override;
  void ComputeSeconds(absl::string_view kind, double seconds) override;
  void SetComputeDegraded(bool degraded) override;
  void RowsSkipped(absl::string_view reason, int64_t rows) override;
  void SetRuns(int64_t runs) override;
  void StoreFailure(absl::string_view reason) override;
  void SetStoreBytes(int64_t bytes) override;

  // Ingest queue levels and the daemon's resident memory against its budget
  // (0 = none), sampled periodically.
  void QueueLevel(int64_t reports, int64_t bytes, int64_t waiting_reports, int64_t waiting_bytes);
  void MemoryLevel(int64_t resident_bytes, int64_t budget_bytes);

  // Sink: creates the run's fixed series (more appear on first use of a
  // phase, layer, scalar name or anomaly pattern and are cached too). The
  // RunSink removes every series of the run when the run expires or the
  // RunSink is destroyed; the Metrics must outlive it.
  std::unique_ptr<RunSink> Open(const std::string& run_id) override;

  // Per-run updates by run id, for callers that do not hold the run's
  // RunSink: each finds or opens one in a map under a mutex and forwards.
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
  class Catalog;
  class PrometheusRunSink;
  template <typename T>
  class SeriesByLabel;

  PrometheusRunSink& LegacyRun(const std::string& run) ABSL_EXCLUSIVE_LOCKS_REQUIRED(legacy_mu_);

  const MetricsOptions options_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<Catalog> catalog_;
  std::unique_ptr<HttpServer> http_;
  int port_ = 0;

  // Daemon-wide series, created by the constructor and never removed.
  prometheus::Counter* ingest_bytes_;
  prometheus::Counter* streams_shed_;
  prometheus::Gauge* queue_reports_;
  prometheus::Gauge* queue_bytes_;
  prometheus::Gauge* queue_waiting_reports_;
  prometheus::Gauge* queue_waiting_bytes_;
  prometheus::Gauge* compute_degraded_;
  prometheus::Gauge* runs_;
  prometheus::Gauge* resident_bytes_;
  prometheus::Gauge* memory_budget_bytes_;
  prometheus::Gauge* store_bytes_;
  std::unique_ptr<SeriesByLabel<prometheus::Counter>> outcomes_;
  std::unique_ptr<SeriesByLabel<prometheus::Counter>> rows_skipped_;
  std::unique_ptr<SeriesByLabel<prometheus::Counter>> store_failures_;
  std::unique_ptr<SeriesByLabel<prometheus::Histogram>> compute_seconds_;

  absl::Mutex legacy_mu_;
  std::map<std::string, std::unique_ptr<PrometheusRunSink>> legacy_runs_
      ABSL_GUARDED_BY(legacy_mu_);
};

// The Prometheus `result` label of an Ack: ok, duplicate, late, or the
// lower-case gRPC code name (invalid_argument, resource_exhausted, ...).
std::string ResultLabel(const entrowatch::v1::Ack& ack);

// Lower-case names used as label values.
std::string PhaseLabel(entrowatch::v1::Phase phase);

}  // namespace entrowatch::exporter
