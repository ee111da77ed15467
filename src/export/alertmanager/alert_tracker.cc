#include "export/alertmanager/alert_tracker.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace entrowatch::alertmanager {
namespace {

namespace v1 = ::entrowatch::v1;

// ENTROPY_COLLAPSE -> EntropyCollapse
std::string CamelCase(absl::string_view enum_name) {
  std::string out;
  bool upper = true;
  for (const char c : enum_name) {
    if (c == '_') {
      upper = true;
      continue;
    }
    out.push_back(upper ? absl::ascii_toupper(c) : absl::ascii_tolower(c));
    upper = false;
  }
  return out;
}

std::string SeverityLabel(v1::Severity severity) {
  switch (severity) {
    case v1::CRITICAL:
      return "critical";
    case v1::INFO:
      return "info";
    default:
      return "warning";
  }
}

// The states worth an alert and their severities; as in the Prometheus rules.
const char* StateSeverity(v1::HealthState state) {
  switch (state) {
    case v1::PANIC_ZONE:
    case v1::PATHOLOGICAL_CONFIDENCE:
      return "critical";
    case v1::STAGNATION:
    case v1::COMFORT_ZONE:
      return "warning";
    default:
      return nullptr;
  }
}

std::string FormatEvidence(const google::protobuf::RepeatedPtrField<v1::Evidence>& evidence) {
  return absl::StrJoin(evidence, ", ", [](std::string* out, const v1::Evidence& e) {
    absl::StrAppendFormat(out, "%s=%.4g (threshold %s %.4g)", e.signal(), e.value(),
                          e.comparison().empty() ? "?" : e.comparison(), e.threshold());
  });
}

std::string Describe(absl::string_view reason,
                     const google::protobuf::RepeatedPtrField<v1::Evidence>& evidence,
                     uint64_t since_step) {
  std::string out(reason);
  if (!evidence.empty()) {
    absl::StrAppend(&out, out.empty() ? "" : ". ", "Evidence: ", FormatEvidence(evidence));
  }
  absl::StrAppend(&out, out.empty() ? "" : ". ", "Since step ", since_step, ".");
  return out;
}

Alert BaseAlert(absl::string_view alertname, absl::string_view run, const char* severity,
                const AlertmanagerOptions& options) {
  Alert alert;
  alert.labels = options.labels;
  alert.labels["alertname"] = std::string(alertname);
  alert.labels["run"] = std::string(run);
  alert.labels["severity"] = severity;
  alert.labels["source"] = "entrowatchd";
  alert.annotations["runbook_url"] =
      absl::StrCat(options.runbook_url, "#", absl::AsciiStrToLower(alertname));
  return alert;
}

std::string Key(const Alert& alert) {
  return absl::StrJoin(alert.labels, "\x1f", absl::PairFormatter("\x1e"));
}

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t, absl::UTCTimeZone());
}

}  // namespace

std::vector<Alert> AlertsFor(absl::string_view run, const std::vector<v1::Anomaly>& active,
                             const v1::Verdict& verdict, const AlertmanagerOptions& options) {
  std::vector<Alert> alerts;
  for (const v1::Anomaly& anomaly : active) {
    if (anomaly.pattern() == v1::PATTERN_UNSPECIFIED || !v1::Pattern_IsValid(anomaly.pattern())) {
      continue;
    }
    const std::string pattern = v1::Pattern_Name(anomaly.pattern());
    const std::string severity = SeverityLabel(anomaly.severity());
    Alert alert =
        BaseAlert(absl::StrCat("Entrowatch", CamelCase(pattern)), run, severity.c_str(), options);
    alert.labels["pattern"] = pattern;
    alert.annotations["summary"] =
        anomaly.subject().empty()
            ? absl::StrCat(pattern, " in run ", run)
            : absl::StrCat(pattern, " in run ", run, " (", anomaly.subject(), ")");
    alert.annotations["description"] =
        Describe(anomaly.reason(), anomaly.evidence(), anomaly.since_step());
    if (!anomaly.recommended_action().empty()) {
      alert.annotations["recommended_action"] = anomaly.recommended_action();
    }
    // One alert per (run, pattern), as entrowatch_anomaly_active: a pattern
    // active on several subjects keeps the first one's text.
    const bool seen = std::any_of(alerts.begin(), alerts.end(), [&](const Alert& a) {
      return a.labels.at("alertname") == alert.labels.at("alertname");
    });
    if (!seen) {
      alerts.push_back(std::move(alert));
    }
  }
  if (const char* severity = StateSeverity(verdict.state())) {
    const std::string state = v1::HealthState_Name(verdict.state());
    Alert alert = BaseAlert(absl::StrCat("Entrowatch", CamelCase(state)), run, severity, options);
    alert.labels["state"] = state;
    alert.annotations["summary"] = absl::StrCat("Run ", run, " is in ", state);
    alert.annotations["description"] =
        Describe(verdict.reason(), verdict.evidence(), verdict.since_step());
    if (!verdict.recommended_action().empty()) {
      alert.annotations["recommended_action"] = verdict.recommended_action();
    }
    alerts.push_back(std::move(alert));
  }
  return alerts;
}

