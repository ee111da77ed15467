// entrowatch_null_sink: a Monitor service that does nothing. Every report is
// answered at once with an empty OK Ack, so the load generator can measure
// what gRPC alone costs with the same payloads (the anchor for entrowatchd's
// ingest throughput). Serves until SIGTERM / SIGINT or --max-seconds.

#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <deque>
#include <fstream>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/command_line.h"
#include "entrowatch/v1/entrowatch.grpc.pb.h"

namespace {

using entrowatch::v1::Ack;
using entrowatch::v1::Report;

entrowatch::common::CommandSpec Spec() {
  entrowatch::common::CommandSpec spec;
  spec.name = "entrowatch_null_sink";
  spec.usage = "entrowatch_null_sink [--listen HOST:PORT] [--ready-file PATH] [--max-seconds S]";
  spec.summary = "A Monitor server that acknowledges every report and does nothing else.";
  spec.flags = {{"listen", "HOST:PORT", "default 127.0.0.1:0 (a free port)"},
                {"ready-file", "PATH", "once serving, write {\"grpc_address\": ..., \"pid\": N}"},
                {"max-seconds", "S", "exit on its own after this long (default 3600)"}};
  return spec;
}

constexpr int kMaxMessageBytes = 64 << 20;

Ack OkAck(const Report& report) {
  Ack ack;
  ack.set_seq(report.seq());
  ack.set_step(report.step());
  return ack;
}

// Reads continuously and writes one Ack per report, one write at a time.
class SinkStream final : public grpc::ServerBidiReactor<Report, Ack> {
 public:
  SinkStream() { StartRead(&request_); }

  void OnReadDone(bool ok) override {
    mu_.Lock();
    if (!ok) {
      reads_done_ = true;
    } else {
      outbox_.push_back(OkAck(request_));
      StartNextWrite();
    }
    const bool read_more = ok;
    UnlockAndMaybeFinish();
    if (read_more) {
      StartRead(&request_);
    }
  }

  void OnWriteDone(bool ok) override {
    mu_.Lock();
    writing_ = false;
    if (ok) {
      outbox_.pop_front();
    } else {
      outbox_.clear();
    }
    StartNextWrite();
    UnlockAndMaybeFinish();
  }

  void OnDone() override { delete this; }

 private:
  void StartNextWrite() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!writing_ && !outbox_.empty()) {
      writing_ = true;
      StartWrite(&outbox_.front());
    }
  }

  // Finish may delete this at once on another thread: nothing is touched after.
  void UnlockAndMaybeFinish() ABSL_UNLOCK_FUNCTION(mu_) {
    const bool finish = reads_done_ && !writing_ && outbox_.empty() && !finished_;
    finished_ = finished_ || finish;
    mu_.Unlock();
    if (finish) {
      Finish(grpc::Status::OK);
    }
  }

  Report request_;  // one read at a time
  absl::Mutex mu_;
  std::deque<Ack> outbox_ ABSL_GUARDED_BY(mu_);
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

class NullSink final : public entrowatch::v1::Monitor::CallbackService {
 public:
  grpc::ServerBidiReactor<Report, Ack>* Stream(grpc::CallbackServerContext*) override {
    return new SinkStream();
  }

  grpc::ServerUnaryReactor* Submit(grpc::CallbackServerContext* context, const Report* request,
                                   Ack* response) override {
    *response = OkAck(*request);
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

bool WriteReadyFile(const std::string& path, const std::string& address) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << nlohmann::ordered_json{{"grpc_address", address}, {"pid", getpid()}}.dump() << "\n";
    if (!out) {
      return false;
    }
  }
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  const entrowatch::common::ParsedArgs args =
      entrowatch::common::ParseArgsOrExit(Spec(), std::vector<std::string>(argv + 1, argv + argc));
  const absl::StatusOr<int64_t> max_seconds =
      args.GetInt("max-seconds", 3600, 1, std::numeric_limits<int32_t>::max());
  if (!max_seconds.ok()) {
    std::fprintf(stderr, "entrowatch_null_sink: %s\n",
                 std::string(max_seconds.status().message()).c_str());
    return 2;
  }
  const std::string listen = args.GetString("listen", "127.0.0.1:0");
  const std::string ready_file = args.GetString("ready-file", "");
  // Blocked before gRPC starts its threads, so only sigtimedwait sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  NullSink service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::fprintf(stderr, "entrowatch_null_sink: cannot listen on %s\n", listen.c_str());
    return 1;
  }
  const std::string address = absl::StrCat(listen.substr(0, listen.rfind(':')), ":", port);
  if (!ready_file.empty() && !WriteReadyFile(ready_file, address)) {
    std::fprintf(stderr, "entrowatch_null_sink: cannot write %s\n", ready_file.c_str());
    return 1;
  }
  std::fprintf(stderr, "entrowatch_null_sink: serving on %s\n", address.c_str());
  timespec timeout{static_cast<time_t>(*max_seconds), 0};
  sigtimedwait(&stop_signals, nullptr, &timeout);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  return 0;
}
