// entrowatch_load: drives N concurrent Monitor.Stream calls against
// entrowatchd (or entrowatch_null_sink) and prints acknowledged throughput,
// send-to-Ack latency and the server's RSS and CPU time.

#include <cstdio>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/command_line.h"
#include "common/status_macros.h"
#include "load_generator.h"
#include "proc_stats.h"

namespace {

using entrowatch::load::LoadOptions;
using entrowatch::load::LoadResult;

entrowatch::common::CommandSpec Spec() {
  entrowatch::common::CommandSpec spec;
  spec.name = "entrowatch_load";
  spec.usage = "entrowatch_load (--target HOST:PORT | --ready-file PATH) [flags]";
  spec.summary = "Drive concurrent Monitor.Stream calls and measure acknowledged throughput.";
  spec.flags = {
      {"target", "HOST:PORT", "server to load (127.0.0.1 only in tests and benchmarks)"},
      {"ready-file", "PATH", "read grpc_address and pid from a server's ready file"},
      {"pid", "N", "server process to watch (/proc/N); default: the ready file's"},
      {"streams", "N", "concurrent streams, one (run, rank) each (default 1)"},
      {"ranks-per-run", "N", "world_size of each run (default 8)"},
      {"run-prefix", "NAME", "run ids are NAME-0, NAME-1, ... (default load)"},
      {"window", "N", "reports awaiting their Ack per stream (default 4)"},
      {"channels", "N", "TCP connections (default 4)"},
      {"duration", "S", "seconds of sending, warm-up included (default 5)"},
      {"warmup", "S", "seconds excluded from the rates (default 0.5)"},
      {"drain", "S", "seconds to wait for the last Acks (default 30)"},
      {"logits-every", "N", "one report in N carries a logits block; 0 = none (default 10)"},
      {"logits-rows", "N", "rows of that block (default 64)"},
      {"vocab", "N", "its vocabulary, bf16 (default 152064)"},
      {"token-values", "N", "client-side token entropies per report (default 512)"},
      {"max-server-rss-mb", "N",
       "stop sending when the server's RSS passes this (default 0 = never)"},
      {"submit-burst", "N", "afterwards, N concurrent unary Submits with logits"},
      {"verify-runs", "",
       "afterwards, check with Monitor.GetRun that the server (entrowatchd) holds every report "
       "acknowledged; exit 1 if not"},
      {"label", "TEXT", "name of this run in the output"},
      {"json", "", "print one JSON object instead of text"},
      {"require-all-acked", "",
       "exit 1 unless every report sent got an OK Ack and no stream failed"}};
  return spec;
}

struct Flags {
  LoadOptions load;
  std::string ready_file;
  std::string label;
  bool json = false;
  bool require_all_acked = false;
};

absl::StatusOr<Flags> ParseFlags(const entrowatch::common::ParsedArgs& args) {
  constexpr int64_t kMaxInt = std::numeric_limits<int>::max();
  constexpr double kMaxSeconds = 1e6;
  Flags flags;
  LoadOptions& o = flags.load;
  o.target = args.GetString("target", "");
  flags.ready_file = args.GetString("ready-file", "");
  flags.label = args.GetString("label", "");
  o.run_prefix = args.GetString("run-prefix", o.run_prefix);
  flags.json = args.Has("json");
  flags.require_all_acked = args.Has("require-all-acked");
  o.verify_runs = args.Has("verify-runs");
  ASSIGN_OR_RETURN(o.server_pid, args.GetInt("pid", o.server_pid, 0, kMaxInt));
  ASSIGN_OR_RETURN(o.streams, args.GetInt("streams", o.streams, 1, kMaxInt));
  ASSIGN_OR_RETURN(o.ranks_per_run, args.GetInt("ranks-per-run", o.ranks_per_run, 1, kMaxInt));
  ASSIGN_OR_RETURN(o.window, args.GetInt("window", o.window, 1, kMaxInt));
  ASSIGN_OR_RETURN(o.channels, args.GetInt("channels", o.channels, 1, kMaxInt));
  ASSIGN_OR_RETURN(o.duration_seconds,
                   args.GetDouble("duration", o.duration_seconds, 1e-3, kMaxSeconds));
  ASSIGN_OR_RETURN(o.warmup_seconds, args.GetDouble("warmup", o.warmup_seconds, 0, kMaxSeconds));
  ASSIGN_OR_RETURN(o.drain_seconds, args.GetDouble("drain", o.drain_seconds, 1e-3, kMaxSeconds));
  ASSIGN_OR_RETURN(o.payload.logits_every,
                   args.GetInt("logits-every", o.payload.logits_every, 0, kMaxInt));
  ASSIGN_OR_RETURN(o.payload.logits_rows,
                   args.GetInt("logits-rows", o.payload.logits_rows, 1, kMaxInt));
  ASSIGN_OR_RETURN(o.payload.vocab, args.GetInt("vocab", o.payload.vocab, 2, kMaxInt));
  ASSIGN_OR_RETURN(o.payload.token_values,
                   args.GetInt("token-values", o.payload.token_values, 0, kMaxInt));
  ASSIGN_OR_RETURN(const int64_t mb, args.GetInt("max-server-rss-mb", 0, 0, int64_t{1} << 40));
  o.max_server_rss_bytes = mb << 20;
  ASSIGN_OR_RETURN(o.submit_burst, args.GetInt("submit-burst", o.submit_burst, 0, kMaxInt));
  if (o.warmup_seconds >= o.duration_seconds) {
    return absl::InvalidArgumentError("--warmup must be shorter than --duration");
  }
  if (o.target.empty() && flags.ready_file.empty()) {
    return absl::InvalidArgumentError("one of --target or --ready-file is required");
  }
  return flags;
}

double Mib(int64_t bytes) { return static_cast<double>(bytes) / (1 << 20); }

// {"code": count, ...}, keyed by the numeric gRPC status code.
nlohmann::ordered_json CodeObject(const std::map<int, int64_t>& codes) {
  nlohmann::ordered_json object = nlohmann::ordered_json::object();
  for (const auto& [code, count] : codes) {
    object[std::to_string(code)] = count;
  }
  return object;
}

void Print(const Flags& flags, const LoadResult& r) {
  const double seconds = r.window_seconds > 0 ? r.window_seconds : 1;
  const double reports_per_s = static_cast<double>(r.window_reports) / seconds;
  const double mib_per_s = Mib(r.window_bytes) / seconds;
  int64_t errors = 0;
  for (const auto& [code, count] : r.ack_errors) {
    errors += count;
  }
  if (flags.json) {
    const nlohmann::ordered_json line = {{"label", flags.label},
                                         {"streams", flags.load.streams},
                                         {"window_s", r.window_seconds},
                                         {"reports_per_s", reports_per_s},
                                         {"mib_per_s", mib_per_s},
                                         {"p50_ms", r.latency_p50_ms},
                                         {"p99_ms", r.latency_p99_ms},
                                         {"max_ms", r.latency_max_ms},
                                         {"sent", r.reports_sent},
                                         {"acked", r.reports_acked},
                                         {"ok", r.acks_ok},
                                         {"duplicate", r.acks_duplicate},
                                         {"late", r.acks_late},
                                         {"unmatched", r.acks_unmatched},
                                         {"ack_errors", CodeObject(r.ack_errors)},
                                         {"logits_acked", r.logits_reports_acked},
                                         {"resent", r.reports_resent},
                                         {"refused", r.acks_refused},
                                         {"stream_restarts", r.stream_restarts},
                                         {"streams_failed", r.streams_failed},
                                         {"first_stream_error", r.first_stream_error},
                                         {"server_cpu_s", r.server_cpu_seconds},
                                         {"server_rss_end_mib", Mib(r.server_rss_end_bytes)},
                                         {"server_rss_max_mib", Mib(r.server_rss_max_bytes)},
                                         {"server_rss_hwm_mib", Mib(r.server_rss_hwm_bytes)},
                                         {"stopped_early", r.stopped_early},
                                         {"submit_codes", CodeObject(r.submit_codes)},
                                         {"runs_verified", r.runs_verified},
                                         {"acked_missing", r.acked_missing},
                                         {"verify_error", r.verify_error}};
    std::printf("%s\n", line.dump().c_str());
    return;
  }
  std::printf("%s: %d streams, %.2f s measured\n", flags.label.c_str(), flags.load.streams,
              r.window_seconds);
  std::printf("  %.1f reports/s, %.2f MiB/s acknowledged; Ack latency p50 %.3f ms, p99 %.3f ms\n",
              reports_per_s, mib_per_s, r.latency_p50_ms, r.latency_p99_ms);
  std::printf(
      "  sent %lld, acked %lld (ok %lld, errors %lld, duplicate %lld, late %lld), "
      "%lld with logits; pushback: %lld refused, %lld resent, %lld stream restarts; "
      "streams failed %lld %s\n",
      static_cast<long long>(r.reports_sent), static_cast<long long>(r.reports_acked),
      static_cast<long long>(r.acks_ok), static_cast<long long>(errors),
      static_cast<long long>(r.acks_duplicate), static_cast<long long>(r.acks_late),
      static_cast<long long>(r.logits_reports_acked), static_cast<long long>(r.acks_refused),
      static_cast<long long>(r.reports_resent), static_cast<long long>(r.stream_restarts),
      static_cast<long long>(r.streams_failed), r.first_stream_error.c_str());
  if (flags.load.server_pid != 0) {
    std::printf(
        "  server: %.2f CPU s in the window (%.2f cores), RSS end %.1f MiB, max %.1f MiB, "
        "peak since start %.1f MiB%s\n",
        r.server_cpu_seconds, r.server_cpu_seconds / seconds, Mib(r.server_rss_end_bytes),
        Mib(r.server_rss_max_bytes), Mib(r.server_rss_hwm_bytes),
        r.stopped_early ? " (RSS limit reached: stopped early)" : "");
  }
  if (!r.submit_codes.empty()) {
    std::printf("  submit burst status codes: %s\n", CodeObject(r.submit_codes).dump().c_str());
  }
  if (flags.load.verify_runs) {
    std::printf(
        "  server holds the acknowledged reports of %lld runs; %lld acknowledged reports "
        "missing%s%s\n",
        static_cast<long long>(r.runs_verified), static_cast<long long>(r.acked_missing),
        r.verify_error.empty() ? "" : "; ", r.verify_error.c_str());
  }
}

bool AllAcked(const LoadResult& r) {
  return r.reports_sent > 0 && r.reports_acked == r.reports_sent && r.acks_ok == r.reports_acked &&
         r.acks_unmatched == 0 && r.streams_failed == 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::StatusOr<Flags> parsed = ParseFlags(
      entrowatch::common::ParseArgsOrExit(Spec(), std::vector<std::string>(argv + 1, argv + argc)));
  if (!parsed.ok()) {
    std::fprintf(stderr, "entrowatch_load: %s\nrun 'entrowatch_load --help' for usage\n",
                 std::string(parsed.status().message()).c_str());
    return 2;
  }
  Flags& flags = *parsed;
  if (!flags.ready_file.empty()) {
    auto ready = entrowatch::load::ReadReadyFile(flags.ready_file);
    if (!ready.ok()) {
      std::fprintf(stderr, "entrowatch_load: %s\n", std::string(ready.status().message()).c_str());
      return 3;
    }
    if (flags.load.target.empty()) {
      flags.load.target = ready->grpc_address;
    }
    if (flags.load.server_pid == 0) {
      flags.load.server_pid = ready->pid;
    }
  }
  if (flags.label.empty()) {
    flags.label = flags.load.target;
  }
  auto result = entrowatch::load::RunLoad(flags.load);
  if (!result.ok()) {
    std::fprintf(stderr, "entrowatch_load: %s\n", result.status().ToString().c_str());
    return 3;
  }
  Print(flags, *result);
  std::fflush(stdout);
  if (flags.require_all_acked && !AllAcked(*result)) {
    std::fprintf(stderr, "entrowatch_load: not every report got an OK Ack\n");
    return 1;
  }
  if (flags.load.verify_runs && (result->acked_missing > 0 || !result->verify_error.empty())) {
    std::fprintf(stderr, "entrowatch_load: the server lacks %lld acknowledged reports%s%s\n",
                 static_cast<long long>(result->acked_missing),
                 result->verify_error.empty() ? "" : ": ", result->verify_error.c_str());
    return 1;
  }
  return 0;
}
