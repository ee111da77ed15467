#include "cli/format.h"

#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

namespace entrowatch::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

const absl::Time kNow = absl::FromUnixSeconds(1'700'000'000);

v1::RunStatus MakeRun(const std::string& id, uint64_t step, v1::HealthState state) {
  v1::RunStatus run;
  run.set_run_id(id);
  run.set_last_step(step);
  run.set_world_size(8);
  run.mutable_verdict()->set_state(state);
  run.mutable_verdict()->set_since_step(step - 3);
  run.mutable_last_report_time()->set_seconds(1'700'000'000 - 125);
  v1::StepSummary* latest = run.mutable_latest();
  latest->set_step(step);
  latest->set_token_count(2048);
  latest->set_entropy_mean(2.3456);
  latest->set_has_grad_norm(true);
  latest->set_grad_norm(0.42);
  latest->set_ranks_reported(8);
  latest->set_world_size(8);
  latest->set_complete(true);
  return run;
}

TEST(FormatTest, Ages) {
  EXPECT_EQ(FormatAge(absl::Seconds(4)), "4s");
  EXPECT_EQ(FormatAge(absl::Seconds(125)), "2m05s");
  EXPECT_EQ(FormatAge(absl::Hours(3) + absl::Minutes(12)), "3h12m");
  EXPECT_EQ(FormatAge(absl::Hours(24 * 5 + 3)), "5d3h");
  EXPECT_EQ(FormatAge(absl::Seconds(-3)), "0s");
}

TEST(FormatTest, RunsTableHasOneAlignedRowPerRun) {
  v1::ListRunsResponse runs;
  *runs.add_runs() = MakeRun("gpt-small-7", 1200, v1::PANIC_ZONE);
  v1::RunStatus finished = MakeRun("r2", 40, v1::NORMAL);
  finished.set_finished(true);
  finished.mutable_latest()->set_has_grad_norm(false);
  v1::Anomaly* anomaly = finished.add_anomalies();
  anomaly->set_pattern(v1::ENTROPY_COLLAPSE);
  finished.add_anomalies()->set_pattern(v1::ATTENTION_LOCKING);
  *runs.add_runs() = finished;

  const std::string table = FormatRunsTable(runs, kNow);
  const std::vector<std::string> lines = absl::StrSplit(table, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0],
            "RUN          LAST STEP  STATE       ENTROPY MEAN  GRAD NORM  ANOMALIES             "
            "              LAST REPORT");
  EXPECT_EQ(lines[1],
            "gpt-small-7  1200       PANIC_ZONE  2.346         0.42       none                  "
            "              2m05s ago");
  EXPECT_EQ(lines[2],
            "r2           40         NORMAL      2.346         -          "
            "ENTROPY_COLLAPSE,ATTENTION_LOCKING  finished");
}

TEST(FormatTest, RunDetailsShowVerdictSummaryAndAnomalies) {
  v1::RunStatus run = MakeRun("gpt-small-7", 1200, v1::PANIC_ZONE);
  run.mutable_verdict()->set_reason("entropy and grad norm both high");
  run.mutable_verdict()->set_recommended_action("skip the batch, lower the LR");
  v1::Evidence* e = run.mutable_verdict()->add_evidence();
  e->set_signal("grad_norm_z");
  e->set_value(4.5);
  e->set_threshold(3);
  e->set_comparison("z>=");
  v1::LayerSummary* layer = run.mutable_latest()->add_layers();
  layer->set_layer(2);
  layer->set_mean_entropy(1.5);
  v1::Anomaly* anomaly = run.add_anomalies();
  anomaly->set_pattern(v1::ATTENTION_LOCKING);
  anomaly->set_severity(v1::WARNING);
  anomaly->set_since_step(1190);
  anomaly->set_subject("layer 2");
  anomaly->set_recommended_action("check layer 2");
  const std::string text = FormatRunDetails(run, kNow);
  EXPECT_THAT(text, HasSubstr("run          gpt-small-7\n"));
  run.set_finished(true);
  EXPECT_THAT(FormatRunDetails(run, kNow),
              HasSubstr("run          gpt-small-7 (finished)\nlast step    1200 (last report "
                        "2m05s ago)"));
  EXPECT_THAT(text, HasSubstr("last step    1200 (last report 2m05s ago), world size 8"));
  EXPECT_THAT(text, HasSubstr("state        PANIC_ZONE since step 1197\n"));
  EXPECT_THAT(text, HasSubstr("evidence     grad_norm_z 4.5 z>= 3\n"));
  EXPECT_THAT(text, HasSubstr("action       skip the batch, lower the LR\n"));
  EXPECT_THAT(text, HasSubstr("mean 2.3456"));
  EXPECT_THAT(text, HasSubstr("grad norm 0.42"));
  EXPECT_THAT(text, HasSubstr("layer 2    attention entropy 1.5000 nats"));
  EXPECT_THAT(text, HasSubstr("ATTENTION_LOCKING WARNING since step 1190 (layer 2)"));
  EXPECT_THAT(text, HasSubstr("action   check layer 2"));
}

TEST(FormatTest, AckLine) {
  v1::Report report;
  report.set_run_id("r");
  report.set_rank(3);
  report.set_step(12);
  v1::Ack ack;
  ack.set_step(12);
  EXPECT_EQ(FormatAckLine("line 4", report, ack),
            "line 4: run r rank 3 step 12: state - | no finalized step yet | anomalies none");
  ack.mutable_verdict()->set_state(v1::STAGNATION);
  ack.mutable_latest_step()->set_step(11);
  ack.mutable_latest_step()->set_token_count(10);
  ack.mutable_latest_step()->set_entropy_mean(4.25);
  ack.mutable_latest_step()->set_has_grad_norm(true);
  ack.mutable_latest_step()->set_grad_norm(0.01);
  v1::Anomaly* overload = ack.add_anomalies();
  overload->set_pattern(v1::ENTROPIC_OVERLOAD);
  overload->set_severity(v1::WARNING);
  ack.set_late(true);
  EXPECT_EQ(FormatAckLine("", report, ack),
            "run r rank 3 step 12 (late): state STAGNATION | step 11 entropy_mean 4.2500 "
            "grad_norm 0.01 | anomalies ENTROPIC_OVERLOAD:WARNING");
}

TEST(FormatTest, CodeNamesAndJson) {
  EXPECT_EQ(CodeName(3), "INVALID_ARGUMENT");
  EXPECT_EQ(CodeName(8), "RESOURCE_EXHAUSTED");
  v1::RunStatus run = MakeRun("r", 5, v1::NORMAL);
  auto json = ToJson(run);
  ASSERT_TRUE(json.ok());
  v1::RunStatus parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(*json, &parsed).ok());
  EXPECT_EQ(parsed.SerializeAsString(), run.SerializeAsString());
  // Zero fields are printed too, so scripts can rely on every key.
  EXPECT_THAT(*json, HasSubstr("\"reportsRejected\""));
  EXPECT_THAT(*json, Not(HasSubstr("run_id")));
}

}  // namespace
}  // namespace entrowatch::cli
