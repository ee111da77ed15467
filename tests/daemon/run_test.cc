// One Run on its own: resend window, folding, counters, restore and expiry,
// with a fake clock and a recording sink (no durable store).

#include "daemon/run.h"

#include <memory>
#include <string>
#include <vector>

#include "daemon/recording_sink.h"
#include "daemon/report_builder.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace entrowatch::daemon {
namespace {

using ::entrowatch::testing::MakeReport;
using ::testing::ElementsAre;

TEST(SeqWindowTest, RemembersRecentSeqsAndTreatsEvictedOnesAsSeen) {
  SeqWindow window(2);
  window.Insert(5);
  window.Insert(7);
  EXPECT_TRUE(window.Contains(5));
  EXPECT_FALSE(window.Contains(6));
  EXPECT_FALSE(window.Contains(1));  // nothing evicted yet
  window.Insert(9);                  // evicts 5
  EXPECT_TRUE(window.Contains(5));
  EXPECT_TRUE(window.Contains(1));  // older than the window
  EXPECT_FALSE(window.Contains(6));
  EXPECT_FALSE(window.Contains(8));
  EXPECT_TRUE(window.Contains(9));
}

class RunTest : public ::testing::Test {
 protected:
  RunTest() {
    settings_.aggregation.step_timeout = absl::Seconds(10);
    settings_.dedup_window = 4;
    settings_.history_steps = 2;
    run_ = MakeRun("r");
  }

  std::unique_ptr<daemon::Run> MakeRun(const std::string& id) {
    std::vector<std::unique_ptr<exporter::RunSink>> sinks;
    sinks.push_back(sink_.Open(id));
    return std::make_unique<daemon::Run>(id, settings_, std::move(sinks), &clock_, nullptr);
  }

  // Admit and fold one report carrying `tokens` entropies of 1 nat.
  v1::Ack Deliver(uint64_t step, uint64_t seq, uint32_t world_size = 1, bool final = false) {
    v1::Report report = MakeReport("r", step, seq, 0, world_size);
    report.set_final(final);
    v1::Ack ack;
    if (!run_->Admit(report, &ack)) {
      return ack;
    }
    analysis::ReportContribution c;
    c.step = step;
    c.world_size = world_size;
    c.entropies = {1.0f, 1.0f};
    c.normalized = {0.5f, 0.5f};
    c.generated = {false, false};
    EXPECT_TRUE(run_->AwaitWrite(run_->Fold(report, std::move(c), clock_.Wall(), &ack)).ok());
    return ack;
  }

  RunSettings settings_;
  common::FakeClock clock_;
  testing::RecordingSink sink_;
  std::unique_ptr<daemon::Run> run_;
};

TEST_F(RunTest, CountsAcceptedDuplicateLateAndRejected) {
  EXPECT_EQ(Deliver(1, 1).latest_step().step(), 1u);
  EXPECT_TRUE(Deliver(1, 1).duplicate());
  EXPECT_TRUE(Deliver(1, 2).late());
  v1::Ack rejected;
  run_->Reject(absl::InvalidArgumentError("logits[0]: bad"), &rejected);
  EXPECT_EQ(rejected.code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(rejected.latest_step().step(), 1u);  // the run's state comes along

  const v1::RunStatus status = run_->Describe(10);
  EXPECT_EQ(status.reports_accepted(), 1u);
  EXPECT_EQ(status.reports_duplicate(), 1u);
  EXPECT_EQ(status.reports_late(), 1u);
  EXPECT_EQ(status.reports_rejected(), 1u);
  EXPECT_TRUE(status.has_last_report_time());
}

TEST_F(RunTest, HistoryKeepsTheNewestSteps) {
  for (uint64_t step = 1; step <= 3; ++step) {
    Deliver(step, step);
  }
  const v1::RunStatus status = run_->Describe(10);
  ASSERT_EQ(status.history_size(), 2);
  EXPECT_EQ(status.history(0).step(), 2u);
  EXPECT_EQ(status.history(1).step(), 3u);
  EXPECT_EQ(run_->Describe(1).history_size(), 1);
  EXPECT_EQ(run_->Describe(0).history_size(), 0);
}

TEST_F(RunTest, PendingStepFinalizesAfterItsTimeout) {
  Deliver(1, 1, /*world_size=*/3);
  clock_.Advance(absl::Seconds(9));
  EXPECT_EQ(run_->FinalizeTimedOut().pending, nullptr);  // memory only: nothing to write
  EXPECT_EQ(run_->Describe(0).pending_steps(), 1u);
  clock_.Advance(absl::Seconds(1));
  run_->FinalizeTimedOut();
  EXPECT_EQ(run_->Describe(0).pending_steps(), 0u);
  EXPECT_THAT(sink_.Events("r", "step"), ElementsAre("step 1"));
}

TEST_F(RunTest, FinalReportEndsTheRunOnceAndLaterReportsAreRefused) {
  Deliver(1, 1, 2, /*final=*/true);
  v1::RunStatus status;
  ASSERT_TRUE(run_->End(5, &status).ok());  // already finished: no second end
  EXPECT_TRUE(status.finished());
  EXPECT_THAT(sink_.Events("r", "finished"), ElementsAre("finished"));
  const v1::Ack refused = Deliver(2, 2, 2);
  EXPECT_EQ(refused.code(), static_cast<int>(absl::StatusCode::kFailedPrecondition));
}

TEST_F(RunTest, IdleIsMeasuredFromTheLastReport) {
  Deliver(1, 1);
  clock_.Advance(absl::Seconds(60));
  EXPECT_TRUE(run_->IdleAt(clock_.Monotonic(), absl::Seconds(60)));
  EXPECT_FALSE(run_->IdleAt(clock_.Monotonic(), absl::Seconds(61)));
  Deliver(2, 2);
  EXPECT_FALSE(run_->IdleAt(clock_.Monotonic(), absl::Seconds(1)));
}

TEST_F(RunTest, RestoreReplaysStoredStepsAsNewToTheSinks) {
  store::StoredRun stored;
  stored.run_id = "r";
  stored.world_size = 2;
  stored.finished = true;
  stored.last_report_time = clock_.Wall();
  for (uint64_t step : {4, 5}) {
    v1::StepSummary summary;
    summary.set_step(step);
    summary.set_token_count(1);
    stored.steps.push_back(summary);
  }
  stored.seqs[0] = {8, 9};
  run_->RestoreFrom(std::move(stored));

  EXPECT_THAT(sink_.Events("r"), ElementsAre("open", "step 4 replayed", "step 5 replayed",
                                             "verdict WARMUP 0", "report 0", "finished"));
  const v1::RunStatus status = run_->Describe(10);
  EXPECT_EQ(status.last_step(), 5u);
  EXPECT_TRUE(status.finished());
  EXPECT_EQ(status.world_size(), 2u);
  v1::Ack ack;
  EXPECT_FALSE(run_->Admit(MakeReport("r", 6, 9), &ack));  // finished
}

TEST_F(RunTest, ExpireEndsAndReleasesTheSinks) {
  EXPECT_EQ(sink_.open_sinks(), 1);
  run_->Expire();
  EXPECT_EQ(sink_.open_sinks(), 0);
  EXPECT_EQ(sink_.Events("r").back(), "expired");
}

}  // namespace
}  // namespace entrowatch::daemon
