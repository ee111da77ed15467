#include "cli/commands.h"

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <initializer_list>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "cli/format.h"
#include "cli/report.h"
#include "cli/scenario.h"
#include "cli/trace.h"
#include "common/command_line.h"
#include "common/status_macros.h"
#include "common/version.h"
#include "compute/engine_bench.h"
#include "config/config.h"
#include "entrowatch/client/stream_client.h"
#include "entrowatch/v1/entrowatch.grpc.pb.h"
#include "ingest/report_adapter.h"

namespace entrowatch::cli {
namespace {

using common::CommandSpec;
using common::FlagSpec;
using common::ParsedArgs;

using CommandFn = int (*)(const ParsedArgs& args, const std::string& addr, std::ostream& out,
                          std::ostream& err);

struct Command {
  CommandSpec spec;
  CommandFn run;
};

FlagSpec AddrFlag() {
  return {"addr", "ADDR",
          absl::StrCat("entrowatchd gRPC address (default $ENTROWATCH_ADDRESS or ",
                       client::kDefaultTarget, ")")};
}

// Commands that do not talk to the daemon accept --addr too, so scripts can
// pass it to every command.
FlagSpec UnusedAddrFlag() { return {"addr", "ADDR", "accepted for uniformity; not used"}; }

FlagSpec TimeoutFlag(absl::string_view what) {
  return {"timeout", "SECONDS", absl::StrCat(what, " (default 10)")};
}

int UsageError(const std::string& command, const absl::Status& status, std::ostream& err) {
  err << "entrowatch " << command << ": " << status.message() << "\n"
      << "run 'entrowatch " << command << " --help' for usage\n";
  return kExitUsage;
}

int RpcError(const grpc::Status& status, const std::string& addr, std::ostream& err) {
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE ||
      status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    err << "cannot reach entrowatchd at " << addr << ": " << status.error_message() << "\n";
  } else {
    err << "entrowatchd at " << addr << ": " << CodeName(status.error_code()) << ": "
        << status.error_message() << "\n";
  }
  return kExitError;
}

// How to reach the daemon, from the global --token-file / --tls-* flags.
struct Security {
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  std::string token;
};

Security& ConnectionSecurity() {
  static Security* security = new Security();
  return *security;
}

absl::StatusOr<std::string> ReadFileText(const std::string& path, absl::string_view flag) {
  std::ifstream in(path);
  if (!in) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot read '", path, "'"));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// Builds the connection security from the global flags' values.
absl::Status ConfigureSecurity(const std::map<std::string, std::string>& flags) {
  Security& security = ConnectionSecurity();
  auto get = [&](const std::string& name) {
    auto it = flags.find(name);
    return it == flags.end() ? std::string() : it->second;
  };
  if (!get("token-file").empty()) {
    ASSIGN_OR_RETURN(std::string token, ReadFileText(get("token-file"), "--token-file"));
    security.token = std::string(absl::StripAsciiWhitespace(token.substr(0, token.find('\n'))));
  }
  if (!get("tls-ca").empty() || !get("tls-cert").empty()) {
    if (get("tls-cert").empty() != get("tls-key").empty()) {
      return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
    }
    grpc::SslCredentialsOptions tls;
    if (!get("tls-ca").empty()) {
      ASSIGN_OR_RETURN(tls.pem_root_certs, ReadFileText(get("tls-ca"), "--tls-ca"));
    }
    if (!get("tls-cert").empty()) {
      ASSIGN_OR_RETURN(tls.pem_cert_chain, ReadFileText(get("tls-cert"), "--tls-cert"));
      ASSIGN_OR_RETURN(tls.pem_private_key, ReadFileText(get("tls-key"), "--tls-key"));
    }
    security.credentials = grpc::SslCredentials(tls);
  }
  return absl::OkStatus();
}

std::unique_ptr<v1::Monitor::Stub> NewStub(const std::string& addr) {
  return v1::Monitor::NewStub(grpc::CreateChannel(addr, ConnectionSecurity().credentials));
}

// Deadline and, with --token-file, the bearer token.
void SetDeadline(grpc::ClientContext* context, double seconds) {
  context->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(seconds)));
  if (!ConnectionSecurity().token.empty()) {
    context->AddMetadata("authorization", "Bearer " + ConnectionSecurity().token);
  }
}

// ---- status / runs ----------------------------------------------------------

