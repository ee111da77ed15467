#include "ingest/validate.h"

#include <cmath>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ingest/validation_cases.h"

namespace entrowatch::ingest {
namespace {

using ::testing::HasSubstr;
using testing::ValidationCase;

ValidationLimits Limits() {
  ValidationLimits limits;
  limits.max_rows_per_report = testing::kCaseMaxRows;
  limits.max_elements_per_report = testing::kCaseMaxElements;
  return limits;
}

TEST(ValidateTest, BaseReportIsValid) {
  EXPECT_TRUE(ValidateReport(testing::ValidBaseReport(), Limits()).ok());
}

TEST(ValidateTest, ProtoZerosMeanNotGiven) {
  v1::Report r = testing::MakeReport("zeros", 0, 0, 0, 0);
  r.mutable_logits()->Add();
  testing::SetTensor(r.mutable_logits(0)->mutable_logits(), v1::FLOAT32, {1, 2}, {0, 0});
  EXPECT_TRUE(ValidateReport(r, Limits()).ok());
}

TEST(ValidateTest, EntropyAtLogVocabWithFloatRoundingIsAccepted) {
  v1::Report r = testing::MakeReport("bound", 1, 1);
  testing::AddEntropies(&r, {static_cast<float>(std::log(16.0))}, 16);
  EXPECT_TRUE(ValidateReport(r, Limits()).ok());
}

// A diverged step is evidence (NON_FINITE), not garbage: NaN and +Inf loss
// and grad norm are accepted, as are valid named scalars and max logits.
TEST(ValidateTest, NonFiniteLossAndGradNormAreEvidence) {
  for (double bad : {std::nan(""), HUGE_VAL}) {
    v1::Report r = testing::ValidBaseReport();
    r.mutable_scalars()->set_loss(bad);
    r.mutable_grad()->set_global_norm(bad);
    EXPECT_TRUE(ValidateReport(r, Limits()).ok()) << bad;
  }
  v1::Report r = testing::ValidBaseReport();
  r.mutable_scalars()->set_loss(-HUGE_VAL);
  (*r.mutable_scalars()->mutable_values())["critic/rewards/mean"] = 0.5;
  (*r.mutable_scalars()->mutable_values())["actor:ppo_kl-1.x"] = -0.01;
  r.mutable_attention_entropies(0)->set_max_logit(12.5f);
  EXPECT_TRUE(ValidateReport(r, Limits()).ok());
}

// Summaries do not count as token rows: a job's aggregate of many tokens
// passes max_rows_per_report (8 in these cases).
TEST(ValidateTest, ValidSummaryAndRankListAreAccepted) {
  v1::Report r = testing::ValidBaseReport();
  testing::AddValidSummary(&r);
  EXPECT_TRUE(ValidateReport(r, Limits()).ok()) << ValidateReport(r, Limits());
  r = testing::ValidBaseReport();
  testing::AddValidRankList(&r);
  EXPECT_TRUE(ValidateReport(r, Limits()).ok()) << ValidateReport(r, Limits());
  v1::Report big = testing::MakeReport("big", 1, 1);
  big.mutable_summary()->add_entropy()->CopyFrom(r.summary().entropy(0));
  v1::EntropySummary* e = big.mutable_summary()->mutable_entropy(0);
  e->set_count(e->count() * 1000000);
  e->set_sum(e->sum() * 1000000);
  e->set_sum_squares(e->sum_squares() * 1000000);
  e->set_high_entropy_count(e->high_entropy_count() * 1000000);
  e->set_generated_count(1000000);
  e->set_generated_sum(e->generated_sum() * 1000000);
  for (int i = 0; i < e->histogram_size(); ++i) {
    e->set_histogram(i, e->histogram(i) * 1000000);
  }
  EXPECT_TRUE(ValidateReport(big, Limits()).ok()) << ValidateReport(big, Limits());
  // An empty summary (a rank without tokens) is valid without a histogram.
  v1::Report empty = testing::MakeReport("empty", 1, 1);
  empty.mutable_summary()->add_entropy()->set_vocab_size(32000);
  EXPECT_TRUE(ValidateReport(empty, Limits()).ok()) << ValidateReport(empty, Limits());
}

class ValidationRuleTest : public ::testing::TestWithParam<ValidationCase> {};

TEST_P(ValidationRuleTest, RejectedWithFieldAndProblem) {
  v1::Report r = testing::ValidBaseReport();
  GetParam().mutate(&r);
  absl::Status s = ValidateReport(r, Limits());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(GetParam().expected));
}

INSTANTIATE_TEST_SUITE_P(Rules, ValidationRuleTest, ::testing::ValuesIn(testing::ValidationCases()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace entrowatch::ingest
