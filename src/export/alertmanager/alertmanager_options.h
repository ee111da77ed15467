#pragma once

// Settings of the direct Alertmanager push (the `alertmanager:` section of the
// daemon config) and their validation. No HTTP client behind it (its own
// library), so the config parser can embed it; AlertmanagerPusher::Start()
// validates it too.

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/http_url.h"

namespace entrowatch::alertmanager {

using common::HttpEndpoint;
using common::ParseHttpUrl;

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
