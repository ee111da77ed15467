#include "common/clock.h"

#include <chrono>

namespace entrowatch::common {
namespace {

class RealClock : public Clock {
 public:
  absl::Duration Monotonic() const override {
    return absl::FromChrono(std::chrono::steady_clock::now().time_since_epoch());
  }
  absl::Time Wall() const override { return absl::Now(); }
};

}  // namespace

Clock* Clock::Real() {
  static Clock* clock = new RealClock();
  return clock;
}

absl::Duration FakeClock::Monotonic() const {
  absl::MutexLock lock(&mu_);
  return mono_;
}

absl::Time FakeClock::Wall() const {
  absl::MutexLock lock(&mu_);
  return wall_;
}

void FakeClock::Advance(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  mono_ += d;
  wall_ += d;
}

}  // namespace entrowatch::common