int RunStatusCommand(const ParsedArgs& args, const std::string& addr, std::ostream& out,
                     std::ostream& err) {
  absl::StatusOr<double> timeout = args.GetDouble("timeout", 10, 0.001, 3600);
  if (!timeout.ok()) {
    return UsageError("status", timeout.status(), err);
  }
  const bool json = args.Has("json");
  std::unique_ptr<v1::Monitor::Stub> stub = NewStub(addr);
  grpc::ClientContext context;
  SetDeadline(&context, *timeout);
  const google::protobuf::Message* answer = nullptr;
  v1::RunStatus run;
  v1::ListRunsResponse runs;
  if (args.Has("run")) {
    v1::GetRunRequest request;
    request.set_run_id(args.GetString("run", ""));
    const grpc::Status status = stub->GetRun(&context, request, &run);
    if (!status.ok()) {
      return RpcError(status, addr, err);
    }
    answer = &run;
  } else {
    const grpc::Status status = stub->ListRuns(&context, v1::ListRunsRequest(), &runs);
    if (!status.ok()) {
      return RpcError(status, addr, err);
    }
    answer = &runs;
  }
  if (json) {
    absl::StatusOr<std::string> text = ToJson(*answer);
    if (!text.ok()) {
      err << "cannot print JSON: " << text.status().message() << "\n";
      return kExitError;
    }
    out << *text << "\n";
  } else if (answer == &run) {
    out << FormatRunDetails(run, absl::Now());
  } else if (runs.runs().empty()) {
    out << "no runs\n";
  } else {
    out << FormatRunsTable(runs, absl::Now());
  }
  return kExitOk;
}

// ---- end-incident ------------------------------------------------------------

int RunEndIncidentCommand(const ParsedArgs& args, const std::string& addr, std::ostream& out,
                          std::ostream& err) {
  absl::StatusOr<double> timeout = args.GetDouble("timeout", 10, 0.001, 3600);
  if (!timeout.ok()) {
    return UsageError("end-incident", timeout.status(), err);
  }
  std::unique_ptr<v1::Monitor::Stub> stub = NewStub(addr);
  grpc::ClientContext context;
  SetDeadline(&context, *timeout);
  v1::EndIncidentRequest request;
  request.set_run_id(args.positional()[0]);
  request.set_reason(args.GetString("reason", ""));
  v1::EndIncidentResponse response;
  const grpc::Status status = stub->EndIncident(&context, request, &response);
  if (!status.ok()) {
    return RpcError(status, addr, err);
  }
  out << "incident ended for run " << response.run().run_id() << ": state "
      << v1::HealthState_Name(response.run().verdict().state()) << "; "
      << response.run().verdict().reason() << "\n";
  return kExitOk;
}

int RunRunsCommand(const ParsedArgs& args, const std::string& addr, std::ostream& out,
                   std::ostream& err) {
  absl::StatusOr<double> timeout = args.GetDouble("timeout", 10, 0.001, 3600);
  if (!timeout.ok()) {
    return UsageError("runs", timeout.status(), err);
  }
  grpc::ClientContext context;
  SetDeadline(&context, *timeout);
  v1::ListRunsResponse runs;
  const grpc::Status status = NewStub(addr)->ListRuns(&context, v1::ListRunsRequest(), &runs);
  if (!status.ok()) {
    return RpcError(status, addr, err);
  }
  for (const v1::RunStatus& run : runs.runs()) {
    out << run.run_id() << "\n";
  }
  return kExitOk;
}

// ---- streaming (replay, simulate) ---------------------------------------------

struct StreamSettings {
  std::string addr;
  double rate = 0;  // reports per second; 0 = unlimited
  bool print_verdicts = false;
  absl::Duration timeout;
  absl::Duration connect_timeout;
};

absl::StatusOr<StreamSettings> ParseStreamSettings(const ParsedArgs& args,
                                                   const std::string& addr) {
  StreamSettings settings;
  settings.addr = addr;
  ASSIGN_OR_RETURN(settings.rate, args.GetDouble("rate", 0, 0, 1e9));
  settings.print_verdicts = args.Has("print-verdicts");
  ASSIGN_OR_RETURN(const double timeout, args.GetDouble("timeout", 60, 0.001, 86400));
  ASSIGN_OR_RETURN(const double connect, args.GetDouble("connect-timeout", 5, 0.001, 3600));
  settings.timeout = absl::Seconds(timeout);
  settings.connect_timeout = absl::Seconds(connect);
  return settings;
}

std::vector<FlagSpec> StreamFlags() {
  return {
      AddrFlag(),
      {"rate", "N", "reports per second (default: as fast as the daemon acknowledges)"},
      {"print-verdicts", "",
       "print one line per acknowledged report: step, state, entropy mean, grad norm, anomalies"},
      {"timeout", "SECONDS",
       "give up when a report cannot be queued, or the last Ack has not arrived, in this time "
       "(default 60)"},
      {"connect-timeout", "SECONDS",
       "give up when entrowatchd is not reachable in this time (default 5)"},
  };
}

// Streams reports through the client, paces them, and reports every Ack,
// naming the origin (a trace line, a simulated step) of each report.
class ReportStreamer {
 public:
  ReportStreamer(StreamSettings settings, std::ostream& out, std::ostream& err)
      : settings_(std::move(settings)), out_(out), err_(err) {}

  ~ReportStreamer() {
    if (client_ != nullptr) {
      client_->Close();
    }
  }

