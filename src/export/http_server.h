#pragma once

// The daemon's one HTTP listener: /metrics and whatever else registers a
// handler on it (the web console). Built on civetweb directly, because
// prometheus-cpp's Exposer serves only collectables. Basic auth, when
// required, covers every path. Thread-safe.

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

class CivetServer;

namespace entrowatch::exporter {

struct HttpRequest {
  std::string method;  // GET, HEAD, ...
  std::string path;    // URL-decoded, without the query
  std::string query;   // raw, without '?'
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
};

// Handlers run on the server's threads and must not block for long.
using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

class HttpServer {
 public:
  // Binds host:port (port 0 picks one) and serves with `threads` threads.
  // Fails when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const std::string& listen,
                                                           int threads = 2);
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;
  // Stops promptly (see Stop).
  ~HttpServer();

  // Serves `path` and everything below it ("/api" serves /api and /api/...;
  // "/" serves everything no longer prefix claims). A later call for the same
  // prefix replaces the handler.
  void Handle(const std::string& prefix, HttpHandler handler);

  // Requires HTTP basic auth ("user:password") on every path; 401 otherwise.
  void RequireBasicAuth(const std::string& user_password);

  int port() const { return port_; }

  // Stops serving and joins the server's threads within milliseconds.
  // Idempotent.
  void Stop();

  // Splits "a=1&b=x%20y" into decoded pairs (the last of a repeated key wins).
  static std::map<std::string, std::string> ParseQuery(const std::string& query);

 private:
  class Dispatcher;
  HttpServer() = default;
  HttpResponse Dispatch(const HttpRequest& request, const std::string& authorization);

  std::unique_ptr<Dispatcher> dispatcher_;
  std::unique_ptr<CivetServer> server_;
  std::string host_;
  int port_ = 0;
  absl::Mutex mu_;
  std::map<std::string, HttpHandler> handlers_ ABSL_GUARDED_BY(mu_);
  std::string basic_auth_ ABSL_GUARDED_BY(mu_);  // "user:password", "" = off
};

}  // namespace entrowatch::exporter
