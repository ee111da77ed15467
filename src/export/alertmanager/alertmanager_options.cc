#include "export/alertmanager/alertmanager_options.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"

namespace entrowatch::alertmanager {

absl::Status ValidateAlertmanagerOptions(const AlertmanagerOptions& options) {
  const auto positive = [](double value, absl::string_view key) {
    return value > 0 ? absl::OkStatus()
                     : absl::InvalidArgumentError(
                           absl::StrCat("alertmanager.", key, ": expected > 0, got ", value));
  };
  RETURN_IF_ERROR(positive(options.resend_interval_seconds, "resend_interval_seconds"));
  RETURN_IF_ERROR(positive(options.timeout_seconds, "timeout_seconds"));
  RETURN_IF_ERROR(positive(options.retry_initial_backoff_seconds, "retry_initial_backoff_seconds"));
  RETURN_IF_ERROR(positive(static_cast<double>(options.queue_max_updates), "queue_max_updates"));
  if (options.retry_max_backoff_seconds < options.retry_initial_backoff_seconds) {
    return absl::InvalidArgumentError(
        "alertmanager.retry_max_backoff_seconds: expected >= retry_initial_backoff_seconds");
  }
  if (options.enabled) {
    const absl::StatusOr<HttpEndpoint> endpoint = ParseHttpUrl(options.url);
    if (!endpoint.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("alertmanager.url: ", endpoint.status().message()));
    }
  }
  for (const auto& [name, value] : options.labels) {
    if (name == "alertname" || name == "run" || name == "severity" || name == "pattern" ||
        name == "state" || name == "source") {
      return absl::InvalidArgumentError(
          absl::StrCat("alertmanager.labels.", name, ": reserved label name"));
    }
  }
  return absl::OkStatus();
}

}  // namespace entrowatch::alertmanager
