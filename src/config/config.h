#pragma once

// The one typed configuration of entrowatchd, parsed and validated once.
// Every key and its default is documented in config/entrowatch.yaml; a test
// checks that file parses to exactly these defaults.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "config/analysis_config.h"
#include "export/alertmanager/alertmanager_options.h"

namespace entrowatch::config {

struct GrpcConfig {
  std::string listen = "127.0.0.1:50551";  // host:port; port 0 picks a free one
  int64_t max_message_bytes = 64 << 20;
  // Serve grpc.reflection.v1alpha.ServerReflection (grpcurl, grpcui, evans,
  // Postman call the daemon without the .proto). Read at start-up.
  bool reflection = true;
};

struct MetricsConfig {
  std::string listen = "127.0.0.1:9551";  // host:port; port 0 picks a free one
  // Upper bounds (nats) of entrowatch_token_entropy_nats; +Inf is implicit.
  std::vector<double> entropy_buckets = {0.05, 0.1, 0.25, 0.5, 1, 1.5, 2, 3, 4, 5, 6, 8, 10, 12};
  // Export entrowatch_attention_head_entropy_nats{run,layer,head}: one series
  // per head (layers x heads per run), so off by default.
  bool per_head_series = false;
};

// The web console on the metrics listener (/, /runs/<id>, /api/v1/...).
struct ConsoleConfig {
  bool enabled = true;
  // Where Debian's libjs-dygraphs installs the charting library.
  std::string library_dir = "/usr/share/javascript/dygraphs";
  // Points of history kept per run: the newest quarter one step each, older
  // steps in buckets whose width doubles as the run grows (console/run_history.h).
  int history_points = 2048;
  // Newest steps that keep per-head attention entropies (at most
  // history_points / 4).
  int head_history_points = 256;
  // A run neither finished nor heard from this long is shown as stale.
  double stale_seconds = 600;
};

struct IngestConfig {
  int workers = 2;                        // compute + aggregation threads
  int64_t queue_max_reports = 1024;       // queued, not yet processed
  int64_t queue_max_bytes = 512ll << 20;  // payload bytes queued
  // Queued bytes plus reports that streams read while the queue was full and
  // that wait for room; beyond it (or max_waiting_reports) a stream's report
  // is not taken (Ack UNAVAILABLE) and the stream ends RESOURCE_EXHAUSTED.
  int64_t memory_limit_bytes = 640ll << 20;
  // Reports that may wait for room at once (one per stream).
  int64_t max_waiting_reports = 64;
  // Resident memory above which ingest sheds load: new streams and reports
  // are refused until it is back under. 0 = no budget.
  int64_t memory_budget_bytes = 1536ll << 20;
  int64_t max_rows_per_report = 65536;          // logits rows over all blocks
  int64_t max_elements_per_report = 1ll << 30;  // logits + attention elements
  // false: a logits row with NaN/+Inf rejects the report (INVALID_ARGUMENT);
  // true: such rows are skipped and counted, the rest is accepted.
  bool skip_nonfinite_rows = false;
};

struct ComputeConfig {
  std::string backend = "auto";  // auto | cuda | cpu | cpu-reference
  int threads = 0;               // CPU engine threads; 0 = one per core
  int64_t cuda_pool_bytes = 256ll << 20;
};

struct AggregationConfig {
  double step_timeout_seconds = 30;     // finalize an incomplete step after this
  int history_steps = 512;              // finalized steps kept per run
  double high_entropy_threshold = 0.8;  // normalized entropy counted as "high"
};

struct RunsConfig {
  int max_runs = 256;                 // runs tracked at once; more are refused
  double idle_expiry_seconds = 3600;  // forget runs idle this long (and their series)
  int64_t dedup_window = 65536;       // recent seqs remembered per (run, rank)
};

// Bounds on the state database (state_dir); 0 means none. Reloadable.
struct StoreConfig {
  // Finalized step summaries kept per run; a restart replays only these.
  int64_t retention_steps = 100000;
  // Size of state_dir/entrowatch.db; a report that would grow it further is
  // refused with UNAVAILABLE, like on a full disk.
  int64_t max_db_bytes = 0;
};

struct TokenConfig {
  std::string name;               // shown in logs instead of the secret
  std::string token_file;         // file whose first line is the bearer token
  std::vector<std::string> runs;  // run-id globs this token may write and read
};

struct SecurityConfig {
  // gRPC TLS: both files (PEM) enable it. With client_ca_file, clients must
  // present a certificate signed by that CA (mutual TLS).
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;
  // Bearer tokens; when any is configured every RPC needs one.
  std::vector<TokenConfig> tokens;
  // File holding "user:password" for HTTP basic auth on /metrics ("" = off).
  std::string metrics_basic_auth_file;
};

struct LogConfig {
  std::string level = "info";   // trace | debug | info | warn | error
  std::string format = "text";  // text | json
};

struct Config {
  GrpcConfig grpc;
  MetricsConfig metrics;
  ConsoleConfig console;
  std::string state_dir;  // "" = in memory only
  StoreConfig store;
  IngestConfig ingest;
  ComputeConfig compute;
  AggregationConfig aggregation;
  RunsConfig runs;
  LogConfig log;
  SecurityConfig security;
  alertmanager::AlertmanagerOptions alertmanager;  // direct push, off by default
  AnalysisConfig analysis;
};

// Parses and validates YAML text. Errors name the key, the line and what was
// expected. `source` names the text in messages (a file name).
absl::StatusOr<Config> ParseConfig(absl::string_view yaml, absl::string_view source = "config");

// Reads and parses a file.
absl::StatusOr<Config> LoadConfigFile(const std::string& path);

}  // namespace entrowatch::config
