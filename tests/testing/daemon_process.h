#pragma once

// Starts the real entrowatchd binary for a test: writes a config into a
// fresh temporary directory (free ports unless the YAML says otherwise),
// waits for its --ready-file, and stops it by PID (SIGTERM, then SIGKILL
// after a deadline) when destroyed.

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace entrowatch::testing {

class DaemonProcess {
 public:
  // The config is extra_yaml plus, unless it has its own top-level `grpc:` or
  // `metrics:` section, one binding that section to 127.0.0.1:0.
  static absl::StatusOr<std::unique_ptr<DaemonProcess>> Start(
      const std::string& extra_yaml = "", absl::Duration ready_timeout = absl::Seconds(20));
  ~DaemonProcess();

  const std::string& grpc_address() const { return grpc_address_; }
  const std::string& metrics_address() const { return metrics_address_; }
  const std::string& dir() const { return dir_; }
  const std::string& config_path() const { return config_path_; }
  pid_t pid() const { return pid_; }

  // Sends a signal to the daemon.
  void Signal(int sig) const;
  // SIGKILL and reap (a crash).
  void Kill();
  // Starts the daemon again with the same config and directory (after it
  // exited or was killed).
  absl::Status Restart(absl::Duration ready_timeout = absl::Seconds(20));
  // RLIMIT_FSIZE (bytes) of the daemon from the next Restart(); 0: none set.
  void set_file_size_limit(int64_t bytes) { file_size_limit_ = bytes; }
  // Waits for the process to exit; its exit status (WEXITSTATUS) or an error
  // on timeout.
  absl::StatusOr<int> Wait(absl::Duration timeout);
  // The daemon's stderr so far.
  std::string Log() const;
  // GET http://metrics_address/metrics.
  absl::StatusOr<std::string> Scrape() const;

 private:
  DaemonProcess() = default;
  absl::Status Launch(absl::Duration ready_timeout);
  std::string dir_;
  std::string config_path_;
  std::string grpc_address_;
  std::string metrics_address_;
  pid_t pid_ = -1;
  bool exited_ = false;
  int64_t file_size_limit_ = 0;
};

// A TCP port on 127.0.0.1 that was free a moment ago.
int FreePort();

// Path of the entrowatchd binary (ENTROWATCHD environment variable, or the
// build tree path compiled in).
std::string DaemonBinary();

// Runs a command line with /bin/sh; returns its exit status and output.
struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};
CommandResult RunCommand(const std::string& command);

// Minimal HTTP GET on 127.0.0.1 (host:port); the whole response (status
// line, headers, body) with full_response, else the body.
absl::StatusOr<std::string> HttpGet(const std::string& address, const std::string& path,
                                    const std::string& extra_headers = "",
                                    bool full_response = false);

}  // namespace entrowatch::testing
