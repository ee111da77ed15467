// The report processor in-process, with a fake clock, the CPU reference
// engine and recording sinks: what leaves the daemon for a report stream.

#include "daemon/processor.h"

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "compute/engine_factory.h"
#include "daemon/recording_sink.h"
#include "daemon/report_builder.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace entrowatch::daemon {
namespace {

using ::entrowatch::testing::AddEntropies;
using ::entrowatch::testing::AddLogits;
using ::entrowatch::testing::MakeReport;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

class ProcessorTest : public ::testing::Test {
 protected:
  ProcessorTest() {
    config_.aggregation.step_timeout_seconds = 30;
    config_.runs.idle_expiry_seconds = 600;
    compute::EngineOptions options;
    options.backend = "cpu-reference";
    auto selection = compute::CreateEngine(options);
    engine_ = std::move(selection->engine);
  }

  ReportProcessor& processor() {
    if (processor_ == nullptr) {
      processor_ = std::make_unique<ReportProcessor>(
          config_, engine_.get(), std::vector<exporter::Sink*>{&sink_}, &stats_, &clock_);
    }
    return *processor_;
  }

  // A report of one rank with two token entropies.
  v1::Ack Send(const std::string& run, uint64_t step, uint64_t seq, uint32_t rank = 0,
               uint32_t world_size = 1) {
    v1::Report r = MakeReport(run, step, seq, rank, world_size);
    AddEntropies(&r, {1.0f, 2.0f}, 1000);
    return processor().Process(r);
  }

  v1::RunStatus Status(const std::string& run) {
    v1::GetRunRequest request;
    request.set_run_id(run);
    auto status = processor().GetRun(request);
    EXPECT_TRUE(status.ok()) << status.status();
    return status.ok() ? *status : v1::RunStatus();
  }

