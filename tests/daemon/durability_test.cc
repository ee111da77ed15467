// Durable state: a restarted entrowatchd continues every run where it was,
// and a kill -9 in the middle of a stream loses nothing acknowledged.

#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <thread>

#include "absl/strings/str_cat.h"
#include "daemon/report_builder.h"
#include "entrowatch/client/stream_client.h"
#include "entrowatch/v1/entrowatch.grpc.pb.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "testing/daemon_process.h"

namespace entrowatch::testing {
namespace {

using ::testing::HasSubstr;

std::unique_ptr<v1::Monitor::Stub> Stub(const std::string& address) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return v1::Monitor::NewStub(
      grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args));
}

v1::RunStatus GetRun(const std::string& address, const std::string& run) {
  auto stub = Stub(address);
  grpc::ClientContext ctx;
  v1::GetRunRequest req;
  req.set_run_id(run);
  req.set_history(1000);
  v1::RunStatus status;
  grpc::Status s = stub->GetRun(&ctx, req, &status);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return status;
}

// A two-rank run whose entropy collapses halfway, so the analysis has state
// worth restoring (baselines, a detector that fired, a state).
std::vector<v1::Report> TwoRankRun(const std::string& run, int steps) {
  std::vector<v1::Report> reports;
  for (int step = 0; step < steps; ++step) {
    for (uint32_t rank = 0; rank < 2; ++rank) {
      v1::Report r = MakeReport(run, step, static_cast<uint64_t>(step) + 1, rank, 2);
      const float base = step < steps / 2 ? 3.0f : 0.05f;
      std::vector<float> h;
      for (int i = 0; i < 16; ++i) {
        h.push_back(base *
                    (0.9f + 0.2f * static_cast<float>((i * 7 + step * 3 + rank) % 11) / 11.0f));
      }
      AddEntropies(&r, h, 50000);
      r.mutable_grad()->set_global_norm(1.0 + 0.01 * (step % 5));
      r.mutable_scalars()->set_loss(2.0);
      reports.push_back(std::move(r));
    }
  }
  return reports;
}

// Step summaries must match except the time each was finalized.
void ExpectSameHistory(const v1::RunStatus& a, const v1::RunStatus& b) {
  ASSERT_EQ(a.history_size(), b.history_size());
  for (int i = 0; i < a.history_size(); ++i) {
    v1::StepSummary x = a.history(i);
    v1::StepSummary y = b.history(i);
    x.clear_finalized_time();
    y.clear_finalized_time();
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(x, y))
        << "step " << x.step() << "\n"
        << x.DebugString() << "\nvs\n"
        << y.DebugString();
  }
  EXPECT_EQ(a.verdict().state(), b.verdict().state());
  EXPECT_EQ(a.verdict().since_step(), b.verdict().since_step());
  ASSERT_EQ(a.anomalies_size(), b.anomalies_size());
  for (int i = 0; i < a.anomalies_size(); ++i) {
    EXPECT_EQ(a.anomalies(i).pattern(), b.anomalies(i).pattern());
    EXPECT_EQ(a.anomalies(i).since_step(), b.anomalies(i).since_step());
  }
}

// Streams reports through the C++ client and waits for every Ack.
void StreamAll(const std::string& address, const std::vector<v1::Report>& reports) {
  client::StreamClientOptions options;
  options.target = address;
  auto c = client::StreamClient::Create(options);
  ASSERT_TRUE(c.ok());
  for (const auto& r : reports) {
    ASSERT_TRUE((*c)->EnqueueWait(r, absl::Now() + absl::Seconds(30)));
  }
  ASSERT_TRUE((*c)->Flush(absl::Now() + absl::Seconds(60)).ok());
  EXPECT_EQ((*c)->Stats().rejected, 0u);
}

