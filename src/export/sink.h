#pragma once

// Everything that leaves the daemon about runs goes through sinks: the
// Prometheus exporter, the Alertmanager pusher and the console's history are
// three of them. The processor calls sinks, never a concrete exporter.
//
// A Sink is daemon-wide; Open() gives the per-run part, a RunSink, which the
// run keeps for its lifetime, so a sink caches its per-run handles (series,
// alert keys) there and the hot path never looks a run up by id. RunSink
// calls for one run come one at a time, under the run's lock: they must not
// block (queue network work) and must not call back into the processor.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "entrowatch/v1/entrowatch.pb.h"

namespace entrowatch::exporter {

// Why a run stops being tracked.
enum class RunEnd {
  kFinished,  // EndRun, or a report marked final: the run's last values stay
  kExpired,   // idle past runs.idle_expiry: everything of the run is dropped
};

class RunSink {
 public:
  virtual ~RunSink() = default;

  // A report of the run was accepted at `wall` (the report's own time when
  // set). token_entropies: the per-token entropies it carried or that were
  // computed from its logits (may be empty).
  virtual void OnReportAccepted(absl::Time wall, entrowatch::v1::Phase phase,
                                absl::Span<const float> token_entropies) = 0;

  // One finalized step, in step order, with the verdict after it and the
  // anomalies that fired at it. replayed: the step is rebuilt from the store,
  // at start-up (the RunSink is new) or after a refused write (the same
  // RunSink saw the step before). A sink that counts steps therefore counts a
  // replayed step only when it is above the last step it has seen.
  struct Step {
    const entrowatch::v1::StepSummary* summary = nullptr;
    const entrowatch::v1::Verdict* verdict = nullptr;
    const std::vector<entrowatch::v1::Anomaly>* fired = nullptr;
    bool replayed = false;
  };
  virtual void OnStepFinalized(const Step& step) = 0;

  // After one or more steps were finalized, after a restore and after an
  // incident was ended: the run's verdict and the anomalies active now.
  // newly_fired: those that fired since the previous call.
  virtual void OnVerdict(const entrowatch::v1::Verdict& verdict,
                         const std::vector<entrowatch::v1::Anomaly>& active,
                         const std::vector<entrowatch::v1::Anomaly>& newly_fired) = 0;

  // The run finished or expired. After kExpired the RunSink is destroyed.
  virtual void OnRunEnded(RunEnd why) = 0;
};

class Sink {
 public:
  virtual ~Sink() = default;
  // The per-run part for a run that appeared (first report, or restored from
  // the store). Never null.
  virtual std::unique_ptr<RunSink> Open(const std::string& run_id) = 0;
};

// Daemon-wide numbers the processor reports (not per run); the Prometheus
// exporter implements it, tests record it. Thread-safe, non-blocking.
class ProcessorStats {
 public:
  virtual ~ProcessorStats() = default;
  // result: ok, duplicate, late or the lower-case gRPC code name.
  virtual void ReportOutcome(absl::string_view result) = 0;
  virtual void IngestBytes(int64_t bytes) = 0;
  virtual void StreamShed() = 0;
  // kind: token or attention.
  virtual void ComputeSeconds(absl::string_view kind, double seconds) = 0;
  virtual void SetComputeDegraded(bool degraded) = 0;
  virtual void RowsSkipped(absl::string_view reason, int64_t rows) = 0;
  virtual void SetRuns(int64_t runs) = 0;
  // reason: full, io or other.
  virtual void StoreFailure(absl::string_view reason) = 0;
  virtual void SetStoreBytes(int64_t bytes) = 0;
};

}  // namespace entrowatch::exporter
