#pragma once

// A loopback HTTP/1.1 server for tests: records each request and answers with
// a configurable status, or not at all. One request per connection.

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace entrowatch::alertmanager::testing {

struct RecordedRequest {
  std::string method;
  std::string path;
  std::string headers;  // raw header block, lower-cased
  std::string body;
  absl::Time received;
};

class FakeHttpServer {
 public:
  // Binds 127.0.0.1:port (0 picks a free port) and starts serving.
  static absl::StatusOr<std::unique_ptr<FakeHttpServer>> Start(int port = 0);
  ~FakeHttpServer();  // stops the thread and closes the socket

  int port() const { return port_; }

  // Status code of later answers; 0 = read the request and never answer
  // (the connection stays open until the server stops).
  void set_status(int status) { status_.store(status); }

  std::vector<RecordedRequest> requests() const;
  // Polls until at least n requests arrived or the deadline passes.
  bool WaitForRequests(size_t n, absl::Duration timeout) const;

 private:
  FakeHttpServer(int listen_fd, int stop_fd, int port);
  void Serve();

  const int listen_fd_;
  const int stop_fd_;  // eventfd: written once to stop Serve()
  const int port_;
  std::atomic<int> status_{200};
  mutable absl::Mutex mu_;
  std::vector<RecordedRequest> requests_ ABSL_GUARDED_BY(mu_);
  std::vector<int> held_ ABSL_GUARDED_BY(mu_);  // connections left unanswered
  std::thread thread_;
};

// Plain GET of http://127.0.0.1:port/path; returns the body of a 200 answer.
absl::StatusOr<std::string> HttpGet(int port, const std::string& path, absl::Duration timeout);

// A TCP port on 127.0.0.1 that was free a moment ago (for servers that must
// be told their port, such as Alertmanager).
absl::StatusOr<int> PickFreePort();

}  // namespace entrowatch::alertmanager::testing
