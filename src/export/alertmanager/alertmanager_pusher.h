#pragma once

// Direct push of entrowatch's verdicts and anomalies to Alertmanager's v2 API
// (POST <url>/api/v2/alerts), for deployments that want alerts without a
// Prometheus rule evaluation in between. Off by default.
//
//   AlertmanagerPusher pusher(options);
//   RETURN_IF_ERROR(pusher.Start());
//   auto run_sink = pusher.Open(run);   // a Sink: OnVerdict updates the run's alerts
//   pusher.Shutdown();
//
// As a sink, a run's verdict and active anomalies (OnVerdict) replace what it
// had firing, and a run that expires resolves all its alerts; a finished run
// keeps them until they resolve or expire in Alertmanager.
//
// Update() never blocks on the network: it copies the run's state into a
// bounded queue that the pusher's own thread drains. That thread posts new
// and resolved alerts at once, re-posts active ones every
// resend_interval_seconds, and retries with exponential backoff while
// Alertmanager is unreachable.

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "entrowatch/v1/entrowatch.pb.h"
#include "export/alertmanager/alertmanager_options.h"
#include "export/alertmanager/http_client.h"
#include "export/sink.h"

namespace entrowatch::alertmanager {

class AlertmanagerPusher final : public exporter::Sink {
 public:
  struct Stats {
    uint64_t posts_ok = 0;         // posts Alertmanager accepted
    uint64_t posts_failed = 0;     // posts that failed (each retry counts)
    uint64_t updates_dropped = 0;  // Update() calls refused by a full queue
    int64_t alerts_firing = 0;     // firing alerts as of the last post attempt
  };

  // `clock` stamps startsAt/endsAt and schedules resends; it must outlive the
  // pusher. Nothing runs before Start().
  explicit AlertmanagerPusher(const AlertmanagerOptions& options,
                              const common::Clock* clock = common::Clock::Real());
  ~AlertmanagerPusher() override;  // calls Shutdown()
  AlertmanagerPusher(const AlertmanagerPusher&) = delete;
  AlertmanagerPusher& operator=(const AlertmanagerPusher&) = delete;

  // Validates the options and starts the push thread. InvalidArgument for bad
  // options; FailedPrecondition when called twice or when options.enabled is
  // false (callers only create a pusher when it is enabled).
  absl::Status Start();

  // Replaces `run`'s reported state with its currently active anomalies and
  // verdict; an empty `active` with a state not needing attention resolves
  // everything the run had firing. Returns at once: when the queue is full the
  // update is dropped and counted (the next update carries the full state
  // again). Thread-safe. Ignored before Start() and after Shutdown().
  void Update(absl::string_view run, const std::vector<entrowatch::v1::Anomaly>& active,
              const entrowatch::v1::Verdict& verdict);

  // Sink. The RunSink calls Update(); it must not outlive the pusher.
  std::unique_ptr<exporter::RunSink> Open(const std::string& run_id) override;

  // Stops the thread: a post in flight is abandoned, then changes not yet
  // delivered get one last attempt of at most 2 s. Active alerts are not
  // resolved: they expire in Alertmanager unless a restarted daemon posts
  // them again. Idempotent; thread-safe.
  void Shutdown();

  Stats stats() const;

 private:
  struct PendingUpdate {
    std::string run;
    std::vector<entrowatch::v1::Anomaly> active;
    entrowatch::v1::Verdict verdict;
  };

  class PushRunSink;

  void Run();

  const AlertmanagerOptions options_;
  const common::Clock* clock_;
  HttpEndpoint endpoint_;
  int cancel_fd_ = -1;  // eventfd, readable once Shutdown() begins

  mutable absl::Mutex mu_;
  std::deque<PendingUpdate> pending_ ABSL_GUARDED_BY(mu_);
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;

  std::atomic<uint64_t> posts_ok_{0};
  std::atomic<uint64_t> posts_failed_{0};
  std::atomic<uint64_t> updates_dropped_{0};
  std::atomic<int64_t> alerts_firing_{0};
};

}  // namespace entrowatch::alertmanager
