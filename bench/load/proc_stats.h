#pragma once

// Resource use of another process on this machine, read from /proc/PID.

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace entrowatch::load {

struct ProcSample {
  int64_t rss_bytes = 0;       // VmRSS
  int64_t peak_rss_bytes = 0;  // VmHWM: the largest RSS since the process started
  double cpu_seconds = 0;      // user + system time of all its threads
};

// NotFound when the process is gone; Internal when /proc cannot be parsed.
absl::StatusOr<ProcSample> ReadProcSample(int pid);

// The "pid" and "grpc_address" of a ready file written by entrowatchd or
// entrowatch_null_sink ({"grpc_address": "...", "pid": N, ...}).
struct ReadyInfo {
  std::string grpc_address;
  int pid = 0;
};
absl::StatusOr<ReadyInfo> ReadReadyFile(const std::string& path);

}  // namespace entrowatch::load
