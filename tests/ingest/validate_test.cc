#include "ingest/validate.h"

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
