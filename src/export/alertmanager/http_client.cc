#include "export/alertmanager/http_client.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"

namespace entrowatch::alertmanager {
namespace {

class Socket {
 public:
  explicit Socket(int fd) : fd_(fd) {}
  ~Socket() {
    if (fd_ >= 0) {
      close(fd_);
    }
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  int fd() const { return fd_; }

 private:
  int fd_;
};

int RemainingMillis(absl::Time deadline) {
  const absl::Duration left = deadline - absl::Now();
  if (left <= absl::ZeroDuration()) {
    return 0;
  }
  // Round up so a sub-millisecond remainder still waits.
  return static_cast<int>(
      absl::ToInt64Milliseconds(left + absl::Milliseconds(1) - absl::Nanoseconds(1)));
}

struct Limits {
  absl::Time deadline;
  int cancel_fd;
};

// Waits for `events` on fd until the deadline or a cancellation.
absl::Status Await(int fd, short events, const Limits& limits, absl::string_view what) {
  while (true) {
    const int timeout_ms = RemainingMillis(limits.deadline);
    if (timeout_ms == 0) {
      return absl::DeadlineExceededError(absl::StrCat("timed out ", what));
    }
    pollfd p[2] = {{fd, events, 0}, {limits.cancel_fd, POLLIN, 0}};
    const int n = poll(p, limits.cancel_fd >= 0 ? 2 : 1, timeout_ms);
    if (n > 0 && p[1].revents != 0 && limits.cancel_fd >= 0) {
      return absl::CancelledError(absl::StrCat("cancelled ", what));
    }
    if (n > 0) {
      return absl::OkStatus();
    }
    if (n < 0 && errno != EINTR) {
      return absl::UnavailableError(absl::StrCat("poll failed ", what, ": ", strerror(errno)));
    }
  }
}

absl::StatusOr<int> Connect(const HttpEndpoint& endpoint, const Limits& limits) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = getaddrinfo(endpoint.host.c_str(), endpoint.port.c_str(), &hints, &found);
  if (rc != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot resolve ", endpoint.host, ": ", gai_strerror(rc)));
  }
  absl::Status last = absl::UnavailableError("no address");
  for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    const int fd =
        socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      last = absl::UnavailableError(absl::StrCat("socket: ", strerror(errno)));
      continue;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
      freeaddrinfo(found);
      return fd;
    }
    if (errno == EINPROGRESS) {
      last = Await(fd, POLLOUT, limits, "connecting");
      if (last.ok()) {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err == 0) {
          freeaddrinfo(found);
          return fd;
        }
        last = absl::UnavailableError(absl::StrCat("connect: ", strerror(err)));
      }
    } else {
      last = absl::UnavailableError(absl::StrCat("connect: ", strerror(errno)));
    }
    close(fd);
  }
  freeaddrinfo(found);
  return absl::Status(last.code(),
                      absl::StrCat(endpoint.host, ":", endpoint.port, ": ", last.message()));
}

absl::Status SendAll(int fd, absl::string_view data, const Limits& limits) {
  while (!data.empty()) {
    const ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      RETURN_IF_ERROR(Await(fd, POLLOUT, limits, "sending"));
      continue;
    }
    if (n < 0 && errno == EINTR) {
      continue;
    }
    return absl::UnavailableError(absl::StrCat("send: ", strerror(errno)));
  }
  return absl::OkStatus();
}

// Reads until the peer closes the connection (the request asked for
// Connection: close). The response of Alertmanager to a post is tiny.
absl::StatusOr<std::string> ReadAll(int fd, const Limits& limits) {
  constexpr size_t kMaxResponse = 1 << 20;
  std::string response;
  char buf[4096];
  while (response.size() < kMaxResponse) {
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n > 0) {
      response.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) {
      return response;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      RETURN_IF_ERROR(Await(fd, POLLIN, limits, "waiting for the response"));
      continue;
    }
    if (errno == EINTR) {
      continue;
    }
    return absl::UnavailableError(absl::StrCat("recv: ", strerror(errno)));
  }
  return response;
}

}  // namespace

