#include "compute/degrading_engine.h"

#include <memory>
#include <vector>

#include "compute/cpu/reference_engine.h"
#include "gtest/gtest.h"

namespace entrowatch::compute {
namespace {

// A device engine whose calls return a scripted status.
class ScriptedEngine final : public EntropyEngine {
 public:
  explicit ScriptedEngine(absl::Status status) : status_(std::move(status)) {}
  absl::string_view name() const override { return "cuda"; }
  absl::Status TokenEntropy(const LogitsInput&, absl::Span<RowEntropy> out) override {
    ++calls;
    for (RowEntropy& row : out) {
      row.entropy = 42;
    }
    return status_;
  }
  absl::Status AttentionEntropy(const AttentionInput&, AttentionOutput*) override {
    ++calls;
    return status_;
  }
  int calls = 0;

 private:
  absl::Status status_;
};

LogitsInput FourLogits(const std::vector<float>& row) {
  LogitsInput in;
  in.logits = {common::DType::kFloat32, 1, 4, row.data()};
  in.valid_vocab = 4;
  return in;
}

TEST(DegradingEngineTest, ServesFromThePrimaryWhileItWorks) {
  auto primary = std::make_unique<ScriptedEngine>(absl::OkStatus());
  ScriptedEngine* device = primary.get();
  DegradingEngine engine(std::move(primary), std::make_unique<ReferenceEngine>());
  const std::vector<float> row = {2.0f, 1.0f, 0.5f, 0.3f};
  std::vector<RowEntropy> out(1);
  ASSERT_TRUE(engine.TokenEntropy(FourLogits(row), absl::MakeSpan(out)).ok());
  EXPECT_EQ(out[0].entropy, 42);
  EXPECT_EQ(device->calls, 1);
  EXPECT_FALSE(engine.degraded());
  EXPECT_EQ(engine.name(), "cuda");
}

TEST(DegradingEngineTest, DeviceFailureMovesToTheFallbackForGood) {
  auto primary = std::make_unique<ScriptedEngine>(absl::InternalError("cuda: illegal address"));
  ScriptedEngine* device = primary.get();
  DegradingEngine engine(std::move(primary), std::make_unique<ReferenceEngine>());
  const std::vector<float> row = {2.0f, 1.0f, 0.5f, 0.3f};
  std::vector<RowEntropy> out(1);
  ASSERT_TRUE(engine.TokenEntropy(FourLogits(row), absl::MakeSpan(out)).ok());
  EXPECT_NEAR(out[0].entropy, 1.144266, 1e-6);  // the failed call was served
  EXPECT_TRUE(engine.degraded());
  EXPECT_EQ(engine.name(), "cpu-reference");
  EXPECT_NE(engine.failure().find("illegal address"), std::string::npos);
  ASSERT_TRUE(engine.TokenEntropy(FourLogits(row), absl::MakeSpan(out)).ok());
  EXPECT_EQ(device->calls, 1);  // never asked again
}

TEST(DegradingEngineTest, InvalidArgumentIsTheCallersAndDoesNotDegrade) {
  auto primary = std::make_unique<ScriptedEngine>(absl::InvalidArgumentError("bad"));
  DegradingEngine engine(std::move(primary), std::make_unique<ReferenceEngine>());
  AttentionOutput out;
  EXPECT_EQ(engine.AttentionEntropy(AttentionInput(), &out).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(engine.degraded());
}

TEST(DegradingEngineTest, InputTooLargeForTheDeviceGoesToTheFallbackOnce) {
  auto primary = std::make_unique<ScriptedEngine>(absl::ResourceExhaustedError("pool too small"));
  ScriptedEngine* device = primary.get();
  DegradingEngine engine(std::move(primary), std::make_unique<ReferenceEngine>());
  const std::vector<float> row = {2.0f, 1.0f, 0.5f, 0.3f};
  std::vector<RowEntropy> out(1);
  for (int call = 0; call < 2; ++call) {
    ASSERT_TRUE(engine.TokenEntropy(FourLogits(row), absl::MakeSpan(out)).ok());
    EXPECT_NEAR(out[0].entropy, 1.144266, 1e-6);
  }
  EXPECT_FALSE(engine.degraded());
  EXPECT_EQ(device->calls, 2);
}

}  // namespace
}  // namespace entrowatch::compute
