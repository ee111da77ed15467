// The memory budget on Monitor.Stream, through a real gRPC server on
// 127.0.0.1: over the budget no read is started and a read outstanding is cut
// short, the stream ends RESOURCE_EXHAUSTED, and a client that resends what
// was not acknowledged loses nothing. The resident set is a fake the test
// sets; a worker thread stands in for the daemon's.

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "entrowatch/v1/entrowatch.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ingest/memory_guard.h"
#include "ingest/monitor_service.h"
#include "ingest/work_queue.h"

namespace entrowatch::ingest {
namespace {

using entrowatch::v1::Ack;
using entrowatch::v1::Report;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr int64_t kBudget = 1 << 30;
constexpr char kRun[] = "budget-run";

class NoRuns final : public RunDirectory {
 public:
  absl::StatusOr<v1::RunStatus> GetRun(const v1::GetRunRequest&) override {
    return absl::NotFoundError("no runs here");
  }
  v1::ListRunsResponse ListRuns() override { return {}; }
  absl::StatusOr<v1::RunStatus> EndRun(const std::string&) override {
    return absl::NotFoundError("no runs here");
  }
  absl::StatusOr<v1::RunStatus> EndIncident(const std::string&, const std::string&) override {
    return absl::NotFoundError("no runs here");
  }
};

class CountingObserver final : public IngestObserver {
 public:
  void OnReceived(int64_t) override {}
  void OnOutcome(const Ack&) override {}
  void OnStreamShed() override { shed_.fetch_add(1); }
  int shed() const { return shed_.load(); }

 private:
  std::atomic<int> shed_{0};
};

// A MonitorService on a real server, a queue of at most `max_reports`, and
// one worker that acknowledges reports (OK) while not paused.
class Harness {
 public:
  explicit Harness(int64_t max_reports)
      : queue_(1, max_reports, int64_t{1} << 30, int64_t{1} << 30, 64),
        guard_(kBudget, absl::ZeroDuration(), absl::Hours(1), [this] { return resident_.load(); }),
        service_(ValidationLimits(), &queue_, &runs_, &observer_, &guard_) {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    EXPECT_NE(port, 0);
    stub_ = v1::Monitor::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
    worker_ = std::thread([this] { Work(); });
  }

  ~Harness() {
    Pause(false);
    server_->Shutdown();
    queue_.Close();
    worker_.join();
  }

  void SetOverBudget(bool over) { resident_.store(over ? kBudget + 1 : kBudget / 2); }
  void Pause(bool paused) {
    absl::MutexLock lock(&mu_);
    paused_ = paused;
  }
  // Blocks until the worker holds a report it may not process yet.
  void AwaitWorkerHolding() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&holding_));
  }
  // Blocks until `n` reports were processed.
  void AwaitProcessed(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return processed_.size() >= n; };
    mu_.Await(absl::Condition(&enough));
  }
  std::vector<uint64_t> processed() {
    absl::MutexLock lock(&mu_);
    return processed_;
  }
  int64_t waiting() const { return queue_.waiting_reports(); }
  // Waits (bounded) until `n` streams have a read outstanding.
  bool AwaitReading(int64_t n) {
    for (int i = 0; i < 5000; ++i) {
      if (service_.reading_streams() == n) {
        return true;
      }
      absl::SleepFor(absl::Milliseconds(1));  // gRPC's threads start the read; no hook to wait on
    }
    return false;
  }
  const CountingObserver& observer() const { return observer_; }
  v1::Monitor::Stub* stub() { return stub_.get(); }

 private:
  void Work() {
    WorkItem item;
    while (queue_.Pop(0, &item)) {
      {
        absl::MutexLock lock(&mu_);
        holding_ = true;
        auto resumed = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !paused_; };
        mu_.Await(absl::Condition(&resumed));
        holding_ = false;
        processed_.push_back(item.report->seq());
      }
      Ack ack = AckFor(*item.report);
      queue_.Finished(item.bytes);
      item.done(std::move(ack));
      item = WorkItem();
    }
  }

  std::atomic<int64_t> resident_{kBudget / 2};
  WorkQueue queue_;
  MemoryGuard guard_;
  NoRuns runs_;
  CountingObserver observer_;
  MonitorService service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Monitor::Stub> stub_;
  absl::Mutex mu_;
  bool paused_ ABSL_GUARDED_BY(mu_) = false;
  bool holding_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<uint64_t> processed_ ABSL_GUARDED_BY(mu_);
  std::thread worker_;
};

Report ReportAt(uint64_t seq) {
  Report report;
  report.set_run_id(kRun);
  report.set_step(seq);
  report.set_seq(seq);
  report.mutable_grad()->set_global_norm(1.0);
  return report;
}

struct StreamEnd {
  std::vector<uint64_t> acked;  // seqs acknowledged OK, in order
  grpc::Status status;
};

