#pragma once

// Sinks over the daemon's concrete outputs: the Prometheus exporter (also the
// processor's daemon-wide stats), the Alertmanager pusher and the console's
// run history. Each forwards the sink calls to the object it wraps, which
// must outlive it.

#include <memory>
#include <string>

#include "console/run_history.h"
#include "export/alertmanager/alertmanager_pusher.h"
#include "export/metrics.h"
#include "export/sink.h"

namespace entrowatch::daemon {

class MetricsSink final : public exporter::Sink, public exporter::ProcessorStats {
 public:
  explicit MetricsSink(exporter::Metrics* metrics) : metrics_(metrics) {}
  std::unique_ptr<exporter::RunSink> Open(const std::string& run_id) override;

  void ReportOutcome(absl::string_view result) override { metrics_->ReportOutcome(result); }
  void IngestBytes(int64_t bytes) override { metrics_->IngestBytes(bytes); }
  void StreamShed() override { metrics_->StreamShed(); }
  void ComputeSeconds(absl::string_view kind, double seconds) override {
    metrics_->ComputeSeconds(kind, seconds);
  }
  void SetComputeDegraded(bool degraded) override { metrics_->SetComputeDegraded(degraded); }
  void RowsSkipped(absl::string_view reason, int64_t rows) override {
    metrics_->RowsSkipped(reason, rows);
  }
  void SetRuns(int64_t runs) override { metrics_->SetRuns(runs); }
  void StoreFailure(absl::string_view reason) override { metrics_->StoreFailure(reason); }
  void SetStoreBytes(int64_t bytes) override { metrics_->SetStoreBytes(bytes); }

 private:
  exporter::Metrics* const metrics_;
};

class AlertSink final : public exporter::Sink {
 public:
  explicit AlertSink(alertmanager::AlertmanagerPusher* pusher) : pusher_(pusher) {}
  std::unique_ptr<exporter::RunSink> Open(const std::string& run_id) override;

 private:
  alertmanager::AlertmanagerPusher* const pusher_;
};

class HistorySink final : public exporter::Sink {
 public:
  explicit HistorySink(console::RunHistory* history) : history_(history) {}
  std::unique_ptr<exporter::RunSink> Open(const std::string& run_id) override;

 private:
  console::RunHistory* const history_;
};

}  // namespace entrowatch::daemon
