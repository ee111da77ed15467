#include "ingest/memory_guard.h"

#include <cstring>
#include <memory>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace entrowatch::ingest {
namespace {

using ::testing::HasSubstr;

// Allocates and touches `bytes`, so they are resident.
std::unique_ptr<char[]> Touch(size_t bytes) {
  std::unique_ptr<char[]> buffer(new char[bytes]);
  std::memset(buffer.get(), 1, bytes);
  return buffer;
}

TEST(MemoryGuardTest, ResidentBytesFollowsTouchedMemory) {
  const int64_t before = ResidentBytes();
  ASSERT_GT(before, 0);
  auto buffer = Touch(64 << 20);
  const int64_t after = ResidentBytes();
  EXPECT_GE(after - before, 60 << 20) << "64 MiB touched";
  EXPECT_NE(buffer[(64 << 20) - 1], 0);
}

TEST(MemoryGuardTest, NoBudgetIsNeverOver) {
  MemoryGuard guard(0);
  EXPECT_FALSE(guard.Over());
  EXPECT_EQ(guard.sheds(), 0u);
}

TEST(MemoryGuardTest, OverWhileResidentAboveTheBudget) {
  MemoryGuard tiny(1, absl::ZeroDuration());
  EXPECT_TRUE(tiny.Over());
  EXPECT_TRUE(tiny.Over());
  EXPECT_EQ(tiny.sheds(), 2u);
  EXPECT_GT(tiny.resident_bytes(), 1);
  const absl::Status status = tiny.OverBudget();
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(status.message(), HasSubstr("ingest.memory_budget_bytes=1"));
  EXPECT_THAT(status.message(), HasSubstr("reconnect and resend after backoff"));

  MemoryGuard roomy(int64_t{1} << 44, absl::ZeroDuration());
  EXPECT_FALSE(roomy.Over());
}

TEST(MemoryGuardTest, SamplesAtMostOncePerInterval) {
  const int64_t budget = ResidentBytes() + (32 << 20);
  MemoryGuard hourly(budget, absl::Hours(1));
  MemoryGuard always(budget, absl::ZeroDuration());
  ASSERT_FALSE(hourly.Over());
  ASSERT_FALSE(always.Over());
  auto buffer = Touch(96 << 20);
  EXPECT_FALSE(hourly.Over()) << "the first sample holds for an hour";
  EXPECT_TRUE(always.Over()) << "96 MiB more is over a budget 32 MiB above";
  buffer.reset();
#if !defined(__SANITIZE_ADDRESS__)  // ASan keeps freed memory in quarantine
  EXPECT_FALSE(always.Over()) << "freed (a large block goes back to the system)";
#endif
}

}  // namespace
}  // namespace entrowatch::ingest
