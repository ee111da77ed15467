#include "testing/daemon_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace entrowatch::testing {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string JsonField(const std::string& json, const std::string& key) {
  std::smatch m;
  std::regex re("\"" + key + "\":\\s*\"([^\"]*)\"");
  return std::regex_search(json, m, re) ? m[1].str() : "";
}

}  // namespace

std::string DaemonBinary() {
  const char* env = std::getenv("ENTROWATCHD");
  return env != nullptr ? env : ENTROWATCHD_PATH;
}

absl::StatusOr<std::unique_ptr<DaemonProcess>> DaemonProcess::Start(const std::string& extra_yaml,
                                                                    absl::Duration ready_timeout) {
  std::unique_ptr<DaemonProcess> d(new DaemonProcess());
  char tmpl[] = "/tmp/entrowatch-test-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    return absl::InternalError("mkdtemp failed");
  }
  d->dir_ = tmpl;
  d->config_path_ = d->dir_ + "/entrowatch.yaml";
  {
    std::ofstream out(d->config_path_);
    const bool own_grpc =
        extra_yaml.rfind("grpc:", 0) == 0 || absl::StrContains(extra_yaml, "\ngrpc:");
    const bool own_metrics =
        extra_yaml.rfind("metrics:", 0) == 0 || absl::StrContains(extra_yaml, "\nmetrics:");
    if (!own_grpc) {
      out << "grpc: {listen: \"127.0.0.1:0\"}\n";
    }
    if (!own_metrics) {
      out << "metrics: {listen: \"127.0.0.1:0\"}\n";
    }
    out << extra_yaml;
  }
  RETURN_IF_ERROR(d->Launch(ready_timeout));
  return d;
}

absl::Status DaemonProcess::Launch(absl::Duration ready_timeout) {
  const std::string ready = dir_ + "/ready.json";
  const std::string log = dir_ + "/daemon.log";
  std::remove(ready.c_str());
  const std::string binary = DaemonBinary();
  pid_t pid = fork();
  if (pid < 0) {
    return absl::InternalError("fork failed");
  }
  if (pid == 0) {
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    if (file_size_limit_ > 0) {
      const rlimit limit{static_cast<rlim_t>(file_size_limit_),
                         static_cast<rlim_t>(file_size_limit_)};
      setrlimit(RLIMIT_FSIZE, &limit);
    }
    execl(binary.c_str(), binary.c_str(), "--config", config_path_.c_str(), "--ready-file",
          ready.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  pid_ = pid;
  exited_ = false;
  const absl::Time deadline = absl::Now() + ready_timeout;
  while (absl::Now() < deadline) {
    const std::string json = ReadFile(ready);
    if (!json.empty()) {
      grpc_address_ = JsonField(json, "grpc_address");
      metrics_address_ = JsonField(json, "metrics_address");
      return absl::OkStatus();
    }
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      exited_ = true;
      return absl::FailedPreconditionError(
          absl::StrCat("entrowatchd exited with ", WEXITSTATUS(status), ": ", ReadFile(log)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return absl::DeadlineExceededError(absl::StrCat("entrowatchd not ready: ", ReadFile(log)));
}

void DaemonProcess::Kill() {
  if (pid_ > 0 && !exited_) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    exited_ = true;
  }
}

absl::Status DaemonProcess::Restart(absl::Duration ready_timeout) {
  if (!exited_) {
    return absl::FailedPreconditionError("entrowatchd is still running");
  }
  return Launch(ready_timeout);
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

DaemonProcess::~DaemonProcess() {
  if (pid_ > 0 && !exited_) {
    kill(pid_, SIGTERM);
    if (!Wait(absl::Seconds(10)).ok()) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  if (!dir_.empty() && std::getenv("ENTROWATCH_KEEP_TEST_DIRS") == nullptr) {
    RunCommand("rm -rf '" + dir_ + "'");
  }
}

void DaemonProcess::Signal(int sig) const { kill(pid_, sig); }

absl::StatusOr<int> DaemonProcess::Wait(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      exited_ = true;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return absl::DeadlineExceededError("entrowatchd did not exit");
}

std::string DaemonProcess::Log() const { return ReadFile(dir_ + "/daemon.log"); }

absl::StatusOr<std::string> DaemonProcess::Scrape() const {
  return HttpGet(metrics_address_, "/metrics");
}

CommandResult RunCommand(const std::string& command) {
  CommandResult result;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) {
    return result;
  }
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) {
    result.output.append(buffer, n);
  }
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

absl::StatusOr<std::string> HttpGet(const std::string& address, const std::string& path,
                                    const std::string& extra_headers, bool full_response) {
  const size_t colon = address.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port)) {
    return absl::InvalidArgumentError("bad address " + address);
  }
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return absl::UnavailableError("cannot connect to " + address);
  }
  const std::string request =
      absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: ", address, "\r\n", extra_headers, "\r\n");
  if (send(fd, request.data(), request.size(), 0) < 0) {
    close(fd);
    return absl::UnavailableError("send failed");
  }
  std::string response;
  char buffer[8192];
  ssize_t n;
  while ((n = recv(fd, buffer, sizeof buffer, 0)) > 0) {
    response.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  const size_t body = response.find("\r\n\r\n");
  if (full_response) {
    return response;
  }
  if (body == std::string::npos) {
    return absl::UnavailableError("no HTTP response from " + address);
  }
  return response.substr(body + 4);
}

}  // namespace entrowatch::testing
