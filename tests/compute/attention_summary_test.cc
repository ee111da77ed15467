#include "compute/attention_summary.h"

#include <vector>

#include "gtest/gtest.h"

namespace entrowatch::compute {
namespace {

using entrowatch::v1::GENERATED;
using entrowatch::v1::PROMPT;
using entrowatch::v1::TOKEN_KIND_UNSPECIFIED;

TEST(AttentionSummaryTest, MeansVarianceAndKinds) {
  // 2 heads x 3 queries.
  const std::vector<float> entropies = {1.0f, 2.0f, 3.0f, 3.0f, 5.0f, 7.0f};
  const std::vector<entrowatch::v1::TokenKind> kinds = {PROMPT, GENERATED, TOKEN_KIND_UNSPECIFIED};
  absl::StatusOr<AttentionSummary> s = SummarizeAttention(entropies, 2, 3, kinds);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->head_mean.size(), 2u);
  EXPECT_DOUBLE_EQ(s->head_mean[0], 2.0);
  EXPECT_DOUBLE_EQ(s->head_mean[1], 5.0);
  EXPECT_DOUBLE_EQ(s->layer_mean, 3.5);
  EXPECT_DOUBLE_EQ(s->head_variance, 2.25);
  EXPECT_EQ(s->prompt_queries, 2);
  EXPECT_DOUBLE_EQ(s->prompt_mean, 2.0);  // (1 + 3) / 2
  EXPECT_EQ(s->generated_queries, 2);
  EXPECT_DOUBLE_EQ(s->generated_mean, 3.5);  // (2 + 5) / 2
}

TEST(AttentionSummaryTest, NoKindsAndBadSizes) {
  const std::vector<float> entropies = {1.0f, 1.0f};
  absl::StatusOr<AttentionSummary> s = SummarizeAttention(entropies, 2, 1, {});
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->head_variance, 0.0);
  EXPECT_EQ(s->prompt_queries + s->generated_queries, 0);
  EXPECT_FALSE(SummarizeAttention(entropies, 3, 1, {}).ok());
  const std::vector<entrowatch::v1::TokenKind> kinds = {PROMPT, PROMPT};
  EXPECT_FALSE(SummarizeAttention(entropies, 2, 1, kinds).ok());
}

}  // namespace
}  // namespace entrowatch::compute
