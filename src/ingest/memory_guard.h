#pragma once

// Load shedding on the daemon's resident memory, the way proxies' overload
// managers do it: the ingest bounds (queue, waiting reports) cover what the
// daemon holds, but gRPC's HTTP/2 transport buffers what streams send too:
// up to one HTTP/2 window for a stream that is not being read, and the whole
// next message, whatever its size, for a stream with a read outstanding. No
// gRPC setting bounds this without resetting streams (bench/RESULTS.md,
// "Load"). So while the process's resident set is above the budget, ingest
// starts no read, refuses new streams and ends the streams whose read is
// outstanding before their message is in (MonitorService); clients resend
// after backoff.
//
// Over() samples /proc/self/statm at most once per interval (a few
// microseconds), from whichever thread asks. When over the budget it first
// returns free heap pages to the system (malloc_trim, at most once per
// trim interval), since glibc keeps freed memory resident. Thread-safe.

#include <atomic>
#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace entrowatch::ingest {

// The process's resident set size in bytes; 0 if it cannot be read.
int64_t ResidentBytes();

class MemoryGuard {
 public:
  // budget_bytes 0: never over (the guard is off). resident_bytes reads the
  // resident set (tests give a fake).
  explicit MemoryGuard(int64_t budget_bytes, absl::Duration sample_interval = absl::Milliseconds(2),
                       absl::Duration trim_interval = absl::Milliseconds(100),
                       std::function<int64_t()> resident_bytes = ResidentBytes);
  MemoryGuard(const MemoryGuard&) = delete;
  MemoryGuard& operator=(const MemoryGuard&) = delete;

  // True while the resident set is above the budget.
  bool Over();
  // The refusal that goes with Over() (RESOURCE_EXHAUSTED, naming the key).
  absl::Status OverBudget() const;

  int64_t budget_bytes() const { return budget_bytes_; }
  // The latest sample (bytes).
  int64_t resident_bytes() const { return resident_.load(std::memory_order_relaxed); }
  // Times Over() returned true.
  uint64_t sheds() const { return sheds_.load(std::memory_order_relaxed); }

 private:
  const int64_t budget_bytes_;
  const int64_t sample_ns_;
  const int64_t trim_ns_;
  const std::function<int64_t()> read_resident_;
  std::atomic<int64_t> next_sample_ns_{0};
  std::atomic<int64_t> next_trim_ns_{0};
  std::atomic<int64_t> resident_{0};
  std::atomic<bool> over_{false};
  std::atomic<uint64_t> sheds_{0};
};

}  // namespace entrowatch::ingest