TEST(DurabilityTest, RestartRestoresRunsBaselinesAndSeqs) {
  auto reference = DaemonProcess::Start();
  ASSERT_TRUE(reference.ok()) << reference.status();
  const std::vector<v1::Report> reports = TwoRankRun("restart-run", 80);
  StreamAll((*reference)->grpc_address(), reports);
  const v1::RunStatus expected = GetRun((*reference)->grpc_address(), "restart-run");
  ASSERT_EQ(expected.history_size(), 80);

  char state[] = "/tmp/entrowatch-state-XXXXXX";
  ASSERT_NE(mkdtemp(state), nullptr);
  auto daemon = DaemonProcess::Start(absl::StrCat("state_dir: ", state, "\n"));
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  // Half the run, a restart, the other half.
  StreamAll((*daemon)->grpc_address(),
            std::vector<v1::Report>(reports.begin(), reports.begin() + 81));
  (*daemon)->Signal(SIGTERM);
  ASSERT_TRUE((*daemon)->Wait(absl::Seconds(10)).ok());
  ASSERT_TRUE((*daemon)->Restart().ok()) << (*daemon)->Log();
  EXPECT_THAT((*daemon)->Log(), HasSubstr("restored 1 runs"));
  // Resends of acknowledged reports are duplicates, not counted twice.
  StreamAll((*daemon)->grpc_address(),
            std::vector<v1::Report>(reports.begin() + 75, reports.end()));
  const v1::RunStatus actual = GetRun((*daemon)->grpc_address(), "restart-run");
  EXPECT_EQ(actual.reports_duplicate(), 6u);
  ExpectSameHistory(expected, actual);
  EXPECT_NE(actual.verdict().state(), v1::WARMUP);
  RunCommand(absl::StrCat("rm -rf ", state));
}

TEST(DurabilityTest, KillDashNineMidStreamLosesNothingAcknowledged) {
  const std::vector<v1::Report> reports = TwoRankRun("crash-run", 120);
  auto reference = DaemonProcess::Start();
  ASSERT_TRUE(reference.ok()) << reference.status();
  StreamAll((*reference)->grpc_address(), reports);
  const v1::RunStatus expected = GetRun((*reference)->grpc_address(), "crash-run");

  const int port = FreePort();
  auto daemon = DaemonProcess::Start(absl::StrCat(
      "grpc: {listen: \"127.0.0.1:", port, "\"}\nstate_dir: /tmp/entrowatch-state-", port, "\n"));
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  client::StreamClientOptions options;
  options.target = (*daemon)->grpc_address();
  options.initial_backoff = absl::Milliseconds(50);
  options.max_backoff = absl::Milliseconds(500);
  auto c = client::StreamClient::Create(options);
  ASSERT_TRUE(c.ok());
  for (size_t i = 0; i < reports.size(); ++i) {
    ASSERT_TRUE((*c)->EnqueueWait(reports[i], absl::Now() + absl::Seconds(30)));
    if (i == reports.size() / 2) {
      // Crash once about half is acknowledged.
      const absl::Time deadline = absl::Now() + absl::Seconds(20);
      while ((*c)->Stats().acknowledged < reports.size() / 3 && absl::Now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      (*daemon)->Kill();
      ASSERT_TRUE((*daemon)->Restart().ok()) << (*daemon)->Log();
    }
  }
  ASSERT_TRUE((*c)->Flush(absl::Now() + absl::Seconds(60)).ok());
  // Every report was acknowledged once durable; those in flight at the crash
  // were resent and either applied now or recognized as already durable.
  EXPECT_EQ((*c)->Stats().rejected, 0u);
  EXPECT_EQ((*c)->Stats().acknowledged, reports.size());
  EXPECT_GT((*c)->Stats().stream_restarts, 0u);
  const v1::RunStatus actual = GetRun((*daemon)->grpc_address(), "crash-run");
  ExpectSameHistory(expected, actual);
  // Every report is in: 120 steps, each with the tokens of both ranks.
  ASSERT_EQ(actual.history_size(), 120);
  for (const auto& step : actual.history()) {
    EXPECT_EQ(step.ranks_reported(), 2u);
    EXPECT_EQ(step.token_count(), 32u);
  }
  RunCommand(absl::StrCat("rm -rf /tmp/entrowatch-state-", port));
}

TEST(DurabilityTest, UnusableStateDirFailsStartWithAClearError) {
  auto daemon = DaemonProcess::Start("state_dir: /proc/entrowatch-state\n");
  ASSERT_FALSE(daemon.ok());
  EXPECT_THAT(std::string(daemon.status().message()),
              HasSubstr("state_dir '/proc/entrowatch-state'"));
}

}  // namespace
}  // namespace entrowatch::testing