absl::StatusOr<HttpEndpoint> ParseHttpUrl(absl::string_view url) {
  absl::string_view rest = url;
  if (!absl::ConsumePrefix(&rest, "http://")) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected http://host:port[/prefix], got \"", url, "\""));
  }
  HttpEndpoint endpoint;
  const size_t slash = rest.find('/');
  absl::string_view authority = rest.substr(0, slash);
  if (slash != absl::string_view::npos) {
    absl::string_view prefix = rest.substr(slash);
    while (absl::ConsumeSuffix(&prefix, "/")) {
    }
    endpoint.path_prefix = std::string(prefix);
  }
  size_t colon;
  if (absl::ConsumePrefix(&authority, "[")) {
    const size_t close_bracket = authority.find(']');
    if (close_bracket == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("unterminated [ in \"", url, "\""));
    }
    endpoint.host = std::string(authority.substr(0, close_bracket));
    authority.remove_prefix(close_bracket + 1);
    colon = authority.empty() || authority[0] != ':' ? absl::string_view::npos : 0;
  } else {
    colon = authority.rfind(':');
    endpoint.host = std::string(authority.substr(0, colon));
  }
  uint32_t port = 0;
  if (colon == absl::string_view::npos || !absl::SimpleAtoi(authority.substr(colon + 1), &port) ||
      port == 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expected http://host:port[/prefix] with a port in 1..65535, got \"", url, "\""));
  }
  if (endpoint.host.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("no host in \"", url, "\""));
  }
  endpoint.port = absl::StrCat(port);
  return endpoint;
}

absl::Status HttpPost(const HttpEndpoint& endpoint, absl::string_view path, absl::string_view body,
                      absl::Duration timeout, int cancel_fd) {
  const Limits limits{absl::Now() + timeout, cancel_fd};
  ASSIGN_OR_RETURN(const int fd, Connect(endpoint, limits));
  Socket socket(fd);
  const bool ipv6_literal = absl::StrContains(endpoint.host, ':');
  const std::string host_header = ipv6_literal
                                      ? absl::StrCat("[", endpoint.host, "]:", endpoint.port)
                                      : absl::StrCat(endpoint.host, ":", endpoint.port);
  const std::string request = absl::StrCat(
      "POST ", endpoint.path_prefix, path, " HTTP/1.1\r\nHost: ", host_header,
      "\r\nUser-Agent: entrowatchd\r\nContent-Type: application/json\r\nContent-Length: ",
      body.size(), "\r\nConnection: close\r\n\r\n", body);
  RETURN_IF_ERROR(SendAll(fd, request, limits));
  ASSIGN_OR_RETURN(const std::string response, ReadAll(fd, limits));

  // Status line: HTTP/1.x NNN reason
  const absl::string_view head = absl::string_view(response).substr(0, response.find("\r\n"));
  int code = 0;
  if (!absl::StartsWith(head, "HTTP/1.") || head.size() < 12 ||
      !absl::SimpleAtoi(head.substr(9, 3), &code)) {
    return absl::UnavailableError(absl::StrCat("malformed HTTP response from ", host_header, ": \"",
                                               absl::CEscape(head.substr(0, 80)), "\""));
  }
  if (code >= 200 && code < 300) {
    return absl::OkStatus();
  }
  const size_t body_start = response.find("\r\n\r\n");
  const absl::string_view reply_body =
      body_start == std::string::npos
          ? absl::string_view()
          : absl::StripAsciiWhitespace(absl::string_view(response).substr(body_start + 4, 200));
  const std::string message =
      absl::StrCat(endpoint.path_prefix, path, " answered ", head.substr(9), ": ", reply_body);
  // 429 asks to come back later; other 4xx mean the request itself is wrong.
  if (code >= 400 && code < 500 && code != 429) {
    return absl::InvalidArgumentError(message);
  }
  return absl::UnavailableError(message);
}

}  // namespace entrowatch::alertmanager
