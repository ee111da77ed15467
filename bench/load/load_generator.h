#pragma once

// Drives N concurrent Monitor.Stream calls against one server and measures
// acknowledged throughput and send-to-Ack latency. Each stream is one
// (run, rank) that sends consecutive steps with at most `window` reports
// awaiting their Ack. Every loop is bounded by the configured durations.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "payload.h"

namespace entrowatch::load {

struct LoadOptions {
  std::string target;  // host:port
  int streams = 1;
  int ranks_per_run = 8;  // world_size; streams are grouped into runs of this many
  std::string run_prefix = "load";
  int window = 4;               // reports in flight per stream
  int channels = 4;             // TCP connections the streams are spread over
  double warmup_seconds = 0.5;  // excluded from the rates
  double duration_seconds = 5;  // sending time, warm-up included
  double drain_seconds = 30;    // after sending stops, wait this long for Acks
  double connect_seconds = 10;
  PayloadOptions payload;
  // The server's process (0 = none): its RSS is sampled every 100 ms and its
  // CPU time read at the edges of the measured interval. Sending stops early
  // when its RSS exceeds max_server_rss_bytes (a safety stop, 0 = none).
  int server_pid = 0;
  int64_t max_server_rss_bytes = 0;
  // After the streams: this many concurrent unary Submit calls, each with a
  // logits block, to see whether the server answers RESOURCE_EXHAUSTED.
  int submit_burst = 0;
  // After the streams: asks the server (entrowatchd) for each run with
  // Monitor.GetRun and checks that it holds every report acknowledged.
  bool verify_runs = false;
};

struct LoadResult {
  int64_t reports_sent = 0;     // written to a stream (first time)
  int64_t reports_resent = 0;   // written again on a replacement stream
  int64_t acks_refused = 0;     // Acks with UNAVAILABLE (not taken; resent)
  int64_t stream_restarts = 0;  // replacement streams after pushback
  int64_t reports_acked = 0;    // Acks received (any code)
  int64_t acks_ok = 0;          // code OK, not duplicate, not late
  int64_t acks_duplicate = 0;
  int64_t acks_late = 0;
  std::map<int, int64_t> ack_errors;  // Ack code != OK -> count
  int64_t streams_failed = 0;         // last call ended with a non-OK status or cancelled
  std::string first_stream_error;
  int64_t logits_reports_acked = 0;
  double window_seconds = 0;   // measured interval (after warm-up)
  int64_t window_reports = 0;  // Acks received inside it
  int64_t window_bytes = 0;    // serialized bytes of those reports
  double latency_p50_ms = 0;
  double latency_p99_ms = 0;
  double latency_max_ms = 0;
  int64_t acks_unmatched = 0;  // Acks whose seq was not in flight
  bool stopped_early = false;  // the server's RSS passed max_server_rss_bytes
  // The server's process, when server_pid was given.
  double server_cpu_seconds = 0;        // CPU time used during the measured interval
  int64_t server_rss_end_bytes = 0;     // RSS when sending stopped
  int64_t server_rss_max_bytes = 0;     // largest sampled RSS while sending and draining
  int64_t server_rss_hwm_bytes = 0;     // VmHWM at the end (peak since the server started)
  std::map<int, int64_t> submit_codes;  // burst: gRPC status code -> count
  // verify_runs: runs asked for, and acknowledged reports (distinct, code
  // OK, duplicate or late) beyond what the server holds (accepted + late).
  int64_t runs_verified = 0;
  int64_t acked_missing = 0;
  std::string verify_error;  // a GetRun that failed
};

// Runs the load and returns its figures; Unavailable when the target cannot
// be reached within connect_seconds, NotFound when server_pid is gone. Blocks
// for at most duration + drain + a few seconds of cancellation, plus drain
// again for a Submit burst.
absl::StatusOr<LoadResult> RunLoad(const LoadOptions& options);

}  // namespace entrowatch::load
