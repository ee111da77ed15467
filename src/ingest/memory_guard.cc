#include "ingest/memory_guard.h"

#include <fcntl.h>
#include <malloc.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"

namespace entrowatch::ingest {
namespace {

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

int64_t ResidentBytes() {
  const int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return 0;
  }
  char buf[128];
  const ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) {
    return 0;
  }
  buf[n] = '\0';
  long long size_pages = 0;
  long long resident_pages = 0;
  if (std::sscanf(buf, "%lld %lld", &size_pages, &resident_pages) != 2) {
    return 0;
  }
  return resident_pages * static_cast<int64_t>(sysconf(_SC_PAGESIZE));
}

MemoryGuard::MemoryGuard(int64_t budget_bytes, absl::Duration sample_interval,
                         absl::Duration trim_interval, std::function<int64_t()> resident_bytes)
    : budget_bytes_(budget_bytes),
      sample_ns_(absl::ToInt64Nanoseconds(sample_interval)),
      trim_ns_(absl::ToInt64Nanoseconds(trim_interval)),
      read_resident_(std::move(resident_bytes)) {}

bool MemoryGuard::Over() {
  if (budget_bytes_ <= 0) {
    return false;
  }
  const int64_t now = NowNs();
  int64_t due = next_sample_ns_.load(std::memory_order_relaxed);
  // One caller per interval samples; the others use the last result.
  if (now >= due &&
      next_sample_ns_.compare_exchange_strong(due, now + sample_ns_, std::memory_order_relaxed)) {
    int64_t resident = read_resident_();
    if (resident > budget_bytes_) {
      int64_t trim_due = next_trim_ns_.load(std::memory_order_relaxed);
      if (now >= trim_due && next_trim_ns_.compare_exchange_strong(trim_due, now + trim_ns_,
                                                                   std::memory_order_relaxed)) {
        malloc_trim(0);
        resident = read_resident_();
      }
    }
    resident_.store(resident, std::memory_order_relaxed);
    over_.store(resident > budget_bytes_, std::memory_order_relaxed);
  }
  const bool over = over_.load(std::memory_order_relaxed);
  if (over) {
    sheds_.fetch_add(1, std::memory_order_relaxed);
  }
  return over;
}

absl::Status MemoryGuard::OverBudget() const {
  return absl::ResourceExhaustedError(absl::StrCat(
      "entrowatchd is over its memory budget (ingest.memory_budget_bytes=", budget_bytes_,
      ", resident ", resident_bytes(), " bytes): reconnect and resend after backoff"));
}

}  // namespace entrowatch::ingest