// Reads every Ack of a stream whose writing side is done, then its status.
StreamEnd Drain(grpc::ClientReaderWriter<Report, Ack>* stream) {
  StreamEnd end;
  Ack ack;
  while (stream->Read(&ack)) {
    if (ack.code() == 0) {
      end.acked.push_back(ack.seq());
    }
  }
  end.status = stream->Finish();
  return end;
}

TEST(StreamBudgetTest, NoReadStartsOverTheBudgetAndTheRestIsResent) {
  Harness harness(/*max_reports=*/1);
  grpc::ClientContext context;
  auto stream = harness.stub()->Stream(&context);
  harness.Pause(true);
  ASSERT_TRUE(stream->Write(ReportAt(1)));
  harness.AwaitWorkerHolding();  // 1 fills the queue
  ASSERT_TRUE(stream->Write(ReportAt(2)));
  // 2 is read and waits for room; nothing reads 3 meanwhile.
  for (int i = 0; i < 2000 && harness.waiting() == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(1));  // bounded poll of another thread's progress
  }
  ASSERT_EQ(harness.waiting(), 1);
  ASSERT_TRUE(stream->Write(ReportAt(3)));
  harness.SetOverBudget(true);
  harness.Pause(false);  // 1 done, 2 queued: the read of 3 is due, over the budget
  stream->WritesDone();
  const StreamEnd end = Drain(stream.get());
  EXPECT_THAT(end.acked, ElementsAre(1, 2));
  EXPECT_EQ(end.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(end.status.error_message(), HasSubstr("ingest.memory_budget_bytes"));
  EXPECT_EQ(harness.observer().shed(), 1);

  // Under the budget again, the client resends what was not acknowledged.
  harness.SetOverBudget(false);
  grpc::ClientContext again;
  auto resend = harness.stub()->Stream(&again);
  ASSERT_TRUE(resend->Write(ReportAt(3)));
  resend->WritesDone();
  const StreamEnd resent = Drain(resend.get());
  EXPECT_TRUE(resent.status.ok()) << resent.status.error_message();
  EXPECT_THAT(resent.acked, ElementsAre(3));
  EXPECT_THAT(harness.processed(), ElementsAre(1, 2, 3));
}

TEST(StreamBudgetTest, AnOutstandingReadIsCutShortOverTheBudget) {
  Harness harness(/*max_reports=*/8);
  grpc::ClientContext context;
  auto stream = harness.stub()->Stream(&context);
  ASSERT_TRUE(stream->Write(ReportAt(1)));
  Ack ack;
  ASSERT_TRUE(stream->Read(&ack));
  ASSERT_EQ(ack.seq(), 1u);
  ASSERT_TRUE(harness.AwaitReading(1));
  // The stream now has a read outstanding. Over the budget, the next stream
  // is refused, and the daemon ends the first at once instead of letting it
  // take in another message.
  harness.SetOverBudget(true);
  grpc::ClientContext refused_context;
  auto refused = harness.stub()->Stream(&refused_context);
  refused->WritesDone();
  const StreamEnd refused_end = Drain(refused.get());
  EXPECT_EQ(refused_end.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);

  stream->WritesDone();
  const StreamEnd end = Drain(stream.get());
  EXPECT_TRUE(end.acked.empty());
  EXPECT_EQ(end.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(end.status.error_message(), HasSubstr("over its memory budget"));
  EXPECT_EQ(harness.observer().shed(), 2);

  harness.SetOverBudget(false);
  grpc::ClientContext again;
  auto next = harness.stub()->Stream(&again);
  ASSERT_TRUE(next->Write(ReportAt(2)));
  next->WritesDone();
  const StreamEnd next_end = Drain(next.get());
  EXPECT_TRUE(next_end.status.ok()) << next_end.status.error_message();
  EXPECT_THAT(next_end.acked, ElementsAre(2));
  EXPECT_THAT(harness.processed(), ElementsAre(1, 2));
}

TEST(StreamBudgetTest, AReportQueuedWhenItsStreamIsShedIsStillProcessed) {
  Harness harness(/*max_reports=*/8);
  grpc::ClientContext context;
  auto stream = harness.stub()->Stream(&context);
  harness.Pause(true);
  ASSERT_TRUE(stream->Write(ReportAt(1)));
  harness.AwaitWorkerHolding();  // 1 is taken; the stream reads on
  ASSERT_TRUE(harness.AwaitReading(1));
  harness.SetOverBudget(true);
  grpc::ClientContext refused_context;
  auto refused = harness.stub()->Stream(&refused_context);
  refused->WritesDone();
  ASSERT_EQ(Drain(refused.get()).status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  stream->WritesDone();
  const StreamEnd end = Drain(stream.get());
  EXPECT_EQ(end.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(end.acked.empty());
  // The shed stream's report is still processed; its Ack has nowhere to go
  // (the client resends the report, which the daemon then finds duplicate).
  harness.Pause(false);
  harness.AwaitProcessed(1);
  EXPECT_THAT(harness.processed(), ElementsAre(1));
}

}  // namespace
}  // namespace entrowatch::ingest
