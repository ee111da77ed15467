#pragma once

// The bookkeeping behind the Alertmanager push, without threads or sockets:
// which alerts are firing per run, which resolved ones still have to be
// delivered, and when the next post is due (immediately after a change, every
// resend interval while alerts are active, with exponential backoff after a
// failure). AlertmanagerPusher drives it from its own thread.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "entrowatch/v1/entrowatch.pb.h"
#include "export/alertmanager/alertmanager_options.h"

namespace entrowatch::alertmanager {

// One alert as Alertmanager's v2 API sees it. Labels are its identity.
struct Alert {
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> annotations;
  absl::Time starts_at;
  absl::Time ends_at;  // InfiniteFuture() while firing
};

// The alerts a run's current verdict and anomalies stand for: one per active
// anomaly pattern (alertname Entrowatch<Pattern>, label pattern) and one for a
// health state that needs attention (alertname Entrowatch<State>, label
// state), each with severity, run, source="entrowatchd" and options.labels.
// starts_at/ends_at are left unset. The alert names match
// deploy/prometheus/entrowatch.rules.yml.
std::vector<Alert> AlertsFor(absl::string_view run,
                             const std::vector<entrowatch::v1::Anomaly>& active,
                             const entrowatch::v1::Verdict& verdict,
                             const AlertmanagerOptions& options);

// The body of POST /api/v2/alerts for `alerts`.
std::string EncodeAlerts(const std::vector<Alert>& alerts, absl::string_view generator_url);

// Not thread-safe: owned and used by one thread.
class AlertTracker {
 public:
  // `clock` must outlive the tracker. Wall time stamps the alerts; monotonic
  // time schedules posts.
  AlertTracker(const AlertmanagerOptions& options, const common::Clock* clock);

  // Makes `active` and `verdict` the run's current truth: new alerts start
  // firing, alerts no longer present are resolved (ends_at = now), changed
  // annotations are updated. A change makes a post due at once (or when the
  // current backoff ends).
  void Apply(absl::string_view run, const std::vector<entrowatch::v1::Anomaly>& active,
             const entrowatch::v1::Verdict& verdict);

  // Monotonic time at which the next post is due; InfiniteDuration() when
  // there is nothing to send.
  absl::Duration NextPostAt() const;

  // The alerts to post now: AllAlerts() when a post is due, else empty.
  std::vector<Alert> DueAlerts() const;

  // Every firing alert (ends_at = now + 4 resend intervals, so Alertmanager
  // resolves them itself if posts stop) and every resolved alert not yet
  // delivered.
  std::vector<Alert> AllAlerts() const;

  // True when a change (or a failed post) has not been delivered yet.
  bool has_undelivered_changes() const { return dirty_; }

  // Records the outcome of posting the alerts DueAlerts() returned, before
  // any further Apply(). Delivered
  // (or rejected as malformed, which a resend cannot fix): resolved alerts
  // are forgotten and the next resend is scheduled. Otherwise the post is
  // retried after the current backoff, which then doubles up to its maximum.
  void OnPostResult(bool delivered_or_rejected);

  int64_t firing() const;
  absl::Duration current_backoff() const { return backoff_; }

 private:
  struct Entry {
    Alert alert;
    bool resolved = false;
  };

  AlertmanagerOptions options_;
  const common::Clock* clock_;
  // run -> alert key (its labels, serialized) -> entry
  std::map<std::string, std::map<std::string, Entry>, std::less<>> runs_;
  bool dirty_ = false;
  absl::Duration next_resend_ = absl::ZeroDuration();
  absl::Duration retry_at_ = absl::ZeroDuration();
  absl::Duration backoff_;
};

}  // namespace entrowatch::alertmanager
