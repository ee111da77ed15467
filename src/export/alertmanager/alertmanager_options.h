#pragma once

// Settings of the direct Alertmanager push (the `alertmanager:` section of the
// daemon config). Plain data with no dependencies, so the config parser can
// embed it; AlertmanagerPusher::Start() validates it.

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/status.h"

namespace entrowatch::alertmanager {

struct AlertmanagerOptions {
  bool enabled = false;
  // Base URL of Alertmanager, http://host:port with an optional path prefix
  // (alerts go to <url>/api/v2/alerts). Plain HTTP only.
  std::string url;
  // Active alerts are re-posted this often; each post sets endsAt to four
  // intervals ahead, so Alertmanager resolves them by itself if the daemon
  // dies.
  double resend_interval_seconds = 60;
  // Connect + request + response deadline of one post.
  double timeout_seconds = 10;
  // A failed post is retried after this delay, doubled per failure up to
  // retry_max_backoff_seconds.
  double retry_initial_backoff_seconds = 1;
  double retry_max_backoff_seconds = 60;
  // Run updates waiting for the push thread; more are dropped and counted
  // (the caller never blocks).
  int64_t queue_max_updates = 4096;
  // Prefix of runbook_url annotations; the alert's anchor is appended.
  std::string runbook_url = "docs/runbooks.md";
  // generatorURL of each alert (e.g. the daemon's /metrics); "" = omitted.
  std::string generator_url;
  // Labels added to every alert (e.g. cluster), next to alertname, run,
  // severity, pattern or state and source="entrowatchd".
  std::map<std::string, std::string> labels;
};

// Checks value ranges and that url parses as http://host:port[/prefix] when
// enabled. An InvalidArgument error names the offending key.
absl::Status ValidateAlertmanagerOptions(const AlertmanagerOptions& options);

}  // namespace entrowatch::alertmanager
