#include "compute/engine_factory.h"

#include <vector>

#include "gtest/gtest.h"

namespace entrowatch::compute {
namespace {

TEST(EngineFactoryTest, ReferenceBackend) {
  EngineOptions options;
  options.backend = "cpu-reference";
  absl::StatusOr<EngineSelection> selection = CreateEngine(options);
  ASSERT_TRUE(selection.ok()) << selection.status();
  EXPECT_EQ(selection->backend, "cpu-reference");
  EXPECT_EQ(selection->engine->name(), "cpu-reference");
  EXPECT_FALSE(selection->degraded);
}

TEST(EngineFactoryTest, CpuBackend) {
  EngineOptions options;
  options.backend = "cpu";
  options.threads = 2;
  absl::StatusOr<EngineSelection> selection = CreateEngine(options);
  ASSERT_TRUE(selection.ok()) << selection.status();
  EXPECT_EQ(selection->backend, "cpu");
  EXPECT_EQ(selection->engine->name(), "cpu");
  EXPECT_FALSE(selection->degraded);
  EXPECT_TRUE(selection->fallback_reason.empty());
}

TEST(EngineFactoryTest, CudaAndAutoAlwaysYieldAWorkingEngine) {
  for (const char* backend : {"cuda", "auto"}) {
    EngineOptions options;
    options.backend = backend;
    absl::StatusOr<EngineSelection> selection = CreateEngine(options);
    ASSERT_TRUE(selection.ok()) << selection.status();
    ASSERT_NE(selection->engine, nullptr);
    EXPECT_EQ(selection->engine->name(), selection->backend);
    if (selection->backend == "cuda") {
      EXPECT_FALSE(selection->degraded);
    } else {
      EXPECT_EQ(selection->backend, "cpu");
      EXPECT_EQ(selection->degraded, !selection->fallback_reason.empty());
    }
    if (std::string(backend) == "cuda" && selection->backend != "cuda") {
      EXPECT_TRUE(selection->degraded);
    }
    std::vector<float> row = {2.0f, 1.0f, 0.5f, 0.3f};
    LogitsInput in;
    in.logits = {common::DType::kFloat32, 1, 4, row.data()};
    in.valid_vocab = 4;
    std::vector<RowEntropy> out(1);
    ASSERT_TRUE(selection->engine->TokenEntropy(in, absl::MakeSpan(out)).ok());
    EXPECT_NEAR(out[0].entropy, 1.144266, 1e-5);
  }
}

TEST(EngineFactoryTest, RejectsBadOptions) {
  EngineOptions options;
  options.backend = "tpu";
  EXPECT_EQ(CreateEngine(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.backend = "cpu";
  options.threads = -1;
  EXPECT_EQ(CreateEngine(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.threads = 0;
  options.cuda_pool_bytes = 0;
  EXPECT_EQ(CreateEngine(options).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace entrowatch::compute