  // Prints "cannot reach entrowatchd at ADDR: ..." on failure.
  bool Connect() {
    client::StreamClientOptions options;
    options.target = settings_.addr;
    options.credentials = ConnectionSecurity().credentials;
    options.bearer_token = ConnectionSecurity().token;
    options.initial_backoff = absl::Milliseconds(50);
    options.max_backoff = absl::Seconds(2);
    options.on_ack = [this](const v1::Report& report, const v1::Ack& ack) { OnAck(report, ack); };
    absl::StatusOr<std::unique_ptr<client::StreamClient>> created =
        client::StreamClient::Create(std::move(options));
    absl::Status status = created.status();
    if (status.ok()) {
      client_ = *std::move(created);
      status = client_->WaitForConnected(absl::Now() + settings_.connect_timeout);
    }
    if (!status.ok()) {
      err_ << "cannot reach entrowatchd at " << settings_.addr << ": " << status.message() << "\n";
      return false;
    }
    start_ = absl::Now();
    return true;
  }

  // Queues one report, waiting for room and for the pace; false (printed)
  // when the queue stayed full for the whole timeout.
  bool Send(v1::Report report, std::string origin) {
    uint64_t& last_seq = last_seq_[{report.run_id(), report.rank()}];
    if (report.seq() == 0) {
      report.set_seq(last_seq + 1);
    }
    last_seq = std::max(last_seq, report.seq());
    if (settings_.rate > 0) {
      const absl::Time due = start_ + absl::Seconds(static_cast<double>(sent_) / settings_.rate);
      const absl::Duration wait = due - absl::Now();
      if (wait > absl::ZeroDuration()) {
        absl::SleepFor(wait);
      }
    }
    const OriginKey key{report.run_id(), report.rank(), report.seq()};
    {
      absl::MutexLock lock(&mu_);
      origins_[key].push_back(origin);
    }
    // A final report marks the whole run finished: send it only once every
    // earlier report (other ranks' included) was acknowledged, or the daemon
    // may finish the run before another rank's last steps. A failed wait is
    // reported by Finish.
    if (report.final()) {
      client_->Flush(absl::Now() + settings_.timeout).IgnoreError();
    }
    if (!client_->EnqueueWait(std::move(report), absl::Now() + settings_.timeout)) {
      absl::MutexLock lock(&mu_);
      origins_[key].pop_back();
      err_ << origin << ": not sent: no acknowledgement from entrowatchd at " << settings_.addr
           << " for " << absl::FormatDuration(settings_.timeout) << "\n";
      ++unsent_;
      return false;
    }
    ++sent_;
    return true;
  }

  // Waits for every Ack; prints why when they do not all arrive.
  bool Finish() {
    const absl::Status status = client_->Flush(absl::Now() + settings_.timeout);
    if (!status.ok()) {
      absl::MutexLock lock(&mu_);
      err_ << "timed out waiting for acknowledgements from entrowatchd at " << settings_.addr
           << ": " << status.message() << "\n";
      return false;
    }
    return true;
  }

  // Stops the client: no callback runs after this, so the caller may write
  // to the streams again.
  void Close() { client_->Close(); }

  // Prints an error line the same way Ack lines are printed (callbacks run
  // on the client's thread).
  void Error(const std::string& line) {
    absl::MutexLock lock(&mu_);
    err_ << line << "\n";
  }

  int64_t sent() const { return sent_; }
  int64_t unsent() const { return unsent_; }
  int64_t acknowledged() const {
    absl::MutexLock lock(&mu_);
    return acknowledged_;
  }
  int64_t rejected() const {
    absl::MutexLock lock(&mu_);
    return rejected_;
  }
  int64_t duplicates() const {
    absl::MutexLock lock(&mu_);
    return duplicates_;
  }
  int64_t late() const {
    absl::MutexLock lock(&mu_);
    return late_;
  }
  // Every non-normal state and anomaly pattern the Acks showed, with the
  // step it was first seen at, in order of that step.
  std::string Detections() const {
    absl::MutexLock lock(&mu_);
    std::vector<std::pair<uint64_t, std::string>> seen;
    for (const auto& [name, step] : first_seen_) {
      seen.emplace_back(step, name);
    }
    std::sort(seen.begin(), seen.end());
    std::vector<std::string> parts;
    for (const auto& [step, name] : seen) {
      parts.push_back(absl::StrCat(name, " at step ", step));
    }
    return parts.empty() ? "none" : absl::StrJoin(parts, ", ");
  }
  std::optional<v1::Ack> last_ack() const {
    return client_ == nullptr ? std::nullopt : client_->LatestAck();
  }

 private:
  using OriginKey = std::tuple<std::string, uint32_t, uint64_t>;

