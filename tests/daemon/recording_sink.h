#pragma once

// Fakes that record, as short strings, everything the daemon hands to its
// sinks and to its daemon-wide stats, for tests to assert what left it.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "export/sink.h"

namespace entrowatch::testing {

// Events, per run, in order:
//   "report N"            a report with N token entropies was accepted
//   "step S"              step S finalized ("step S replayed" when rebuilt)
//   "verdict STATE F"     the verdict after steps, with F newly fired anomalies
//   "finished", "expired" the run ended
class RecordingSink final : public exporter::Sink {
 public:
  std::unique_ptr<exporter::RunSink> Open(const std::string& run_id) override {
    Record(run_id, "open");
    return std::make_unique<RunRecorder>(this, run_id);
  }

  std::vector<std::string> Events(const std::string& run) const {
    absl::MutexLock lock(&mu_);
    auto it = events_.find(run);
    return it == events_.end() ? std::vector<std::string>() : it->second;
  }
  // Only the events starting with `prefix`.
  std::vector<std::string> Events(const std::string& run, const std::string& prefix) const {
    std::vector<std::string> out;
    for (std::string& e : Events(run)) {
      if (e.rfind(prefix, 0) == 0) {
        out.push_back(std::move(e));
      }
    }
    return out;
  }
  int open_sinks() const {
    absl::MutexLock lock(&mu_);
    return open_;
  }

 private:
  class RunRecorder final : public exporter::RunSink {
   public:
    RunRecorder(RecordingSink* owner, std::string run) : owner_(owner), run_(std::move(run)) {
      owner_->Count(+1);
    }
    ~RunRecorder() override { owner_->Count(-1); }
    void OnReportAccepted(absl::Time, entrowatch::v1::Phase,
                          absl::Span<const float> entropies) override {
      owner_->Record(run_, absl::StrCat("report ", entropies.size()));
    }
    void OnStepFinalized(const Step& step) override {
      owner_->Record(run_,
                     absl::StrCat("step ", step.summary->step(), step.replayed ? " replayed" : ""));
    }
    void OnVerdict(const entrowatch::v1::Verdict& verdict,
                   const std::vector<entrowatch::v1::Anomaly>&,
                   const std::vector<entrowatch::v1::Anomaly>& newly_fired) override {
      owner_->Record(
          run_, absl::StrCat("verdict ", entrowatch::v1::HealthState_Name(verdict.state()), " ",
                             newly_fired.size()));
    }
    void OnRunEnded(exporter::RunEnd why) override {
      owner_->Record(run_, why == exporter::RunEnd::kFinished ? "finished" : "expired");
    }

   private:
    RecordingSink* const owner_;
    const std::string run_;
  };

  void Record(const std::string& run, std::string event) {
    absl::MutexLock lock(&mu_);
    events_[run].push_back(std::move(event));
  }
  void Count(int delta) {
    absl::MutexLock lock(&mu_);
    open_ += delta;
  }

  mutable absl::Mutex mu_;
  std::map<std::string, std::vector<std::string>> events_ ABSL_GUARDED_BY(mu_);
  int open_ ABSL_GUARDED_BY(mu_) = 0;
};

class RecordingStats final : public exporter::ProcessorStats {
 public:
  void ReportOutcome(absl::string_view result) override { Add(absl::StrCat("outcome ", result)); }
  void IngestBytes(int64_t bytes) override { Add(absl::StrCat("bytes ", bytes)); }
  void StreamShed() override { Add("shed"); }
  void ComputeSeconds(absl::string_view kind, double) override {
    Add(absl::StrCat("compute ", kind));
  }
  void SetComputeDegraded(bool degraded) override { Add(absl::StrCat("degraded ", degraded)); }
  void RowsSkipped(absl::string_view reason, int64_t rows) override {
    Add(absl::StrCat("skipped ", reason, " ", rows));
  }
  void SetRuns(int64_t runs) override { Add(absl::StrCat("runs ", runs)); }
  void StoreFailure(absl::string_view reason) override { Add(absl::StrCat("store ", reason)); }
  void SetStoreBytes(int64_t) override {}

  std::vector<std::string> Events() const {
    absl::MutexLock lock(&mu_);
    return events_;
  }
  std::string Last(const std::string& prefix) const {
    absl::MutexLock lock(&mu_);
    for (auto it = events_.rbegin(); it != events_.rend(); ++it) {
      if (it->rfind(prefix, 0) == 0) {
        return *it;
      }
    }
    return "";
  }

 private:
  void Add(std::string event) {
    absl::MutexLock lock(&mu_);
    events_.push_back(std::move(event));
  }
  mutable absl::Mutex mu_;
  std::vector<std::string> events_ ABSL_GUARDED_BY(mu_);
};

}  // namespace entrowatch::testing
