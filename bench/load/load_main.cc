// entrowatch_load: drives N concurrent Monitor.Stream calls against
// entrowatchd (or entrowatch_null_sink) and prints acknowledged throughput,
// send-to-Ack latency and the server's RSS and CPU time.

#include <nlohmann/json.hpp>

#include <cstdio>
#include <map>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "load_generator.h"
#include "proc_stats.h"

namespace {

using entrowatch::load::LoadOptions;
using entrowatch::load::LoadResult;

constexpr char kUsage[] =
    R"(usage: entrowatch_load (--target HOST:PORT | --ready-file PATH) [options]

  --target HOST:PORT     server to load (127.0.0.1 only in tests and benchmarks)
  --ready-file PATH      read grpc_address and pid from a server's ready file
  --pid N                server process to watch (/proc/N); default: the ready file's
  --streams N            concurrent streams, one (run, rank) each (default 1)
  --ranks-per-run N      world_size of each run (default 8)
  --run-prefix NAME      run ids are NAME-0, NAME-1, ... (default load)
  --window N             reports awaiting their Ack per stream (default 4)
  --channels N           TCP connections (default 4)
  --duration S           seconds of sending, warm-up included (default 5)
  --warmup S             seconds excluded from the rates (default 0.5)
  --drain S              seconds to wait for the last Acks (default 30)
  --logits-every N       one report in N carries a logits block; 0 = none (default 10)
  --logits-rows N        rows of that block (default 64)
  --vocab N              its vocabulary, bf16 (default 152064)
  --token-values N       client-side token entropies per report (default 512)
  --max-server-rss-mb N  stop sending when the server's RSS passes this (default 0 = never)
  --submit-burst N       afterwards, N concurrent unary Submits with logits
  --label TEXT           name of this run in the output
  --json                 print one JSON object instead of text
  --require-all-acked    exit 1 unless every report sent got an OK Ack and no stream failed
)";

struct Flags {
  LoadOptions load;
  std::string ready_file;
  std::string label;
  bool json = false;
  bool require_all_acked = false;
};

bool ParseFlags(int argc, char** argv, Flags* flags, std::string* error) {
  LoadOptions& o = flags->load;
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    if (arg == "--json") {
      flags->json = true;
      continue;
    }
    if (arg == "--require-all-acked") {
      flags->require_all_acked = true;
      continue;
    }
    if (i + 1 >= argc) {
      *error = absl::StrCat("unknown flag or missing value: ", arg);
      return false;
    }
    const std::string value = argv[++i];
    bool ok = true;
    int64_t mb = 0;
    if (arg == "--target") {
      o.target = value;
    } else if (arg == "--ready-file") {
      flags->ready_file = value;
    } else if (arg == "--label") {
      flags->label = value;
    } else if (arg == "--run-prefix") {
      o.run_prefix = value;
    } else if (arg == "--pid") {
      ok = absl::SimpleAtoi(value, &o.server_pid);
    } else if (arg == "--streams") {
      ok = absl::SimpleAtoi(value, &o.streams) && o.streams >= 1;
    } else if (arg == "--ranks-per-run") {
      ok = absl::SimpleAtoi(value, &o.ranks_per_run) && o.ranks_per_run >= 1;
    } else if (arg == "--window") {
      ok = absl::SimpleAtoi(value, &o.window) && o.window >= 1;
    } else if (arg == "--channels") {
      ok = absl::SimpleAtoi(value, &o.channels) && o.channels >= 1;
    } else if (arg == "--duration") {
      ok = absl::SimpleAtod(value, &o.duration_seconds) && o.duration_seconds > 0;
    } else if (arg == "--warmup") {
      ok = absl::SimpleAtod(value, &o.warmup_seconds) && o.warmup_seconds >= 0;
    } else if (arg == "--drain") {
      ok = absl::SimpleAtod(value, &o.drain_seconds) && o.drain_seconds > 0;
    } else if (arg == "--logits-every") {
      ok = absl::SimpleAtoi(value, &o.payload.logits_every) && o.payload.logits_every >= 0;
    } else if (arg == "--logits-rows") {
      ok = absl::SimpleAtoi(value, &o.payload.logits_rows) && o.payload.logits_rows >= 1;
    } else if (arg == "--vocab") {
      ok = absl::SimpleAtoi(value, &o.payload.vocab) && o.payload.vocab >= 2;
    } else if (arg == "--token-values") {
      ok = absl::SimpleAtoi(value, &o.payload.token_values) && o.payload.token_values >= 0;
    } else if (arg == "--max-server-rss-mb") {
      ok = absl::SimpleAtoi(value, &mb) && mb >= 0;
      o.max_server_rss_bytes = mb << 20;
    } else if (arg == "--submit-burst") {
      ok = absl::SimpleAtoi(value, &o.submit_burst) && o.submit_burst >= 0;
    } else {
      *error = absl::StrCat("unknown flag: ", arg);
      return false;
    }
    if (!ok) {
      *error = absl::StrCat("bad value for ", arg, ": '", value, "'");
      return false;
    }
  }
  if (o.warmup_seconds >= o.duration_seconds) {
    *error = "--warmup must be shorter than --duration";
    return false;
  }
  if (o.target.empty() && flags->ready_file.empty()) {
    *error = "one of --target or --ready-file is required";
    return false;
  }
  return true;
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
    const nlohmann::ordered_json line = {
        {"label", flags.label},
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
        {"submit_codes", CodeObject(r.submit_codes)}};
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
}

bool AllAcked(const LoadResult& r) {
  return r.reports_sent > 0 && r.reports_acked == r.reports_sent && r.acks_ok == r.reports_acked &&
         r.acks_unmatched == 0 && r.streams_failed == 0;
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  std::string error;
  if (!ParseFlags(argc, argv, &flags, &error)) {
    std::fprintf(stderr, "entrowatch_load: %s\n%s", error.c_str(), kUsage);
    return 2;
  }
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
  return 0;
}