  void OnAck(const v1::Report& report, const v1::Ack& ack) {
    absl::MutexLock lock(&mu_);
    std::string origin = "?";
    auto it = origins_.find(OriginKey{report.run_id(), report.rank(), report.seq()});
    if (it != origins_.end() && !it->second.empty()) {
      origin = std::move(it->second.front());
      it->second.pop_front();
      if (it->second.empty()) {
        origins_.erase(it);
      }
    }
    ++acknowledged_;
    duplicates_ += ack.duplicate() ? 1 : 0;
    late_ += ack.late() ? 1 : 0;
    if (ack.code() != 0) {
      ++rejected_;
      err_ << origin << ": rejected: " << CodeName(ack.code()) << ": " << ack.message() << "\n";
      return;
    }
    const uint64_t step = ack.verdict().step() != 0 ? ack.verdict().step() : ack.step();
    const v1::HealthState state = ack.verdict().state();
    if (state != v1::HEALTH_STATE_UNSPECIFIED && state != v1::WARMUP && state != v1::NORMAL) {
      first_seen_.emplace(v1::HealthState_Name(state), step);
    }
    for (const v1::Anomaly& anomaly : ack.anomalies()) {
      first_seen_.emplace(v1::Pattern_Name(anomaly.pattern()), step);
    }
    if (settings_.print_verdicts) {
      out_ << FormatAckLine(origin, report, ack) << "\n";
    }
  }

  const StreamSettings settings_;
  std::ostream& out_;
  std::ostream& err_;
  std::unique_ptr<client::StreamClient> client_;
  absl::Time start_;
  std::map<std::pair<std::string, uint32_t>, uint64_t> last_seq_;
  int64_t sent_ = 0;
  int64_t unsent_ = 0;

  mutable absl::Mutex mu_;  // guards the streams too: Acks print from another thread
  std::map<OriginKey, std::deque<std::string>> origins_ ABSL_GUARDED_BY(mu_);
  int64_t acknowledged_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t rejected_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t duplicates_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t late_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, uint64_t> first_seen_ ABSL_GUARDED_BY(mu_);
};

int RunReplayCommand(const ParsedArgs& args, const std::string& addr, std::ostream& out,
                     std::ostream& err) {
  absl::StatusOr<StreamSettings> settings = ParseStreamSettings(args, addr);
  if (!settings.ok()) {
    return UsageError("replay", settings.status(), err);
  }
  const std::string& path = args.positional()[0];
  std::ifstream file;
  if (path != "-") {
    file.open(path);
    if (!file) {
      err << "cannot open " << path << ": " << std::strerror(errno) << "\n";
      return kExitError;
    }
  }
  std::istream& in = path == "-" ? std::cin : file;
  ReportStreamer streamer(*std::move(settings), out, err);
  if (!streamer.Connect()) {
    return kExitError;
  }
  int64_t line_number = 0;
  int64_t unparsable = 0;
  std::string line;
  while (std::getline(in, line)) {
    ++line_number;
    if (IsBlankLine(line)) {
      continue;
    }
    absl::StatusOr<v1::Report> report = ParseReportLine(line, line_number);
    if (!report.ok()) {
      streamer.Error(absl::StrCat(report.status().message()));
      ++unparsable;
      continue;
    }
    streamer.Send(*std::move(report), absl::StrCat("line ", line_number));
  }
  const bool flushed = streamer.Finish();
  streamer.Close();
  out << "replayed " << path << ": " << streamer.sent() << " reports sent, "
      << streamer.acknowledged() << " acknowledged (" << streamer.duplicates() << " duplicate, "
      << streamer.late() << " late), " << streamer.rejected() << " rejected, " << unparsable
      << " unparsable, " << streamer.unsent() << " not sent\n";
  const bool clean =
      flushed && streamer.rejected() == 0 && unparsable == 0 && streamer.unsent() == 0;
  return clean ? kExitOk : kExitError;
}

