#include "daemon/exporter_sinks.h"

#include <utility>
#include <vector>

namespace entrowatch::daemon {
namespace {

using entrowatch::v1::Anomaly;
using entrowatch::v1::Verdict;
using exporter::RunEnd;
using exporter::RunSink;

class MetricsRunSink final : public RunSink {
 public:
  MetricsRunSink(exporter::Metrics* metrics, std::string run) : metrics_(metrics), run_(std::move(run)) {}
  void OnReportAccepted(absl::Time wall, entrowatch::v1::Phase phase,
                        absl::Span<const float> entropies) override {
    metrics_->ReportSeen(run_, absl::ToDoubleSeconds(wall - absl::UnixEpoch()));
    if (!entropies.empty()) {
      metrics_->TokenEntropies(run_, phase, std::vector<float>(entropies.begin(), entropies.end()));
    }
  }
  void OnStepFinalized(const Step& step) override {
    if (!step.counted_before) {
      metrics_->StepFinalized(run_, *step.summary);
    }
  }
  void OnVerdict(const Verdict& verdict, const std::vector<Anomaly>& active,
                 const std::vector<Anomaly>& newly_fired) override {
    metrics_->Health(run_, verdict.state(), active, newly_fired);
  }
  void OnRunEnded(RunEnd why) override {
    if (why == RunEnd::kFinished) {
      metrics_->RunFinished(run_);
    } else {
      metrics_->ForgetRun(run_);
    }
  }

 private:
  exporter::Metrics* const metrics_;
  const std::string run_;
};

class AlertRunSink final : public RunSink {
 public:
  AlertRunSink(alertmanager::AlertmanagerPusher* pusher, std::string run)
      : pusher_(pusher), run_(std::move(run)) {}
  void OnReportAccepted(absl::Time, entrowatch::v1::Phase, absl::Span<const float>) override {}
  void OnStepFinalized(const Step&) override {}
  void OnVerdict(const Verdict& verdict, const std::vector<Anomaly>& active,
                 const std::vector<Anomaly>&) override {
    pusher_->Update(run_, active, verdict);
  }
  void OnRunEnded(RunEnd why) override {
    if (why == RunEnd::kExpired) {
      pusher_->Update(run_, {}, Verdict());  // resolves its alerts
    }
  }

 private:
  alertmanager::AlertmanagerPusher* const pusher_;
  const std::string run_;
};

class HistoryRunSink final : public RunSink {
 public:
  HistoryRunSink(console::RunHistory* history, std::string run) : history_(history), run_(std::move(run)) {}
  void OnReportAccepted(absl::Time, entrowatch::v1::Phase, absl::Span<const float>) override {}
  void OnStepFinalized(const Step& step) override {
    history_->Record(run_, *step.summary, *step.verdict, *step.fired);
  }
  void OnVerdict(const Verdict&, const std::vector<Anomaly>&,
                 const std::vector<Anomaly>&) override {}
  void OnRunEnded(RunEnd why) override {
    if (why == RunEnd::kExpired) {
      history_->Forget(run_);
    }
  }

 private:
  console::RunHistory* const history_;
  const std::string run_;
};

}  // namespace

std::unique_ptr<RunSink> MetricsSink::Open(const std::string& run_id) {
  return std::make_unique<MetricsRunSink>(metrics_, run_id);
}

std::unique_ptr<RunSink> AlertSink::Open(const std::string& run_id) {
  return std::make_unique<AlertRunSink>(pusher_, run_id);
}

std::unique_ptr<RunSink> HistorySink::Open(const std::string& run_id) {
  return std::make_unique<HistoryRunSink>(history_, run_id);
}

}  // namespace entrowatch::daemon