  config::Config config_;
  common::FakeClock clock_;
  std::unique_ptr<compute::EntropyEngine> engine_;
  testing::RecordingSink sink_;
  testing::RecordingStats stats_;
  std::unique_ptr<ReportProcessor> processor_;
};

TEST_F(ProcessorTest, StepTimeoutFinalizesIncompleteStepOnTheFakeClock) {
  v1::Ack ack = Send("r", 1, 1, /*rank=*/0, /*world_size=*/2);
  ASSERT_EQ(ack.code(), 0) << ack.message();
  EXPECT_FALSE(ack.has_latest_step());

  clock_.Advance(absl::Seconds(29));
  processor().Sweep();
  EXPECT_THAT(sink_.Events("r", "step"), IsEmpty());
  EXPECT_EQ(Status("r").pending_steps(), 1u);

  clock_.Advance(absl::Seconds(1));
  processor().Sweep();
  EXPECT_THAT(sink_.Events("r", "step"), ElementsAre("step 1"));
  const v1::RunStatus status = Status("r");
  EXPECT_EQ(status.pending_steps(), 0u);
  EXPECT_EQ(status.last_step(), 1u);
  EXPECT_EQ(status.latest().token_count(), 2u);
}

TEST_F(ProcessorTest, StepsLeaveInOrderWithTheirVerdicts) {
  for (uint64_t step = 1; step <= 3; ++step) {
    ASSERT_EQ(Send("r", step, step).code(), 0);
  }
  EXPECT_THAT(sink_.Events("r"),
              ElementsAre("open", "report 2", "step 1", "verdict WARMUP 0", "report 2", "step 2",
                          "verdict WARMUP 0", "report 2", "step 3", "verdict WARMUP 0"));
  EXPECT_EQ(stats_.Last("runs"), "runs 1");
  EXPECT_EQ(stats_.Last("compute"), "");  // client-side entropies: no engine call
}

TEST_F(ProcessorTest, ResendIsDuplicateAndReportForFinalizedStepIsLate) {
  ASSERT_EQ(Send("r", 1, 1).code(), 0);
  const v1::Ack resend = Send("r", 1, 1);
  EXPECT_EQ(resend.code(), 0);
  EXPECT_TRUE(resend.duplicate());
  EXPECT_EQ(resend.latest_step().step(), 1u);

  const v1::Ack late = Send("r", 1, 2);
  EXPECT_EQ(late.code(), 0);
  EXPECT_TRUE(late.late());

  const v1::RunStatus status = Status("r");
  EXPECT_EQ(status.reports_accepted(), 1u);
  EXPECT_EQ(status.reports_duplicate(), 1u);
  EXPECT_EQ(status.reports_late(), 1u);
  // The late report is seen, but none of its entropies reach a step.
  EXPECT_THAT(sink_.Events("r", "report"), ElementsAre("report 2", "report 0"));
  EXPECT_THAT(sink_.Events("r", "step"), ElementsAre("step 1"));
}

TEST_F(ProcessorTest, EndRunFinalizesPendingStepsAndRefusesLaterReports) {
  ASSERT_EQ(Send("r", 1, 1, 0, 2).code(), 0);
  auto ended = processor().EndRun("r");
  ASSERT_TRUE(ended.ok()) << ended.status();
  EXPECT_TRUE(ended->finished());
  EXPECT_EQ(ended->last_step(), 1u);
  EXPECT_THAT(sink_.Events("r"),
              ElementsAre("open", "report 2", "step 1", "verdict WARMUP 0", "finished"));

  const v1::Ack after = Send("r", 2, 2, 0, 2);
  EXPECT_EQ(after.code(), static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(after.message(), HasSubstr("marked finished"));
  EXPECT_EQ(Status("r").reports_rejected(), 1u);
  EXPECT_EQ(processor().EndRun("unknown").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ProcessorTest, FinalReportFinishesTheRun) {
  v1::Report r = MakeReport("r", 1, 1, 0, 2);
  AddEntropies(&r, {1.0f}, 1000);
  r.set_final(true);
  ASSERT_EQ(processor().Process(r).code(), 0);
  EXPECT_TRUE(Status("r").finished());
  EXPECT_THAT(sink_.Events("r"), Contains("finished"));
}

TEST_F(ProcessorTest, IdleRunExpiresAndItsSinksEnd) {
  ASSERT_EQ(Send("idle", 1, 1).code(), 0);
  clock_.Advance(absl::Seconds(300));
  ASSERT_EQ(Send("busy", 1, 1).code(), 0);
  EXPECT_EQ(sink_.open_sinks(), 2);

  clock_.Advance(absl::Seconds(300));
  processor().Sweep();
  EXPECT_EQ(sink_.Events("idle").back(), "expired");
  EXPECT_THAT(sink_.Events("busy"), Not(Contains("expired")));
  EXPECT_EQ(sink_.open_sinks(), 1);
  EXPECT_EQ(stats_.Last("runs"), "runs 1");
  v1::GetRunRequest request;
  request.set_run_id("idle");
  EXPECT_EQ(processor().GetRun(request).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(processor().ListRuns().runs_size(), 1);
}

TEST_F(ProcessorTest, EndIncidentPublishesTheVerdict) {
  ASSERT_EQ(Send("r", 1, 1).code(), 0);
  auto status = processor().EndIncident("r", "new tokenizer");
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->run_id(), "r");
  EXPECT_EQ(sink_.Events("r", "verdict").size(), 2u);
  EXPECT_EQ(processor().EndIncident("nope", "").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ProcessorTest, MaxRunsRefusesNewRunsWithTheKeyNamed) {
  config_.runs.max_runs = 1;
  ASSERT_EQ(Send("a", 1, 1).code(), 0);
  const v1::Ack refused = Send("b", 1, 1);
  EXPECT_EQ(refused.code(), static_cast<int>(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(refused.message(), HasSubstr("runs.max_runs"));
  EXPECT_THAT(sink_.Events("b"), IsEmpty());
}

TEST_F(ProcessorTest, LogitsAreComputedAndNonFiniteRowsRefusedOrSkipped) {
  v1::Report r = MakeReport("r", 1, 1);
  AddLogits(&r, 2, 4, {0, 0, 0, 0, 1, NAN, 0, 0});
  const v1::Ack refused = processor().Process(r);
  EXPECT_EQ(refused.code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(refused.message(), HasSubstr("logits[0].logits row 1 contains NaN"));
  EXPECT_EQ(Status("r").reports_rejected(), 1u);
  EXPECT_EQ(stats_.Last("compute"), "compute token");

  config_.ingest.skip_nonfinite_rows = true;
  processor().Reload(config_);
  r.set_seq(2);
  ASSERT_EQ(processor().Process(r).code(), 0);
  EXPECT_EQ(stats_.Last("skipped"), "skipped nonfinite 1");
  // The uniform row over 4 columns: entropy log 4.
  EXPECT_NEAR(Status("r").latest().entropy_mean(), std::log(4.0), 1e-6);
}

TEST_F(ProcessorTest, ReloadShortensTheStepTimeoutOfTrackedRuns) {
  ASSERT_EQ(Send("r", 1, 1, 0, 2).code(), 0);
  config_.aggregation.step_timeout_seconds = 5;
  processor().Reload(config_);
  clock_.Advance(absl::Seconds(5));
  processor().Sweep();
  EXPECT_THAT(sink_.Events("r", "step"), ElementsAre("step 1"));
}

TEST_F(ProcessorTest, OutcomesGoToStats) {
  v1::Ack ack;
  processor().OnOutcome(ack);
  ack.set_duplicate(true);
  processor().OnOutcome(ack);
  ack.set_code(static_cast<int>(absl::StatusCode::kInvalidArgument));
  processor().OnOutcome(ack);
  processor().OnReceived(12);
  processor().OnStreamShed();
  EXPECT_THAT(stats_.Events(), ElementsAre("outcome ok", "outcome duplicate",
                                           "outcome invalid_argument", "bytes 12", "shed"));
}

}  // namespace
}  // namespace entrowatch::daemon