int RunSimulateCommand(const ParsedArgs& args, const std::string& addr, std::ostream& out,
                       std::ostream& err) {
  absl::StatusOr<StreamSettings> settings = ParseStreamSettings(args, addr);
  if (!settings.ok()) {
    return UsageError("simulate", settings.status(), err);
  }
  SimulationOptions options;
  absl::Status status = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(options.scenario, ScenarioFromName(args.GetString("scenario", "healthy")));
    ASSIGN_OR_RETURN(options.steps, args.GetInt("steps", 200, 1, 100'000'000));
    ASSIGN_OR_RETURN(options.onset_step,
                     args.GetInt("onset", std::max<int64_t>(1, options.steps / 2), 1, 100'000'000));
    ASSIGN_OR_RETURN(const int64_t ranks, args.GetInt("ranks", 1, 1, 4096));
    options.ranks = static_cast<uint32_t>(ranks);
    ASSIGN_OR_RETURN(const int64_t vocab, args.GetInt("vocab", 4096, 2, 1 << 20));
    options.vocab = static_cast<uint32_t>(vocab);
    ASSIGN_OR_RETURN(const int64_t seed, args.GetInt("seed", 1, 0, INT64_MAX));
    options.seed = static_cast<uint64_t>(seed);
    ASSIGN_OR_RETURN(const int64_t every, args.GetInt("logits-every", 5, 0, 1'000'000));
    options.logits_every = static_cast<int>(every);
    options.run_id = args.GetString("run", absl::StrCat("sim-", ScenarioName(options.scenario)));
    return absl::OkStatus();
  }();
  if (!status.ok()) {
    return UsageError("simulate", status, err);
  }
  const bool finish = !args.Has("no-finish");

  ScenarioGenerator generator(options);
  ReportStreamer streamer(*std::move(settings), out, err);
  if (!streamer.Connect()) {
    return kExitError;
  }
  bool sent_all = true;
  for (int64_t step = 1; step <= options.steps && sent_all; ++step) {
    for (uint32_t rank = 0; rank < options.ranks && sent_all; ++rank) {
      v1::Report report = generator.MakeReport(step, rank);
      // Acks carry seq and step but not the rank: seqs unique across ranks
      // keep every Ack attributable to its report.
      report.set_seq(static_cast<uint64_t>(step - 1) * options.ranks + rank + 1);
      const bool last = step == options.steps && rank + 1 == options.ranks;
      if (last && finish) {
        // The final flag closes the run: everything else must be in first.
        if (!streamer.Finish()) {
          sent_all = false;
          break;
        }
        report.set_final(true);
      }
      sent_all = streamer.Send(std::move(report), absl::StrCat("step ", step, " rank ", rank));
    }
  }
  const bool flushed = streamer.Finish();
  streamer.Close();
  out << "simulated run " << options.run_id << " (scenario " << ScenarioName(options.scenario)
      << ", onset step " << options.onset_step << "): " << options.steps << " steps x "
      << options.ranks << " ranks, " << streamer.sent() << " reports sent, "
      << streamer.acknowledged() << " acknowledged, " << streamer.rejected() << " rejected";
  if (finish && sent_all) {
    out << ", run marked finished";
  }
  const std::optional<v1::Ack> last_ack = streamer.last_ack();
  if (last_ack.has_value()) {
    out << "; last ack: step " << last_ack->step() << " state "
        << (last_ack->verdict().state() == v1::HEALTH_STATE_UNSPECIFIED
                ? std::string("-")
                : v1::HealthState_Name(last_ack->verdict().state()))
        << ", anomalies " << FormatAnomalyNames(last_ack->anomalies());
  }
  out << "; detected: " << streamer.Detections() << "\n";
  return flushed && sent_all && streamer.rejected() == 0 ? kExitOk : kExitError;
}

// ---- check-config --------------------------------------------------------------

int RunCheckConfigCommand(const ParsedArgs& args, const std::string& addr, std::ostream& out,
                          std::ostream& err) {
  const absl::StatusOr<config::Config> config = config::LoadConfigFile(args.positional()[0]);
  if (!config.ok()) {
    err << config.status().message() << "\n";
    return kExitError;
  }
  out << "ok\n";
  return kExitOk;
}

// ---- bench --------------------------------------------------------------------

int PrintBenchResult(const std::string& command, const absl::StatusOr<compute::BenchResult>& result,
                     bool json, std::ostream& out, std::ostream& err) {
  if (absl::IsInvalidArgument(result.status())) {
    return UsageError(command, result.status(), err);
  }
  if (!result.ok()) {
    err << "bench failed: " << result.status().message() << "\n";
    return kExitError;
  }
  if (json) {
    out << compute::BenchResultToJson(*result) << "\n";
    return kExitOk;
  }
  const bool entropy = result->kind == "entropy";
  out << FormatTable(
      {{"KIND", "BACKEND", "DTYPE", "SHAPE", "ITERATIONS", "MS", "GB/S",
        entropy ? "ROWS/S" : "QUERIES/S"},
       {result->kind, result->backend, result->dtype, result->shape,
        absl::StrCat(result->iterations), absl::StrFormat("%.3f", result->ms),
        absl::StrFormat("%.2f", result->gb_per_s), absl::StrFormat("%.4g", result->items_per_s)}});
  if (result->degraded) {
    out << "degraded: the CPU engine ran instead of CUDA (" << result->fallback_reason << ")\n";
  }
  return kExitOk;
}

// The bench's tensors go through the daemon's wire-to-engine adapter, so a
// figure is what the daemon computes for a block a client sent with every
// optional field (valid_vocab, temperature, top_p, scale) left unset.
void SetWireTensor(common::DType dtype, std::initializer_list<int64_t> shape,
                   const std::vector<uint8_t>& bytes, v1::Tensor* tensor) {
  tensor->set_dtype(dtype == common::DType::kFloat32   ? v1::FLOAT32
                    : dtype == common::DType::kFloat16 ? v1::FLOAT16
                                                       : v1::BFLOAT16);
  for (int64_t d : shape) {
    tensor->add_shape(static_cast<uint64_t>(d));
  }
  tensor->set_data(bytes.data(), bytes.size());
}

absl::StatusOr<compute::BenchResult> RunWireEntropyBench(
    const compute::EntropyBenchOptions& options) {
  v1::LogitsBlock block;
  SetWireTensor(options.dtype, {options.rows, options.vocab},
                compute::RandomBenchTensor(options.dtype, options.rows * options.vocab, 3.0f, 1),
                block.mutable_logits());
  return compute::TimeTokenEntropy(options, ingest::LogitsInputOf(block));
}

