#include "export/alertmanager/alertmanager_options.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"

namespace entrowatch::alertmanager {

absl::StatusOr<HttpEndpoint> ParseHttpUrl(absl::string_view url) {
  absl::string_view rest = url;
  if (!absl::ConsumePrefix(&rest, "http://")) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected http://host:port[/prefix], got \"", url, "\""));
  }
  HttpEndpoint endpoint;
  const size_t slash = rest.find('/');
  absl::string_view authority = rest.substr(0, slash);
  if (slash != absl::string_view::npos) {
    absl::string_view prefix = rest.substr(slash);
    while (absl::ConsumeSuffix(&prefix, "/")) {
    }
    endpoint.path_prefix = std::string(prefix);
  }
  size_t colon;
  if (absl::ConsumePrefix(&authority, "[")) {
    const size_t close_bracket = authority.find(']');
    if (close_bracket == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("unterminated [ in \"", url, "\""));
    }
    endpoint.host = std::string(authority.substr(0, close_bracket));
    authority.remove_prefix(close_bracket + 1);
    colon = authority.empty() || authority[0] != ':' ? absl::string_view::npos : 0;
  } else {
    colon = authority.rfind(':');
    endpoint.host = std::string(authority.substr(0, colon));
  }
  uint32_t port = 0;
  if (colon == absl::string_view::npos || !absl::SimpleAtoi(authority.substr(colon + 1), &port) ||
      port == 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expected http://host:port[/prefix] with a port in 1..65535, got \"", url, "\""));
  }
  if (endpoint.host.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("no host in \"", url, "\""));
  }
  endpoint.port = absl::StrCat(port);
  return endpoint;
}

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