std::string EncodeAlerts(const std::vector<Alert>& alerts, absl::string_view generator_url) {
  nlohmann::json out = nlohmann::json::array();
  for (const Alert& alert : alerts) {
    nlohmann::json& a = out.emplace_back(nlohmann::json::object());
    a["labels"] = alert.labels;
    a["annotations"] = alert.annotations;
    a["startsAt"] = Rfc3339(alert.starts_at);
    if (alert.ends_at != absl::InfiniteFuture()) {
      a["endsAt"] = Rfc3339(alert.ends_at);
    }
    if (!generator_url.empty()) {
      a["generatorURL"] = std::string(generator_url);
    }
  }
  // Text from reports (run ids, reasons) that is not valid UTF-8 is replaced
  // with U+FFFD rather than failing the whole post.
  return out.dump(/*indent=*/-1, ' ', /*ensure_ascii=*/false,
                  nlohmann::json::error_handler_t::replace);
}

AlertTracker::AlertTracker(const AlertmanagerOptions& options, const common::Clock* clock)
    : options_(options),
      clock_(clock),
      backoff_(absl::Seconds(options.retry_initial_backoff_seconds)) {}

void AlertTracker::Apply(absl::string_view run, const std::vector<v1::Anomaly>& active,
                         const v1::Verdict& verdict) {
  const absl::Time now = clock_->Wall();
  auto run_it = runs_.try_emplace(std::string(run)).first;
  std::map<std::string, Entry>& entries = run_it->second;
  std::map<std::string, Alert> wanted;
  for (Alert& alert : AlertsFor(run, active, verdict, options_)) {
    std::string key = Key(alert);
    wanted.emplace(std::move(key), std::move(alert));
  }
  for (auto& [key, entry] : entries) {
    if (!entry.resolved && wanted.find(key) == wanted.end()) {
      entry.resolved = true;
      entry.alert.ends_at = now;
      dirty_ = true;
    }
  }
  for (auto& [key, alert] : wanted) {
    auto it = entries.find(key);
    if (it == entries.end() || it->second.resolved) {
      // A pattern that comes back after resolving is a new alert instance.
      alert.starts_at = now;
      alert.ends_at = absl::InfiniteFuture();
      entries[key] = Entry{std::move(alert), false};
      dirty_ = true;
    } else if (it->second.alert.annotations != alert.annotations) {
      it->second.alert.annotations = std::move(alert.annotations);
      dirty_ = true;
    }
  }
  if (entries.empty()) {
    runs_.erase(run_it);
  }
}

absl::Duration AlertTracker::NextPostAt() const {
  if (runs_.empty()) {
    return absl::InfiniteDuration();
  }
  return dirty_ ? retry_at_ : std::max(next_resend_, retry_at_);
}

std::vector<Alert> AlertTracker::DueAlerts() const {
  if (clock_->Monotonic() < NextPostAt()) {
    return {};
  }
  return AllAlerts();
}

std::vector<Alert> AlertTracker::AllAlerts() const {
  std::vector<Alert> due;
  const absl::Time expires = clock_->Wall() + 4 * absl::Seconds(options_.resend_interval_seconds);
  for (const auto& [run, entries] : runs_) {
    for (const auto& [key, entry] : entries) {
      due.push_back(entry.alert);
      if (!entry.resolved) {
        due.back().ends_at = expires;
      }
    }
  }
  return due;
}

void AlertTracker::OnPostResult(bool delivered_or_rejected) {
  const absl::Duration now = clock_->Monotonic();
  if (!delivered_or_rejected) {
    retry_at_ = now + backoff_;
    backoff_ = std::min(2 * backoff_, absl::Seconds(options_.retry_max_backoff_seconds));
    dirty_ = true;
    return;
  }
  for (auto run = runs_.begin(); run != runs_.end();) {
    auto& entries = run->second;
    for (auto it = entries.begin(); it != entries.end();) {
      it = it->second.resolved ? entries.erase(it) : std::next(it);
    }
    run = entries.empty() ? runs_.erase(run) : std::next(run);
  }
  dirty_ = false;
  retry_at_ = absl::ZeroDuration();
  backoff_ = absl::Seconds(options_.retry_initial_backoff_seconds);
  next_resend_ = now + absl::Seconds(options_.resend_interval_seconds);
}

int64_t AlertTracker::firing() const {
  int64_t n = 0;
  for (const auto& [run, entries] : runs_) {
    for (const auto& [key, entry] : entries) {
      n += entry.resolved ? 0 : 1;
    }
  }
  return n;
}

}  // namespace entrowatch::alertmanager
