// kernel_timing.cc on the emulated device: kernel-only samples of many
// back-to-back launches after an L2 flush, and no timing of shapes that fit
// in the L2 (the emulator's L2 is shrunk so that small shapes exceed it).
// Also sets the thread order of the whole emulated-engine binary.

#include <cuda_runtime.h>

#include "compute/cuda/kernel_timing.h"
#include "gtest/gtest.h"

namespace entrowatch::compute {
namespace {

// The engine suites in this binary run their kernels with the threads of
// every block in random order (the kernel tests cover the other orders).
class RandomThreadOrder : public ::testing::Environment {
 public:
  void SetUp() override { emu::SetOrder(2); }
};
const auto* const g_random_order = ::testing::AddGlobalTestEnvironment(new RandomThreadOrder);

class KernelTimingTest : public ::testing::Test {
 protected:
  void SetUp() override { emu::L2Bytes() = 64 << 10; }
  void TearDown() override { emu::L2Bytes() = 50 << 20; }
};

TEST_F(KernelTimingTest, TokenSamplesAreBackToBackLaunchesAfterAnL2Flush) {
  const long launches = emu::S().launches;
  const long memsets = emu::Memsets();
  // 4 x 40000 bf16 = 320000 bytes, five times the L2.
  absl::StatusOr<double> ms = TimeTokenKernelMs(common::DType::kBFloat16, 4, 40000, 2);
  ASSERT_TRUE(ms.ok()) << ms.status();
  EXPECT_GT(*ms, 0);
  // Two kernels per launch: 3 warm-up launches, then 2 samples of 20.
  EXPECT_EQ(emu::S().launches - launches, 2 * (3 + 2 * 20));
  // One flush per sample, of twice the L2.
  EXPECT_EQ(emu::Memsets() - memsets, 2);
  EXPECT_EQ(emu::LastMemsetBytes(), size_t{2} * (64 << 10));
}

TEST_F(KernelTimingTest, AttentionSamplesAreBackToBackLaunches) {
  const long launches = emu::S().launches;
  // q and k: 2 x 4 x 128 x 64 bf16 = 131072 bytes, twice the L2.
  absl::StatusOr<double> ms =
      TimeAttentionKernelMs(common::DType::kBFloat16, 4, 4, 128, 64, true, 1);
  ASSERT_TRUE(ms.ok()) << ms.status();
  EXPECT_EQ(emu::S().launches - launches, 3 + 20);
}

TEST_F(KernelTimingTest, ShapesThatFitInTheL2AreRefused) {
  absl::StatusOr<double> ms = TimeTokenKernelMs(common::DType::kBFloat16, 2, 1000, 2);
  EXPECT_EQ(ms.status().code(), absl::StatusCode::kInvalidArgument) << ms.status();
  ms = TimeAttentionKernelMs(common::DType::kBFloat16, 1, 1, 64, 64, true, 2);
  EXPECT_EQ(ms.status().code(), absl::StatusCode::kInvalidArgument) << ms.status();
}

}  // namespace
}  // namespace entrowatch::compute
