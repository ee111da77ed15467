#pragma once

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace entrowatch::common {

// Time source. Step timeouts and idle expiry use Monotonic(); timestamps
// shown to people use Wall(). Tests inject a FakeClock. Thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic time since an arbitrary epoch; never goes backwards.
  virtual absl::Duration Monotonic() const = 0;
  virtual absl::Time Wall() const = 0;

  // The process-wide real clock. Never null, never destroyed.
  static Clock* Real();
};

// A clock that moves only when told to. Thread-safe.
class FakeClock : public Clock {
 public:
  explicit FakeClock(absl::Time wall = absl::FromUnixSeconds(1'700'000'000)) : wall_(wall) {}
  absl::Duration Monotonic() const override;
  absl::Time Wall() const override;
  void Advance(absl::Duration d);

 private:
  mutable absl::Mutex mu_;
  absl::Duration mono_ ABSL_GUARDED_BY(mu_) = absl::ZeroDuration();
  absl::Time wall_ ABSL_GUARDED_BY(mu_);
};

}  // namespace entrowatch::common
