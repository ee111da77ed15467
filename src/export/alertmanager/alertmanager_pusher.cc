#include "export/alertmanager/alertmanager_pusher.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "export/alertmanager/alert_tracker.h"

namespace entrowatch::alertmanager {

AlertmanagerPusher::AlertmanagerPusher(const AlertmanagerOptions& options,
                                       const common::Clock* clock)
    : options_(options), clock_(clock) {}

AlertmanagerPusher::~AlertmanagerPusher() {
  Shutdown();
  if (cancel_fd_ >= 0) {
    close(cancel_fd_);
  }
}

absl::Status AlertmanagerPusher::Start() {
  if (!options_.enabled) {
    return absl::FailedPreconditionError("alertmanager push is not enabled");
  }
  RETURN_IF_ERROR(ValidateAlertmanagerOptions(options_));
  ASSIGN_OR_RETURN(endpoint_, ParseHttpUrl(options_.url));
  absl::MutexLock lock(&mu_);
  if (started_) {
    return absl::FailedPreconditionError("AlertmanagerPusher already started");
  }
  cancel_fd_ = eventfd(0, EFD_CLOEXEC);
  if (cancel_fd_ < 0) {
    return absl::InternalError(absl::StrCat("eventfd: ", strerror(errno)));
  }
  started_ = true;
  thread_ = std::thread([this] { Run(); });
  return absl::OkStatus();
}

void AlertmanagerPusher::Update(absl::string_view run,
                                const std::vector<entrowatch::v1::Anomaly>& active,
                                const entrowatch::v1::Verdict& verdict) {
  PendingUpdate update{std::string(run), active, verdict};
  absl::MutexLock lock(&mu_);
  if (!started_ || stopping_) {
    return;
  }
  if (static_cast<int64_t>(pending_.size()) >= options_.queue_max_updates) {
    updates_dropped_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  pending_.push_back(std::move(update));
}

class AlertmanagerPusher::PushRunSink final : public exporter::RunSink {
 public:
  PushRunSink(AlertmanagerPusher* pusher, std::string run)
      : pusher_(pusher), run_(std::move(run)) {}

  void OnReportAccepted(absl::Time, entrowatch::v1::Phase, absl::Span<const float>) override {}
  void OnStepFinalized(const Step&) override {}

  void OnVerdict(const entrowatch::v1::Verdict& verdict,
                 const std::vector<entrowatch::v1::Anomaly>& active,
                 const std::vector<entrowatch::v1::Anomaly>&) override {
    pusher_->Update(run_, active, verdict);
  }

  void OnRunEnded(exporter::RunEnd why) override {
    if (why == exporter::RunEnd::kExpired) {
      pusher_->Update(run_, {}, entrowatch::v1::Verdict());  // resolves its alerts
    }
  }

 private:
  AlertmanagerPusher* const pusher_;
  const std::string run_;
};

std::unique_ptr<exporter::RunSink> AlertmanagerPusher::Open(const std::string& run_id) {
  return std::make_unique<PushRunSink>(this, run_id);
}

void AlertmanagerPusher::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (!started_ || stopping_) {
      return;
    }
    stopping_ = true;
  }
  // Should this write ever fail, a post in flight just runs to its timeout.
  const uint64_t one = 1;
  (void)!write(cancel_fd_, &one, sizeof(one));
  thread_.join();
}

AlertmanagerPusher::Stats AlertmanagerPusher::stats() const {
  Stats stats;
  stats.posts_ok = posts_ok_.load(std::memory_order_relaxed);
  stats.posts_failed = posts_failed_.load(std::memory_order_relaxed);
  stats.updates_dropped = updates_dropped_.load(std::memory_order_relaxed);
  stats.alerts_firing = alerts_firing_.load(std::memory_order_relaxed);
  return stats;
}

void AlertmanagerPusher::Run() {
  AlertTracker tracker(options_, clock_);
  const absl::Duration timeout = absl::Seconds(options_.timeout_seconds);
  const absl::Duration final_timeout = std::min(timeout, absl::Seconds(2));
  bool stop = false;
  while (!stop) {
    std::deque<PendingUpdate> updates;
    {
      absl::MutexLock lock(&mu_);
      const auto has_work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !pending_.empty();
      };
      const absl::Duration wait = tracker.NextPostAt() - clock_->Monotonic();
      if (wait > absl::ZeroDuration()) {
        mu_.AwaitWithTimeout(absl::Condition(&has_work), wait);
      }
      updates.swap(pending_);
      stop = stopping_;
    }
    for (PendingUpdate& update : updates) {
      tracker.Apply(update.run, update.active, update.verdict);
    }
    // On the way out, changes not yet delivered get one last attempt, backoff
    // or not.
    const std::vector<Alert> due = !stop                               ? tracker.DueAlerts()
                                   : tracker.has_undelivered_changes() ? tracker.AllAlerts()
                                                                       : std::vector<Alert>();
    if (due.empty()) {
      continue;
    }
    const absl::Status posted =
        stop ? HttpPost(endpoint_, "/api/v2/alerts", EncodeAlerts(due, options_.generator_url),
                        final_timeout)
             : HttpPost(endpoint_, "/api/v2/alerts", EncodeAlerts(due, options_.generator_url),
                        timeout, cancel_fd_);
    if (posted.ok()) {
      posts_ok_.fetch_add(1, std::memory_order_relaxed);
    } else {
      posts_failed_.fetch_add(1, std::memory_order_relaxed);
    }
    // A rejected post (4xx) is malformed; resending it cannot succeed.
    tracker.OnPostResult(posted.ok() || absl::IsInvalidArgument(posted));
    alerts_firing_.store(tracker.firing(), std::memory_order_relaxed);
  }
}

}  // namespace entrowatch::alertmanager
