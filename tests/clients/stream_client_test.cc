#include "entrowatch/client/stream_client.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "fake_monitor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace entrowatch::client {
namespace {

using ::entrowatch::testing::FakeMonitor;
using ::entrowatch::testing::FakeMonitorOptions;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

constexpr absl::Duration kWait = absl::Seconds(20);

v1::Report MakeReport(const std::string& run, uint32_t rank, uint64_t step) {
  v1::Report report;
  report.set_run_id(run);
  report.set_rank(rank);
  report.set_step(step);
  report.mutable_grad()->set_global_norm(1.0);
  return report;
}

StreamClientOptions FastOptions(const std::string& target) {
  StreamClientOptions options;
  options.target = target;
  options.initial_backoff = absl::Milliseconds(20);
  options.max_backoff = absl::Milliseconds(200);
  return options;
}

std::vector<uint64_t> Seqs(const std::vector<v1::Report>& reports) {
  std::vector<uint64_t> seqs;
  for (const v1::Report& report : reports) {
    seqs.push_back(report.seq());
  }
  return seqs;
}

std::vector<uint64_t> Range(uint64_t first, uint64_t last) {
  std::vector<uint64_t> values;
  for (uint64_t v = first; v <= last; ++v) {
    values.push_back(v);
  }
  return values;
}

// Records what the ack callback saw.
class AckLog {
 public:
  AckCallback Callback() {
    return [this](const v1::Report& report, const v1::Ack& ack) {
      absl::MutexLock lock(&mu_);
      seqs_.push_back(report.seq());
      codes_.push_back(ack.code());
    };
  }
  std::vector<uint64_t> seqs() const {
    absl::MutexLock lock(&mu_);
    return seqs_;
  }
  std::vector<int> codes() const {
    absl::MutexLock lock(&mu_);
    return codes_;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<uint64_t> seqs_ ABSL_GUARDED_BY(mu_);
  std::vector<int> codes_ ABSL_GUARDED_BY(mu_);
};

TEST(StreamClientTest, RoundTripAcknowledgesEveryReportInOrder) {
  std::unique_ptr<FakeMonitor> server = FakeMonitor::Start({});
  ASSERT_NE(server, nullptr);
  AckLog log;
  StreamClientOptions options = FastOptions(server->address());
  options.on_ack = log.Callback();
  auto client = StreamClient::Create(options);
  ASSERT_TRUE(client.ok()) << client.status();

  for (uint64_t step = 1; step <= 100; ++step) {
    ASSERT_TRUE((*client)->Enqueue(MakeReport("run-a", 0, step)));
  }
  ASSERT_TRUE((*client)->Flush(absl::Now() + kWait).ok());

  EXPECT_THAT(Seqs(server->received()), ElementsAreArray(Range(1, 100)));
  EXPECT_THAT(log.seqs(), ElementsAreArray(Range(1, 100)));
  const StreamClientStats stats = (*client)->Stats();
  EXPECT_EQ(stats.enqueued, 100u);
  EXPECT_EQ(stats.acknowledged, 100u);
  EXPECT_EQ(stats.dropped, 0u);
  EXPECT_EQ(stats.rejected, 0u);
  EXPECT_EQ(stats.pending, 0u);
  ASSERT_TRUE((*client)->LatestAck().has_value());
  EXPECT_EQ((*client)->LatestAck()->seq(), 100u);
  for (const v1::Report& report : server->received()) {
    EXPECT_TRUE(report.has_time());
  }
}

TEST(StreamClientTest, AssignsSeqPerRunAndRankAndKeepsExplicitSeqs) {
  std::unique_ptr<FakeMonitor> server = FakeMonitor::Start({});
  ASSERT_NE(server, nullptr);
  auto client = StreamClient::Create(FastOptions(server->address()));
  ASSERT_TRUE(client.ok());
  StreamClient& c = **client;
  ASSERT_TRUE(c.Enqueue(MakeReport("a", 0, 1)));
  ASSERT_TRUE(c.Enqueue(MakeReport("a", 1, 1)));
  ASSERT_TRUE(c.Enqueue(MakeReport("b", 0, 1)));
  ASSERT_TRUE(c.Enqueue(MakeReport("a", 0, 2)));
  v1::Report explicit_seq = MakeReport("a", 1, 2);
  explicit_seq.set_seq(40);
  ASSERT_TRUE(c.Enqueue(explicit_seq));
  ASSERT_TRUE(c.Enqueue(MakeReport("a", 1, 3)));
  ASSERT_TRUE(c.Flush(absl::Now() + kWait).ok());
  EXPECT_THAT(Seqs(server->received()), ElementsAreArray({1, 1, 1, 2, 40, 41}));
}

TEST(StreamClientTest, ConcurrentProducersKeepPerRankOrder) {
  std::unique_ptr<FakeMonitor> server = FakeMonitor::Start({});
  ASSERT_NE(server, nullptr);
  StreamClientOptions options = FastOptions(server->address());
  options.queue_capacity = 4096;
  auto client = StreamClient::Create(options);
  ASSERT_TRUE(client.ok());
  constexpr int kRanks = 4;
  constexpr uint64_t kSteps = 250;
  std::vector<std::thread> producers;
  for (uint32_t rank = 0; rank < kRanks; ++rank) {
    producers.emplace_back([&client, rank] {
      for (uint64_t step = 1; step <= kSteps; ++step) {
        ASSERT_TRUE((*client)->Enqueue(MakeReport("r", rank, step)));
      }
    });
  }
  for (std::thread& producer : producers) {
    producer.join();
  }
  ASSERT_TRUE((*client)->Flush(absl::Now() + kWait).ok());
  EXPECT_EQ((*client)->Stats().acknowledged, kRanks * kSteps);
  std::vector<std::vector<uint64_t>> seqs(kRanks);
  for (const v1::Report& report : server->received()) {
    EXPECT_EQ(report.seq(), report.step());
    seqs[report.rank()].push_back(report.seq());
  }
  for (const std::vector<uint64_t>& rank_seqs : seqs) {
    EXPECT_THAT(rank_seqs, ElementsAreArray(Range(1, kSteps)));
  }
}

TEST(StreamClientTest, RejectedReportsAreCountedAndReported) {
  FakeMonitorOptions server_options;
  server_options.answer = [](const v1::Report& report) {
    v1::Ack ack;
    ack.set_seq(report.seq());
    ack.set_step(report.step());
    if (report.step() % 3 == 0) {
      ack.set_code(3);
      ack.set_message("grad.global_norm: negative");
    }
    return ack;
  };
  std::unique_ptr<FakeMonitor> server = FakeMonitor::Start(server_options);
  ASSERT_NE(server, nullptr);
  AckLog log;
  StreamClientOptions options = FastOptions(server->address());
  options.on_ack = log.Callback();
  auto client = StreamClient::Create(options);
  ASSERT_TRUE(client.ok());
  for (uint64_t step = 1; step <= 9; ++step) {
    ASSERT_TRUE((*client)->Enqueue(MakeReport("r", 0, step)));
  }
  ASSERT_TRUE((*client)->Flush(absl::Now() + kWait).ok());
  EXPECT_EQ((*client)->Stats().rejected, 3u);
  EXPECT_THAT(log.codes(), ElementsAreArray({0, 0, 3, 0, 0, 3, 0, 0, 3}));
}

TEST(StreamClientTest, FullQueueDropsWithoutBlockingAndCountsDrops) {
  FakeMonitorOptions server_options;
  server_options.max_acks = 0;  // holds every report unacknowledged
  std::unique_ptr<FakeMonitor> server = FakeMonitor::Start(server_options);
  ASSERT_NE(server, nullptr);
  StreamClientOptions options = FastOptions(server->address());
  options.queue_capacity = 8;
  auto client = StreamClient::Create(options);
  ASSERT_TRUE(client.ok());

  int accepted = 0;
  for (uint64_t step = 1; step <= 20; ++step) {
    accepted += (*client)->Enqueue(MakeReport("r", 0, step)) ? 1 : 0;
  }
  EXPECT_EQ(accepted, 8);
  const StreamClientStats stats = (*client)->Stats();
  EXPECT_EQ(stats.dropped, 12u);
  EXPECT_EQ(stats.enqueued, 8u);
  EXPECT_EQ(stats.pending, 8u);
  EXPECT_FALSE(
      (*client)->EnqueueWait(MakeReport("r", 0, 21), absl::Now() + absl::Milliseconds(50)));
  EXPECT_EQ((*client)->Stats().dropped, 13u);
  // The held reports did reach the server; they are only unacknowledged.
  EXPECT_TRUE(server->WaitForReceived(8, absl::Now() + kWait));
}

TEST(StreamClientTest, ByteBoundDropsLargeReportsButNeverTheOnlyOne) {
  FakeMonitorOptions server_options;
  server_options.max_acks = 0;
  std::unique_ptr<FakeMonitor> server = FakeMonitor::Start(server_options);
  ASSERT_NE(server, nullptr);
  StreamClientOptions options = FastOptions(server->address());
  options.queue_max_bytes = 10000;
  auto client = StreamClient::Create(options);
  ASSERT_TRUE(client.ok());
  v1::Report big = MakeReport("r", 0, 1);
  big.add_logits()->mutable_logits()->set_data(std::string(6000, 'x'));
  EXPECT_TRUE((*client)->Enqueue(big));
  big.set_step(2);
  EXPECT_FALSE((*client)->Enqueue(big));
  EXPECT_TRUE((*client)->Enqueue(MakeReport("r", 0, 3)));
  const StreamClientStats stats = (*client)->Stats();
  EXPECT_EQ(stats.dropped, 1u);
  EXPECT_EQ(stats.pending, 2u);
  EXPECT_GT(stats.pending_bytes, 6000u);
  EXPECT_LE(stats.pending_bytes, 10000u);

  // A report larger than the bound still goes when it is alone.
  auto alone = StreamClient::Create(options);
  ASSERT_TRUE(alone.ok());
  big.mutable_logits(0)->mutable_logits()->set_data(std::string(20000, 'x'));
  EXPECT_TRUE((*alone)->Enqueue(big));
}

TEST(StreamClientTest, EnqueueWaitWaitsForRoom) {
  std::unique_ptr<FakeMonitor> server = FakeMonitor::Start({});
  ASSERT_NE(server, nullptr);
  StreamClientOptions options = FastOptions(server->address());
  options.queue_capacity = 2;
  auto client = StreamClient::Create(options);
  ASSERT_TRUE(client.ok());
  for (uint64_t step = 1; step <= 50; ++step) {
    ASSERT_TRUE((*client)->EnqueueWait(MakeReport("r", 0, step), absl::Now() + kWait));
  }
  ASSERT_TRUE((*client)->Flush(absl::Now() + kWait).ok());
  EXPECT_EQ((*client)->Stats().acknowledged, 50u);
  EXPECT_EQ((*client)->Stats().dropped, 0u);
}

TEST(StreamClientTest, ServerRestartResendsOnlyUnacknowledgedReportsInOrder) {
  FakeMonitorOptions first_options;
  first_options.max_acks = 30;
  std::unique_ptr<FakeMonitor> first = FakeMonitor::Start(first_options);
  ASSERT_NE(first, nullptr);
  const int port = first->port();
  AckLog log;
  StreamClientOptions options = FastOptions(first->address());
  options.on_ack = log.Callback();
  auto client = StreamClient::Create(options);
  ASSERT_TRUE(client.ok());
  for (uint64_t step = 1; step <= 100; ++step) {
    ASSERT_TRUE((*client)->Enqueue(MakeReport("r", 0, step)));
  }
  ASSERT_TRUE(first->WaitForReceived(100, absl::Now() + kWait));
  EXPECT_EQ(first->acks_written(), 30);
  first->Shutdown();

  FakeMonitorOptions second_options;
  second_options.port = port;
  std::unique_ptr<FakeMonitor> second = FakeMonitor::Start(second_options);
  ASSERT_NE(second, nullptr);
  ASSERT_TRUE((*client)->Flush(absl::Now() + kWait).ok());

  // Acks written before the crash may or may not have reached the client;
  // either way nothing acknowledged is lost and nothing is acknowledged twice.
  const std::vector<uint64_t> acked = log.seqs();
  EXPECT_THAT(acked, ElementsAreArray(Range(1, 100)));
  const std::vector<uint64_t> resent = Seqs(second->received());
  ASSERT_FALSE(resent.empty());
  const uint64_t first_resent = resent.front();
  EXPECT_GE(first_resent, 1u);
  EXPECT_LE(first_resent, 31u);
  EXPECT_THAT(resent, ElementsAreArray(Range(first_resent, 100)));
  const StreamClientStats stats = (*client)->Stats();
  EXPECT_EQ(stats.acknowledged, 100u);
  EXPECT_GE(stats.resent, 70u);
  EXPECT_GE(stats.stream_restarts, 1u);
}

TEST(StreamClientTest, UnavailableAcksAreRetriedNotReported) {
  // A draining daemon refuses the first reports with UNAVAILABLE.
  auto refusals = std::make_shared<std::atomic<int>>(3);
  FakeMonitorOptions server_options;
  server_options.answer = [refusals](const v1::Report& report) {
    v1::Ack ack;
    ack.set_seq(report.seq());
    ack.set_step(report.step());
    if (refusals->fetch_sub(1) > 0) {
      ack.set_code(14);
      ack.set_message("entrowatchd is shutting down");
    }
    return ack;
  };
  std::unique_ptr<FakeMonitor> server = FakeMonitor::Start(server_options);
  ASSERT_NE(server, nullptr);
  AckLog log;
  StreamClientOptions options = FastOptions(server->address());
  options.on_ack = log.Callback();
  auto client = StreamClient::Create(options);
  ASSERT_TRUE(client.ok());
  for (uint64_t step = 1; step <= 10; ++step) {
    ASSERT_TRUE((*client)->Enqueue(MakeReport("r", 0, step)));
  }
  ASSERT_TRUE((*client)->Flush(absl::Now() + kWait).ok());
  EXPECT_THAT(log.seqs(), ElementsAreArray(Range(1, 10)));
  EXPECT_THAT(log.codes(), ::testing::Each(0));
  const StreamClientStats stats = (*client)->Stats();
  EXPECT_EQ(stats.rejected, 0u);
  EXPECT_GE(stats.stream_restarts, 1u);
  const std::vector<uint64_t> seqs = Seqs(server->received());
  EXPECT_GE(std::count(seqs.begin(), seqs.end(), 1u), 2);
  EXPECT_EQ(stats.last_error.code(), absl::StatusCode::kUnavailable);
}

TEST(StreamClientTest, FlushTimesOutWhenTheDaemonIsUnreachable) {
  auto client = StreamClient::Create(
      FastOptions(absl::StrCat("127.0.0.1:", ::entrowatch::testing::UnusedPort())));
  ASSERT_TRUE(client.ok());
  ASSERT_TRUE((*client)->Enqueue(MakeReport("r", 0, 1)));
  const absl::Status status = (*client)->Flush(absl::Now() + absl::Milliseconds(300));
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(status.message(), HasSubstr("1 report(s) not acknowledged"));
  EXPECT_FALSE((*client)->WaitForConnected(absl::Now() + absl::Milliseconds(100)).ok());
}

TEST(StreamClientTest, ReportsQueuedBeforeTheServerStartsAreDelivered) {
  const int port = ::entrowatch::testing::UnusedPort();
  auto client = StreamClient::Create(FastOptions(absl::StrCat("127.0.0.1:", port)));
  ASSERT_TRUE(client.ok());
  for (uint64_t step = 1; step <= 5; ++step) {
    ASSERT_TRUE((*client)->Enqueue(MakeReport("r", 0, step)));
  }
  EXPECT_FALSE((*client)->Flush(absl::Now() + absl::Milliseconds(100)).ok());
  FakeMonitorOptions server_options;
  server_options.port = port;
  std::unique_ptr<FakeMonitor> server = FakeMonitor::Start(server_options);
  ASSERT_NE(server, nullptr);
  ASSERT_TRUE((*client)->Flush(absl::Now() + kWait).ok());
  EXPECT_THAT(Seqs(server->received()), ElementsAreArray(Range(1, 5)));
}

TEST(StreamClientTest, CloseRefusesLaterReports) {
  std::unique_ptr<FakeMonitor> server = FakeMonitor::Start({});
  ASSERT_NE(server, nullptr);
  auto client = StreamClient::Create(FastOptions(server->address()));
  ASSERT_TRUE(client.ok());
  ASSERT_TRUE((*client)->Enqueue(MakeReport("r", 0, 1)));
  ASSERT_TRUE((*client)->Flush(absl::Now() + kWait).ok());
  (*client)->Close();
  (*client)->Close();
  EXPECT_FALSE((*client)->Enqueue(MakeReport("r", 0, 2)));
  EXPECT_EQ((*client)->Stats().dropped, 1u);
}

TEST(StreamClientTest, CreateRejectsBadOptions) {
  StreamClientOptions options;
  options.queue_capacity = 0;
  EXPECT_EQ(StreamClient::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
  options = StreamClientOptions();
  options.max_backoff = absl::Milliseconds(1);
  EXPECT_EQ(StreamClient::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(StreamClientOptionsTest, TargetDefaultsToEntrowatchAddress) {
  ASSERT_EQ(unsetenv("ENTROWATCH_ADDRESS"), 0);
  EXPECT_EQ(StreamClientOptions().target, kDefaultTarget);
  ASSERT_EQ(setenv("ENTROWATCH_ADDRESS", "", 1), 0);
  EXPECT_EQ(StreamClientOptions().target, kDefaultTarget);
  ASSERT_EQ(setenv("ENTROWATCH_ADDRESS", "monitor.example:6000", 1), 0);
  EXPECT_EQ(StreamClientOptions().target, "monitor.example:6000");
  ASSERT_EQ(unsetenv("ENTROWATCH_ADDRESS"), 0);
}

}  // namespace
}  // namespace entrowatch::client