absl::StatusOr<compute::BenchResult> RunWireAttentionBench(
    const compute::AttentionBenchOptions& options) {
  const int64_t kv_heads = options.kv_heads == 0 ? options.heads : options.kv_heads;
  v1::AttentionBlock block;
  SetWireTensor(options.dtype, {options.heads, options.seq, options.head_dim},
                compute::RandomBenchTensor(options.dtype,
                                           options.heads * options.seq * options.head_dim, 1.0f, 2),
                block.mutable_q());
  SetWireTensor(
      options.dtype, {kv_heads, options.seq, options.head_dim},
      compute::RandomBenchTensor(options.dtype, kv_heads * options.seq * options.head_dim, 1.0f, 3),
      block.mutable_k());
  block.set_causal(options.causal);
  return compute::TimeAttentionEntropy(options, ingest::AttentionInputOf(block));
}

std::vector<FlagSpec> CommonBenchFlags() {
  return {UnusedAddrFlag(),
          {"backend", "NAME", "cpu | cuda | cpu-reference | auto (default cpu)"},
          {"threads", "N", "CPU engine threads (default 0: one per core)"},
          {"min-seconds", "S", "keep timing for at least this long (default 1)"},
          {"json", "", "print one JSON object (gb_per_s, ms, ...) instead of a table"}};
}

int RunBenchEntropyCommand(const ParsedArgs& args, const std::string& addr, std::ostream& out,
                           std::ostream& err) {
  compute::EntropyBenchOptions options;
  const absl::Status status = [&]() -> absl::Status {
    options.backend = args.GetString("backend", "cpu");
    ASSIGN_OR_RETURN(options.rows, args.GetInt("rows", options.rows, 1, 1 << 24));
    ASSIGN_OR_RETURN(options.vocab, args.GetInt("vocab", options.vocab, 1, 1 << 24));
    ASSIGN_OR_RETURN(options.dtype, compute::ParseBenchDType(args.GetString("dtype", "fp32")));
    ASSIGN_OR_RETURN(const int64_t threads, args.GetInt("threads", 0, 0, 1024));
    options.threads = static_cast<int>(threads);
    ASSIGN_OR_RETURN(options.min_seconds, args.GetDouble("min-seconds", 1, 0, 3600));
    return absl::OkStatus();
  }();
  if (!status.ok()) {
    return UsageError("bench entropy", status, err);
  }
  return PrintBenchResult("bench entropy", RunWireEntropyBench(options), args.Has("json"), out,
                          err);
}

int RunBenchAttentionCommand(const ParsedArgs& args, const std::string& addr, std::ostream& out,
                             std::ostream& err) {
  compute::AttentionBenchOptions options;
  const absl::Status status = [&]() -> absl::Status {
    options.backend = args.GetString("backend", "cpu");
    ASSIGN_OR_RETURN(options.heads, args.GetInt("heads", options.heads, 1, 4096));
    ASSIGN_OR_RETURN(options.kv_heads, args.GetInt("kv-heads", 0, 0, 4096));
    ASSIGN_OR_RETURN(options.seq, args.GetInt("seq", options.seq, 1, 1 << 20));
    ASSIGN_OR_RETURN(options.head_dim, args.GetInt("head-dim", options.head_dim, 1, 4096));
    options.causal = args.Has("causal");
    ASSIGN_OR_RETURN(options.dtype, compute::ParseBenchDType(args.GetString("dtype", "bf16")));
    ASSIGN_OR_RETURN(const int64_t threads, args.GetInt("threads", 0, 0, 1024));
    options.threads = static_cast<int>(threads);
    ASSIGN_OR_RETURN(options.min_seconds, args.GetDouble("min-seconds", 1, 0, 3600));
    return absl::OkStatus();
  }();
  if (!status.ok()) {
    return UsageError("bench attention", status, err);
  }
  return PrintBenchResult("bench attention", RunWireAttentionBench(options), args.Has("json"), out,
                          err);
}

std::string ScenarioList() {
  std::string text = "scenarios (a healthy warm-up, then the pathology from the onset step):\n";
  size_t width = 0;
  for (const ScenarioInfo& info : AllScenarios()) {
    width = std::max(width, info.name.size());
  }
  for (const ScenarioInfo& info : AllScenarios()) {
    absl::StrAppend(&text, absl::StrFormat("  %-*s  %s\n", static_cast<int>(width),
                                           std::string(info.name), std::string(info.description)));
  }
  return text;
}

