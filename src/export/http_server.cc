#include "export/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <exception>
#include <thread>

#include "CivetServer.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "civetweb.h"

namespace entrowatch::exporter {
namespace {

const char* StatusText(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 503:
      return "Service Unavailable";
    default:
      return status < 400 ? "OK" : "Error";
  }
}

std::string Decode(const std::string& text, bool form) {
  std::string out(text.size() + 1, '\0');
  const int n = mg_url_decode(text.data(), static_cast<int>(text.size()), out.data(),
                              static_cast<int>(out.size()), form ? 1 : 0);
  out.resize(n < 0 ? 0 : static_cast<size_t>(n));
  return out;
}

// Compares without an early exit, so timing does not reveal a prefix.
bool SameSecret(absl::string_view given, absl::string_view secret) {
  if (given.size() != secret.size()) {
    return false;
  }
  unsigned char diff = 0;
  for (size_t i = 0; i < given.size(); ++i) {
    diff |= static_cast<unsigned char>(given[i] ^ secret[i]);
  }
  return diff == 0;
}

}  // namespace

// The one civetweb handler: hands every request to HttpServer::Dispatch.
class HttpServer::Dispatcher : public CivetHandler {
 public:
  explicit Dispatcher(HttpServer* server) : server_(server) {}
  bool handleGet(CivetServer*, mg_connection* conn) override { return Serve(conn, true); }
  bool handleHead(CivetServer*, mg_connection* conn) override { return Serve(conn, false); }
  bool handlePost(CivetServer*, mg_connection* conn) override { return Refuse(conn); }
  bool handlePut(CivetServer*, mg_connection* conn) override { return Refuse(conn); }
  bool handleDelete(CivetServer*, mg_connection* conn) override { return Refuse(conn); }

 private:
  bool Refuse(mg_connection* conn) {
    mg_printf(conn,
              "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\nContent-Length: 0\r\n"
              "Connection: close\r\n\r\n");
    return true;
  }

  bool Serve(mg_connection* conn, bool with_body) {
    const mg_request_info* info = mg_get_request_info(conn);
    HttpRequest request;
    request.method = info->request_method != nullptr ? info->request_method : "GET";
    request.path = info->local_uri != nullptr ? info->local_uri : "/";
    request.query = info->query_string != nullptr ? info->query_string : "";
    const char* authorization = mg_get_header(conn, "Authorization");
    const HttpResponse response =
        server_->Dispatch(request, authorization != nullptr ? authorization : "");
    std::string head = absl::StrCat("HTTP/1.1 ", response.status, " ", StatusText(response.status),
                                    "\r\nContent-Type: ", response.content_type,
                                    "\r\nContent-Length: ", response.body.size(),
                                    "\r\nX-Content-Type-Options: nosniff\r\n");
    for (const auto& [name, value] : response.headers) {
      absl::StrAppend(&head, name, ": ", value, "\r\n");
    }
    absl::StrAppend(&head, "\r\n");
    mg_write(conn, head.data(), head.size());
    if (with_body && !response.body.empty()) {
      mg_write(conn, response.body.data(), response.body.size());
    }
    return true;
  }

  HttpServer* const server_;
};

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const std::string& listen,
                                                              int threads) {
  std::unique_ptr<HttpServer> server(new HttpServer());
  server->dispatcher_ = std::make_unique<Dispatcher>(server.get());
  const std::vector<std::string> options = {"listening_ports", listen, "num_threads",
                                            std::to_string(threads)};
  try {
    server->server_ = std::make_unique<CivetServer>(options);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("cannot serve HTTP on ", listen, ": ", e.what()));
  }
  const std::vector<int> ports = server->server_->getListeningPorts();
  if (ports.empty()) {
    return absl::UnavailableError(absl::StrCat("cannot serve HTTP on ", listen));
  }
  server->port_ = ports.front();
  server->host_ = listen.substr(0, listen.rfind(':'));
  server->server_->addHandler("/", server->dispatcher_.get());
  return server;
}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Handle(const std::string& prefix, HttpHandler handler) {
  absl::MutexLock lock(&mu_);
  handlers_[prefix] = std::move(handler);
}

void HttpServer::RequireBasicAuth(const std::string& user_password) {
  absl::MutexLock lock(&mu_);
  basic_auth_ = user_password;
}

HttpResponse HttpServer::Dispatch(const HttpRequest& request, const std::string& authorization) {
  HttpHandler handler;
  {
    absl::MutexLock lock(&mu_);
    if (!basic_auth_.empty()) {
      std::string given;
      constexpr absl::string_view kBasic = "Basic ";
      if (!absl::StartsWithIgnoreCase(authorization, kBasic) ||
          !absl::Base64Unescape(
              absl::StripAsciiWhitespace(absl::string_view(authorization).substr(kBasic.size())),
              &given) ||
          !SameSecret(given, basic_auth_)) {
        HttpResponse refused;
        refused.status = 401;
        refused.body = "401 Unauthorized: this entrowatchd requires HTTP basic auth\n";
        refused.headers.push_back({"WWW-Authenticate", "Basic realm=\"entrowatch\""});
        return refused;
      }
    }
    // Reverse order visits a prefix's extensions before the prefix itself, so
    // the first match is the longest registered prefix (whole path segments).
    for (auto it = handlers_.rbegin(); it != handlers_.rend(); ++it) {
      const std::string& prefix = it->first;
      if (request.path == prefix ||
          (absl::StartsWith(request.path, prefix) &&
           (prefix.back() == '/' || request.path[prefix.size()] == '/'))) {
        handler = it->second;
        break;
      }
    }
  }
  if (handler == nullptr) {
    HttpResponse missing;
    missing.status = 404;
    missing.body = absl::StrCat("404 Not Found: ", request.path, "\n");
    return missing;
  }
  return handler(request);
}

std::map<std::string, std::string> HttpServer::ParseQuery(const std::string& query) {
  std::map<std::string, std::string> out;
  for (absl::string_view pair : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    const size_t eq = pair.find('=');
    const std::string key(pair.substr(0, eq));
    const std::string value(eq == absl::string_view::npos ? "" : pair.substr(eq + 1));
    out[Decode(key, true)] = Decode(value, true);
  }
  return out;
}

void HttpServer::Stop() {
  if (server_ == nullptr) {
    return;
  }
  std::atomic<bool> stopped{false};
  std::thread stopper([this, &stopped] {
    server_->close();
    stopped = true;
  });
  // civetweb's accept loop polls with a 2 s quantum; a connection wakes it at
  // once, so stopping takes milliseconds.
  const std::string host = host_.empty() || host_ == "0.0.0.0" ? "127.0.0.1" : host_;
  for (int attempt = 0; attempt < 100 && !stopped; ++attempt) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port_));
    if (fd >= 0 && inet_pton(AF_INET, host.c_str(), &addr.sin_addr) == 1) {
      connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    }
    if (fd >= 0) {
      close(fd);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  stopper.join();
  server_.reset();
}

}  // namespace entrowatch::exporter
