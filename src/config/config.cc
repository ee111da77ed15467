#include "config/config.h"

#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"

namespace entrowatch::config {
namespace {

absl::Status CheckListen(YamlMap& m, const std::string& value) {
  const size_t colon = value.rfind(':');
  int port = -1;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(value.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return m.Error("listen",
                   absl::StrCat("expected host:port with a port in 0..65535, got '", value, "'"));
  }
  return absl::OkStatus();
}

// Room for the schema and a few reports.
constexpr int64_t kMinDbBytes = 64 << 10;

template <typename T>
absl::Status CheckRange(YamlMap& m, absl::string_view key, T value, T lo, T hi) {
  if (value < lo || value > hi) {
    return m.Error(key, absl::StrCat("expected a value in [", lo, ", ", hi, "], got ", value));
  }
  return absl::OkStatus();
}

absl::Status ParseRoot(YamlMap& root, Config* c) {
  RETURN_IF_ERROR(root.Child("grpc", [&](YamlMap& m) {
    RETURN_IF_ERROR(m.Get("listen", &c->grpc.listen));
    RETURN_IF_ERROR(CheckListen(m, c->grpc.listen));
    RETURN_IF_ERROR(m.Get("max_message_bytes", &c->grpc.max_message_bytes));
    RETURN_IF_ERROR(m.Get("reflection", &c->grpc.reflection));
    return CheckRange<int64_t>(m, "max_message_bytes", c->grpc.max_message_bytes, 1024,
                               int64_t{2000} << 20);
  }));
  RETURN_IF_ERROR(root.Child("metrics", [&](YamlMap& m) {
    RETURN_IF_ERROR(m.Get("listen", &c->metrics.listen));
    RETURN_IF_ERROR(CheckListen(m, c->metrics.listen));
    RETURN_IF_ERROR(m.Get("entropy_buckets", &c->metrics.entropy_buckets));
    RETURN_IF_ERROR(m.Get("per_head_series", &c->metrics.per_head_series));
    const auto& b = c->metrics.entropy_buckets;
    for (size_t i = 0; i < b.size(); ++i) {
      if (b[i] <= 0 || (i > 0 && b[i] <= b[i - 1])) {
        return m.Error("entropy_buckets", "expected positive, strictly increasing bounds");
      }
    }
    if (b.empty()) {
      return m.Error("entropy_buckets", "expected at least one bound");
    }
    return absl::OkStatus();
  }));
  RETURN_IF_ERROR(root.Child("console", [&](YamlMap& m) {
    RETURN_IF_ERROR(m.Get("enabled", &c->console.enabled));
    RETURN_IF_ERROR(m.Get("library_dir", &c->console.library_dir));
    RETURN_IF_ERROR(m.Get("history_points", &c->console.history_points));
    RETURN_IF_ERROR(CheckRange(m, "history_points", c->console.history_points, 16, 1 << 20));
    RETURN_IF_ERROR(m.Get("head_history_points", &c->console.head_history_points));
    RETURN_IF_ERROR(
        CheckRange(m, "head_history_points", c->console.head_history_points, 0, 1 << 20));
    RETURN_IF_ERROR(m.Get("stale_seconds", &c->console.stale_seconds));
    return CheckRange(m, "stale_seconds", c->console.stale_seconds, 1.0, 1e9);
  }));
  RETURN_IF_ERROR(root.Get("state_dir", &c->state_dir));
  RETURN_IF_ERROR(root.Child("store", [&](YamlMap& m) {
    RETURN_IF_ERROR(m.Get("retention_steps", &c->store.retention_steps));
    RETURN_IF_ERROR(
        CheckRange<int64_t>(m, "retention_steps", c->store.retention_steps, 0, int64_t{1} << 40));
    RETURN_IF_ERROR(m.Get("max_db_bytes", &c->store.max_db_bytes));
    RETURN_IF_ERROR(
        CheckRange<int64_t>(m, "max_db_bytes", c->store.max_db_bytes, 0, int64_t{1} << 50));
    if (c->store.max_db_bytes > 0 && c->store.max_db_bytes < kMinDbBytes) {
      return m.Error("max_db_bytes", absl::StrCat("expected 0 (unlimited) or at least ",
                                                  kMinDbBytes, ", got ", c->store.max_db_bytes));
    }
    return absl::OkStatus();
  }));
  RETURN_IF_ERROR(root.Child("ingest", [&](YamlMap& m) {
    RETURN_IF_ERROR(m.Get("workers", &c->ingest.workers));
    RETURN_IF_ERROR(CheckRange(m, "workers", c->ingest.workers, 1, 256));
    RETURN_IF_ERROR(m.Get("queue_max_reports", &c->ingest.queue_max_reports));
    RETURN_IF_ERROR(
        CheckRange<int64_t>(m, "queue_max_reports", c->ingest.queue_max_reports, 1, 1 << 24));
    RETURN_IF_ERROR(m.Get("queue_max_bytes", &c->ingest.queue_max_bytes));
    RETURN_IF_ERROR(CheckRange<int64_t>(m, "queue_max_bytes", c->ingest.queue_max_bytes, 1 << 20,
                                        int64_t{1} << 40));
    RETURN_IF_ERROR(m.Get("memory_limit_bytes", &c->ingest.memory_limit_bytes));
    RETURN_IF_ERROR(m.Get("max_waiting_reports", &c->ingest.max_waiting_reports));
    RETURN_IF_ERROR(m.Get("memory_budget_bytes", &c->ingest.memory_budget_bytes));
    RETURN_IF_ERROR(
        CheckRange<int64_t>(m, "max_waiting_reports", c->ingest.max_waiting_reports, 1, 1 << 20));
    RETURN_IF_ERROR(m.Get("max_rows_per_report", &c->ingest.max_rows_per_report));
    RETURN_IF_ERROR(CheckRange<int64_t>(m, "max_rows_per_report", c->ingest.max_rows_per_report, 1,
                                        int64_t{1} << 30));
    RETURN_IF_ERROR(m.Get("max_elements_per_report", &c->ingest.max_elements_per_report));
    RETURN_IF_ERROR(CheckRange<int64_t>(m, "max_elements_per_report",
                                        c->ingest.max_elements_per_report, 1, int64_t{1} << 40));
    return m.Get("skip_nonfinite_rows", &c->ingest.skip_nonfinite_rows);
  }));
  RETURN_IF_ERROR(root.Child("compute", [&](YamlMap& m) {
    RETURN_IF_ERROR(m.Get("backend", &c->compute.backend));
    const std::string& b = c->compute.backend;
    if (b != "auto" && b != "cuda" && b != "cpu" && b != "cpu-reference") {
      return m.Error("backend",
                     absl::StrCat("expected auto, cuda, cpu or cpu-reference, got '", b, "'"));
    }
    RETURN_IF_ERROR(m.Get("threads", &c->compute.threads));
    RETURN_IF_ERROR(CheckRange(m, "threads", c->compute.threads, 0, 1024));
    RETURN_IF_ERROR(m.Get("cuda_pool_bytes", &c->compute.cuda_pool_bytes));
    return CheckRange<int64_t>(m, "cuda_pool_bytes", c->compute.cuda_pool_bytes, 1 << 20,
                               int64_t{1} << 40);
  }));
  RETURN_IF_ERROR(root.Child("aggregation", [&](YamlMap& m) {
    RETURN_IF_ERROR(m.Get("step_timeout_seconds", &c->aggregation.step_timeout_seconds));
    RETURN_IF_ERROR(
        CheckRange(m, "step_timeout_seconds", c->aggregation.step_timeout_seconds, 0.001, 86400.0));
    RETURN_IF_ERROR(m.Get("history_steps", &c->aggregation.history_steps));
    RETURN_IF_ERROR(CheckRange(m, "history_steps", c->aggregation.history_steps, 1, 1 << 20));
    RETURN_IF_ERROR(m.Get("high_entropy_threshold", &c->aggregation.high_entropy_threshold));
    return CheckRange(m, "high_entropy_threshold", c->aggregation.high_entropy_threshold, 0.0, 1.0);
  }));
  RETURN_IF_ERROR(root.Child("runs", [&](YamlMap& m) {
    RETURN_IF_ERROR(m.Get("max_runs", &c->runs.max_runs));
    RETURN_IF_ERROR(CheckRange(m, "max_runs", c->runs.max_runs, 1, 1 << 20));
    RETURN_IF_ERROR(m.Get("idle_expiry_seconds", &c->runs.idle_expiry_seconds));
    RETURN_IF_ERROR(
        CheckRange(m, "idle_expiry_seconds", c->runs.idle_expiry_seconds, 1.0, 365 * 86400.0));
    RETURN_IF_ERROR(m.Get("dedup_window", &c->runs.dedup_window));
    return CheckRange<int64_t>(m, "dedup_window", c->runs.dedup_window, 1, int64_t{1} << 24);
  }));
  RETURN_IF_ERROR(root.Child("log", [&](YamlMap& m) {
    RETURN_IF_ERROR(m.Get("level", &c->log.level));
    const std::string& l = c->log.level;
    if (l != "trace" && l != "debug" && l != "info" && l != "warn" && l != "error") {
      return m.Error("level",
                     absl::StrCat("expected trace, debug, info, warn or error, got '", l, "'"));
    }
    RETURN_IF_ERROR(m.Get("format", &c->log.format));
    if (c->log.format != "text" && c->log.format != "json") {
      return m.Error("format", absl::StrCat("expected text or json, got '", c->log.format, "'"));
    }
    return absl::OkStatus();
  }));
  RETURN_IF_ERROR(root.Child("security", [&](YamlMap& m) {
    SecurityConfig& sec = c->security;
    RETURN_IF_ERROR(m.Child("tls", [&](YamlMap& t) {
      RETURN_IF_ERROR(t.Get("cert_file", &sec.tls_cert_file));
      RETURN_IF_ERROR(t.Get("key_file", &sec.tls_key_file));
      RETURN_IF_ERROR(t.Get("client_ca_file", &sec.tls_client_ca_file));
      if (sec.tls_cert_file.empty() != sec.tls_key_file.empty()) {
        return t.Error("cert_file", "cert_file and key_file must be given together");
      }
      if (!sec.tls_client_ca_file.empty() && sec.tls_cert_file.empty()) {
        return t.Error("client_ca_file", "mutual TLS needs cert_file and key_file too");
      }
      return absl::OkStatus();
    }));
    RETURN_IF_ERROR(m.ChildList("tokens", [&](YamlMap& t, size_t) {
      TokenConfig token;
      RETURN_IF_ERROR(t.Get("name", &token.name));
      RETURN_IF_ERROR(t.Get("token_file", &token.token_file));
      RETURN_IF_ERROR(t.Get("runs", &token.runs));
      if (token.name.empty()) {
        return t.Error("name", "required (a name for logs; never the secret)");
      }
      if (token.token_file.empty()) {
        return t.Error("token_file", "required (a file holding the token)");
      }
      if (token.runs.empty()) {
        return t.Error("runs", "required: a list of run-id globs, e.g. [\"team-a-*\"]");
      }
      sec.tokens.push_back(std::move(token));
      return absl::OkStatus();
    }));
    return m.Get("metrics_basic_auth_file", &sec.metrics_basic_auth_file);
  }));
  RETURN_IF_ERROR(root.Child("alertmanager", [&](YamlMap& m) {
    alertmanager::AlertmanagerOptions& am = c->alertmanager;
    RETURN_IF_ERROR(m.Get("enabled", &am.enabled));
    RETURN_IF_ERROR(m.Get("url", &am.url));
    RETURN_IF_ERROR(m.Get("resend_interval_seconds", &am.resend_interval_seconds));
    RETURN_IF_ERROR(m.Get("timeout_seconds", &am.timeout_seconds));
    RETURN_IF_ERROR(m.Get("retry_initial_backoff_seconds", &am.retry_initial_backoff_seconds));
    RETURN_IF_ERROR(m.Get("retry_max_backoff_seconds", &am.retry_max_backoff_seconds));
    RETURN_IF_ERROR(m.Get("queue_max_updates", &am.queue_max_updates));
    RETURN_IF_ERROR(m.Get("runbook_url", &am.runbook_url));
    RETURN_IF_ERROR(m.Get("generator_url", &am.generator_url));
    RETURN_IF_ERROR(m.Child("labels", [&](YamlMap& labels) {
      for (const std::string& key : labels.Keys()) {
        std::string value;
        RETURN_IF_ERROR(labels.Get(key, &value));
        am.labels[key] = value;
      }
      return absl::OkStatus();
    }));
    if (absl::Status s = alertmanager::ValidateAlertmanagerOptions(am); !s.ok()) {
      return m.Error(am.url.empty() ? "enabled" : "url", s.message());
    }
    return absl::OkStatus();
  }));
  RETURN_IF_ERROR(
      root.Child("analysis", [&](YamlMap& m) { return ParseAnalysisConfig(m, &c->analysis); }));
  RETURN_IF_ERROR(root.CheckNoUnknownKeys());
  // So that one report of the largest size can always wait for room.
  const int64_t min_limit = c->ingest.queue_max_bytes + c->grpc.max_message_bytes;
  if (c->ingest.memory_limit_bytes < min_limit ||
      c->ingest.memory_limit_bytes > (int64_t{1} << 42)) {
    return absl::InvalidArgumentError(
        absl::StrCat("ingest.memory_limit_bytes: must be at least ingest.queue_max_bytes + "
                     "grpc.max_message_bytes (",
                     min_limit, ") and at most 2^42, got ", c->ingest.memory_limit_bytes));
  }
  // A budget below what the ingest bounds let the daemon hold would shed
  // load the bounds admit.
  if (c->ingest.memory_budget_bytes != 0 &&
      (c->ingest.memory_budget_bytes < c->ingest.memory_limit_bytes ||
       c->ingest.memory_budget_bytes > (int64_t{1} << 44))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ingest.memory_budget_bytes: must be 0 (no budget) or at least "
        "ingest.memory_limit_bytes (",
        c->ingest.memory_limit_bytes, ") and at most 2^44, got ", c->ingest.memory_budget_bytes));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Config> ParseConfig(absl::string_view yaml, absl::string_view source) {
  YAML::Node doc;
  try {
    doc = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": not valid YAML (line ", e.mark.line + 1, "): ", e.msg));
  }
  Config config;
  if (doc.IsNull() || !doc.IsDefined()) {
    return config;
  }
  if (!doc.IsMap()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": expected a mapping at the top level"));
  }
  YamlMap root(doc, "");
  absl::Status s = ParseRoot(root, &config);
  if (!s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", s.message()));
  }
  return config;
}

absl::StatusOr<Config> LoadConfigFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read config file '", path, "'"));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  return ParseConfig(buffer.str(), path);
}

}  // namespace entrowatch::config