const std::vector<Command>& Commands() {
  static const auto* const kCommands = [] {
    auto* commands = new std::vector<Command>();
    commands->push_back(
        {{"status",
          "entrowatch status [--run R] [--json] [flags]",
          "Show every run the daemon tracks (a table), or one run in detail with --run.",
          {AddrFlag(),
           {"run", "R", "show run R: latest step summary, verdict, anomalies"},
           {"json", "", "print the protobuf JSON of ListRunsResponse (or RunStatus with --run)"},
           TimeoutFlag("RPC deadline in seconds")},
          0,
          0,
          ""},
         &RunStatusCommand});
    commands->push_back(
        {{"end-incident",
          "entrowatch end-incident RUN [--reason TEXT] [flags]",
          "Accept run RUN's current regime: its active anomalies and state end and its "
          "baselines relearn from the next step (alerts stop firing).",
          {AddrFlag(),
           {"reason", "TEXT", "why, logged by the daemon (at most 1024 bytes)"},
           TimeoutFlag("RPC deadline in seconds")},
          1,
          1,
          ""},
         &RunEndIncidentCommand});
    commands->push_back({{"runs",
                          "entrowatch runs [flags]",
                          "Print the id of every run the daemon tracks, one per line.",
                          {AddrFlag(), TimeoutFlag("RPC deadline in seconds")},
                          0,
                          0,
                          ""},
                         &RunRunsCommand});
    commands->push_back(
        {{"replay", "entrowatch replay FILE.jsonl [--rate N] [--print-verdicts] [flags]",
          "Stream a trace (JSONL) to the daemon and report every rejected line.", StreamFlags(), 1,
          1,
          "FILE.jsonl (- for stdin) holds one Report per line in the protobuf JSON mapping.\n"
          "replay waits for every Ack, prints each rejected or unparsable line with its number\n"
          "and goes on; the exit status is 1 if there was any."},
         &RunReplayCommand});
    std::vector<FlagSpec> simulate_flags = StreamFlags();
    simulate_flags.insert(
        simulate_flags.end(),
        {{"scenario", "NAME", "what the run goes through (default healthy; see below)"},
         {"steps", "N", "training steps, numbered from 1 (default 200)"},
         {"onset", "STEP",
          "first step of the pathology (default steps/2; entrowatchd judges a run only after "
          "analysis.warmup_steps, 50 by default)"},
         {"run", "R", "run id (default sim-SCENARIO)"},
         {"ranks", "K", "data-parallel ranks, each reporting every step (default 1)"},
         {"vocab", "V", "vocabulary size of entropies and logits (default 4096)"},
         {"logits-every", "N",
          "send a raw [8, V] bf16 logits block every N steps (default 5; 0 "
          "never)"},
         {"seed", "S", "random seed (default 1)"},
         {"no-finish", "", "do not mark the run finished at the end"}});
    commands->push_back(
        {{"simulate", "entrowatch simulate [--scenario NAME] [--steps N] [flags]",
          "Generate a synthetic training run and stream it to the daemon.", simulate_flags, 0, 0,
          absl::StrCat("Every rank reports each step: token entropies, a raw logits block every\n"
                       "few steps, per-head attention entropies, the global grad norm, loss and\n"
                       "LR. The last report is marked final unless --no-finish.\n\n",
                       ScenarioList())},
         &RunSimulateCommand});
    commands->push_back({{"check-config",
                          "entrowatch check-config FILE",
                          "Parse and validate an entrowatchd config file; print ok or the error.",
                          {UnusedAddrFlag()},
                          1,
                          1,
                          ""},
                         &RunCheckConfigCommand});
    std::vector<FlagSpec> entropy_flags = {{"rows", "R", "logits rows (default 256)"},
                                           {"vocab", "V", "vocabulary size (default 152064)"},
                                           {"dtype", "T", "fp32 | fp16 | bf16 (default fp32)"}};
    std::vector<FlagSpec> attention_flags = {
        {"heads", "H", "query heads (default 32)"},
        {"kv-heads", "K", "key/value heads, GQA (default: heads)"},
        {"seq", "N", "sequence length, queries = keys (default 4096)"},
        {"head-dim", "D", "head dimension (default 128)"},
        {"causal", "", "causal mask"},
        {"dtype", "T", "fp32 | fp16 | bf16 (default bf16)"}};
    for (std::vector<FlagSpec>* flags : {&entropy_flags, &attention_flags}) {
      const std::vector<FlagSpec> common = CommonBenchFlags();
      flags->insert(flags->begin(), common.begin(), common.end());
    }
    commands->push_back(
        {{"bench entropy",
          "entrowatch bench entropy [--backend cpu|cuda] [--rows R] [--vocab V] [--dtype T] "
          "[flags]",
          "Time the token-entropy engine on random logits; checks a host's capacity.",
          entropy_flags, 0, 0,
          "GB/S counts the logits bytes read per second at the median call time."},
         &RunBenchEntropyCommand});
    commands->push_back(
        {{"bench attention",
          "entrowatch bench attention [--backend cpu|cuda] [--heads H] [--kv-heads K] [--seq N] "
          "[--head-dim D] [--causal] [--dtype T] [flags]",
          "Time the attention-entropy engine on random q and k (one sequence).", attention_flags, 0,
          0, "GB/S counts the q and k bytes read per second at the median call time."},
         &RunBenchAttentionCommand});
    commands->push_back({ReportSpec(), &RunReportCommand});
    return commands;
  }();
  return *kCommands;
}

