#include "cli/trace.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace entrowatch::cli {
namespace {

using ::testing::StartsWith;

constexpr char kLine[] =
    R"({"runId": "gpt-small-7", "rank": 0, "worldSize": 8, "step": "1200", "seq": "1201",)"
    R"( "phase": "TRAIN", "grad": {"globalNorm": 0.42},)"
    R"( "scalars": {"loss": 2.31, "learningRate": 0.0003},)"
    R"( "tokenEntropies": [{"values": [2.1, 0.4, 3.3], "vocabSize": 50257}],)"
    R"( "attentionEntropies": [{"layer": 0, "headEntropy": [2.7, 1.9, 3.0, 2.2]}],)"
    R"( "logits": [{"logits": {"dtype": "BFLOAT16", "shape": ["1", "2"], "data": "AD8AQA=="},)"
    R"( "validVocab": 2, "targetIds": [1]}]})";

TEST(TraceTest, ParsesTheDesignExampleLine) {
  auto report = ParseReportLine(kLine, 1);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->run_id(), "gpt-small-7");
  EXPECT_EQ(report->world_size(), 8u);
  EXPECT_EQ(report->step(), 1200u);
  EXPECT_EQ(report->seq(), 1201u);
  EXPECT_DOUBLE_EQ(report->grad().global_norm(), 0.42);
  ASSERT_EQ(report->token_entropies_size(), 1);
  EXPECT_EQ(report->token_entropies(0).values_size(), 3);
  ASSERT_EQ(report->logits_size(), 1);
  EXPECT_EQ(report->logits(0).logits().data().size(), 4u);
  EXPECT_EQ(report->logits(0).logits().dtype(), v1::BFLOAT16);
}

TEST(TraceTest, ErrorsNameTheLine) {
  const std::vector<std::string> bad = {
      "{not json",
      R"({"runId": "r", "step": "abc"})",
      R"({"runId": "r", "noSuchField": 1})",
      R"({"logits": [{"logits": {"dtype": "FLOAT64"}}]})",
      R"([1, 2, 3])",
  };
  for (size_t i = 0; i < bad.size(); ++i) {
    auto report = ParseReportLine(bad[i], 40 + static_cast<int64_t>(i));
    ASSERT_FALSE(report.ok()) << bad[i];
    EXPECT_EQ(report.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(report.status().message()),
                StartsWith(absl::StrCat("line ", 40 + i, ": ")));
    EXPECT_GT(report.status().message().size(), absl::StrCat("line ", 40 + i, ": ").size());
  }
}

TEST(TraceTest, BlankLines) {
  EXPECT_TRUE(IsBlankLine(""));
  EXPECT_TRUE(IsBlankLine("  \t\r"));
  EXPECT_FALSE(IsBlankLine(" {}"));
}

}  // namespace
}  // namespace entrowatch::cli
