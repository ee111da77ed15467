#pragma once

// An in-process Monitor server for client and CLI tests: answers each
// streamed Report with an Ack chosen by the test, records what it received,
// and serves canned RunStatus for GetRun / ListRuns. Thread-safe.

#include <grpcpp/server.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "entrowatch/v1/entrowatch.grpc.pb.h"

namespace entrowatch::testing {

struct FakeMonitorOptions {
  int port = 0;  // 0 picks a free port on 127.0.0.1
  // The Ack for a report; default: OK with the report's seq and step.
  std::function<v1::Ack(const v1::Report&)> answer;
  // Acks written over the server's lifetime; later reports are read and
  // recorded but never answered. Negative: no limit.
  int64_t max_acks = -1;
  std::vector<v1::RunStatus> runs;  // served by GetRun / ListRuns
};

class FakeMonitor {
 public:
  // Null when the port could not be bound.
  static std::unique_ptr<FakeMonitor> Start(FakeMonitorOptions options);
  ~FakeMonitor();

  int port() const { return port_; }
  std::string address() const;
  std::vector<v1::Report> received() const;
  int64_t acks_written() const;
  // True once at least `n` reports were received, false at `deadline`.
  bool WaitForReceived(size_t n, absl::Time deadline) const;
  // Stops serving; open streams are cancelled. Idempotent.
  void Shutdown();

 private:
  class Service;
  FakeMonitor() = default;

  FakeMonitorOptions options_;
  int port_ = 0;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  mutable absl::Mutex mu_;
  std::vector<v1::Report> received_ ABSL_GUARDED_BY(mu_);
  int64_t acks_written_ ABSL_GUARDED_BY(mu_) = 0;
};

// A 127.0.0.1 port that nothing listens on (bound, then released).
int UnusedPort();

}  // namespace entrowatch::testing