CommandSpec GlobalSpec() {
  std::string commands = "commands:\n";
  size_t width = 0;
  for (const Command& command : Commands()) {
    width = std::max(width, command.spec.name.size());
  }
  for (const Command& command : Commands()) {
    absl::StrAppend(&commands, absl::StrFormat("  %-*s  %s\n", static_cast<int>(width),
                                               command.spec.name, command.spec.summary));
  }
  absl::StrAppend(&commands,
                  "\n'entrowatch COMMAND --help' describes a command. Exit status: 0 ok, 1 the "
                  "command failed, 2 usage error.\n");
  CommandSpec spec;
  spec.name = "entrowatch";
  spec.usage = "entrowatch [--addr ADDR] COMMAND [flags]";
  spec.summary = "Inspect and drive entrowatchd, the training-health monitoring daemon.";
  spec.flags = {
      {"addr", "ADDR",
       absl::StrCat("entrowatchd gRPC address for every command (default $ENTROWATCH_ADDRESS or ",
                    client::kDefaultTarget, ")")},
      {"token-file", "FILE", "bearer token (first line of FILE) for every call"},
      {"tls-ca", "FILE", "connect with TLS, trusting this CA (PEM)"},
      {"tls-cert", "FILE", "client certificate for mutual TLS (with --tls-key)"},
      {"tls-key", "FILE", "client private key for mutual TLS"},
      {"version", "", "print the version"}};
  spec.max_positional = std::numeric_limits<size_t>::max();
  spec.flags_end_at_positional = true;
  spec.details = std::move(commands);
  return spec;
}

// The daemon's address before flags: $ENTROWATCH_ADDRESS (read by the C++
// and Python clients too), else the deprecated $ENTROWATCH_ADDR with a
// warning, else the default.
std::string AddressFromEnvironment(std::ostream& err) {
  const char* old_env_addr = std::getenv("ENTROWATCH_ADDR");
  const char* env_addr = std::getenv("ENTROWATCH_ADDRESS");
  if ((env_addr == nullptr || *env_addr == '\0') && old_env_addr != nullptr &&
      *old_env_addr != '\0') {
    err << "entrowatch: ENTROWATCH_ADDR is deprecated; set ENTROWATCH_ADDRESS instead\n";
    return old_env_addr;
  }
  return client::DefaultTarget();
}

}  // namespace

int RunCli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  const CommandSpec global_spec = GlobalSpec();
  absl::StatusOr<ParsedArgs> global = common::ParseArgs(global_spec, args);
  if (!global.ok()) {
    err << "entrowatch: " << global.status().message() << "\n"
        << "run 'entrowatch --help' for usage\n";
    return kExitUsage;
  }
  if (global->help()) {
    out << common::FormatHelp(global_spec);
    return kExitOk;
  }
  if (global->Has("version")) {
    out << "entrowatch " << kVersion << "\n";
    return kExitOk;
  }
  const std::string addr = global->GetString("addr", AddressFromEnvironment(err));
  const std::vector<std::string>& words = global->positional();
  if (words.empty()) {
    err << common::FormatHelp(global_spec);
    return kExitUsage;
  }
  std::map<std::string, std::string> security_flags;
  for (const char* flag : {"token-file", "tls-ca", "tls-cert", "tls-key"}) {
    if (global->Has(flag)) {
      security_flags[flag] = global->GetString(flag, "");
    }
  }
  if (absl::Status s = ConfigureSecurity(security_flags); !s.ok()) {
    err << "entrowatch: " << s.message() << "\n";
    return kExitUsage;
  }
  size_t i = 0;
  std::string name = words[i];
  // `bench KIND` is one command name in two words.
  if (name == "bench" && i + 1 < words.size() && words[i + 1].compare(0, 1, "-") != 0) {
    name = absl::StrCat(name, " ", words[++i]);
  } else if (name == "bench") {
    const bool help = i + 1 < words.size() && (words[i + 1] == "--help" || words[i + 1] == "-h");
    (help ? out : err) << "usage: entrowatch bench entropy|attention [flags]\n"
                       << "run 'entrowatch bench entropy --help' or 'entrowatch bench attention "
                          "--help' for the flags\n";
    return help ? kExitOk : kExitUsage;
  }
  for (const Command& command : Commands()) {
    if (command.spec.name != name) {
      continue;
    }
    const std::vector<std::string> rest(words.begin() + static_cast<std::ptrdiff_t>(i) + 1,
                                        words.end());
    absl::StatusOr<ParsedArgs> parsed = common::ParseArgs(command.spec, rest);
    if (!parsed.ok()) {
      return UsageError(name, parsed.status(), err);
    }
    if (parsed->help()) {
      out << common::FormatHelp(command.spec);
      return kExitOk;
    }
    return command.run(*parsed, parsed->GetString("addr", addr), out, err);
  }
  err << "entrowatch: unknown command \"" << name << "\"\n"
      << "run 'entrowatch --help' for the list of commands\n";
  return kExitUsage;
}

}  // namespace entrowatch::cli
