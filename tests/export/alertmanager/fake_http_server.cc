#include "fake_http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace entrowatch::alertmanager::testing {
namespace {

void SetTimeouts(int fd, absl::Duration timeout) {
  const timeval tv = absl::ToTimeval(timeout);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

absl::StatusOr<int> BindLoopback(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  }
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || listen(fd, 64) != 0) {
    const std::string error = strerror(errno);
    close(fd);
    return absl::UnavailableError(absl::StrCat("bind 127.0.0.1:", port, ": ", error));
  }
  return fd;
}

int BoundPort(int fd) {
  sockaddr_in addr{};
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  return ntohs(addr.sin_port);
}

bool SendAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    const ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) {
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<FakeHttpServer>> FakeHttpServer::Start(int port) {
  absl::StatusOr<int> fd = BindLoopback(port);
  if (!fd.ok()) {
    return fd.status();
  }
  const int stop_fd = eventfd(0, EFD_CLOEXEC);
  return std::unique_ptr<FakeHttpServer>(new FakeHttpServer(*fd, stop_fd, BoundPort(*fd)));
}

FakeHttpServer::FakeHttpServer(int listen_fd, int stop_fd, int port)
    : listen_fd_(listen_fd), stop_fd_(stop_fd), port_(port), thread_([this] { Serve(); }) {}

FakeHttpServer::~FakeHttpServer() {
  const uint64_t one = 1;
  (void)!write(stop_fd_, &one, sizeof(one));
  thread_.join();
  close(listen_fd_);
  close(stop_fd_);
  absl::MutexLock lock(&mu_);
  for (const int fd : held_) {
    close(fd);
  }
}

void FakeHttpServer::Serve() {
  while (true) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) {
        continue;
      }
      return;
    }
    if (fds[1].revents != 0) {
      return;
    }
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      continue;
    }
    SetTimeouts(fd, absl::Seconds(5));
    std::string data;
    char buf[4096];
    size_t header_end = std::string::npos;
    size_t content_length = 0;
    bool complete = false;
    while (!complete) {
      const ssize_t n = recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) {
        break;
      }
      data.append(buf, static_cast<size_t>(n));
      if (header_end == std::string::npos) {
        header_end = data.find("\r\n\r\n");
        if (header_end != std::string::npos) {
          for (absl::string_view line : absl::StrSplit(data.substr(0, header_end), "\r\n")) {
            const std::string lower = absl::AsciiStrToLower(line);
            if (absl::StartsWith(lower, "content-length:")) {
              absl::SimpleAtoi(absl::StripAsciiWhitespace(lower.substr(15)), &content_length);
            }
          }
        }
      }
      complete = header_end != std::string::npos && data.size() >= header_end + 4 + content_length;
    }
    if (!complete) {
      close(fd);
      continue;
    }
    RecordedRequest request;
    const absl::string_view head = absl::string_view(data).substr(0, header_end);
    const std::vector<absl::string_view> request_line =
        absl::StrSplit(head.substr(0, head.find("\r\n")), ' ');
    request.method = std::string(request_line[0]);
    request.path = request_line.size() > 1 ? std::string(request_line[1]) : "";
    request.headers = absl::AsciiStrToLower(head);
    request.body = data.substr(header_end + 4, content_length);
    request.received = absl::Now();
    const int status = status_.load();
    absl::MutexLock lock(&mu_);
    requests_.push_back(std::move(request));
    if (status == 0) {
      held_.push_back(fd);
      continue;
    }
    SendAll(fd, absl::StrCat("HTTP/1.1 ", status, " Status\r\nContent-Length: 0\r\n",
                             "Connection: close\r\n\r\n"));
    close(fd);
  }
}

std::vector<RecordedRequest> FakeHttpServer::requests() const {
  absl::MutexLock lock(&mu_);
  return requests_;
}

bool FakeHttpServer::WaitForRequests(size_t n, absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  const auto arrived = [this, n]()
                           ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return requests_.size() >= n; };
  return mu_.AwaitWithTimeout(absl::Condition(&arrived), timeout);
}

absl::StatusOr<std::string> HttpGet(int port, const std::string& path, absl::Duration timeout) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  }
  const std::unique_ptr<int, void (*)(int*)> closer(new int(fd), [](int* p) {
    close(*p);
    delete p;
  });
  SetTimeouts(fd, timeout);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return absl::UnavailableError(absl::StrCat("connect 127.0.0.1:", port, ": ", strerror(errno)));
  }
  // HTTP/1.0 keeps the answer free of chunked encoding.
  if (!SendAll(fd, absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"))) {
    return absl::UnavailableError("send failed");
  }
  std::string response;
  char buf[4096];
  while (true) {
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n < 0) {
      return absl::DeadlineExceededError(absl::StrCat("recv: ", strerror(errno)));
    }
    if (n == 0) {
      break;
    }
    response.append(buf, static_cast<size_t>(n));
  }
  if (!absl::StartsWith(response, "HTTP/1.0 200") && !absl::StartsWith(response, "HTTP/1.1 200")) {
    return absl::UnavailableError(
        absl::StrCat("GET ", path, ": ", response.substr(0, response.find("\r\n"))));
  }
  const size_t body = response.find("\r\n\r\n");
  return body == std::string::npos ? std::string() : response.substr(body + 4);
}

absl::StatusOr<int> PickFreePort() {
  absl::StatusOr<int> fd = BindLoopback(0);
  if (!fd.ok()) {
    return fd.status();
  }
  const int port = BoundPort(*fd);
  close(*fd);
  return port;
}

}  // namespace entrowatch::alertmanager::testing
