#include "ingest/work_queue.h"

#include <atomic>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace entrowatch::ingest {
namespace {

WorkItem Item(int64_t bytes) {
  WorkItem item;
  item.owned = std::make_unique<v1::Report>();
  item.report = item.owned.get();
  item.bytes = bytes;
  return item;
}

TEST(WorkQueueTest, BoundsByReportsAndBytesCoverWorkInProgress) {
  WorkQueue q(2, /*max_reports=*/2, /*max_bytes=*/100, /*memory_limit_bytes=*/100,
              /*max_waiting=*/8);
  WorkItem a = Item(60);
  WorkItem b = Item(60);
  ASSERT_TRUE(q.TryPush(0, &a));
  EXPECT_FALSE(q.TryPush(1, &b)) << "bytes bound";
  EXPECT_NE(b.report, nullptr) << "a refused item is left untouched";
  WorkItem out;
  ASSERT_TRUE(q.Pop(0, &out));
  EXPECT_FALSE(q.TryPush(1, &b)) << "popped but unfinished work still counts";
  q.Finished(out.bytes);
  EXPECT_TRUE(q.TryPush(1, &b));
  WorkItem c = Item(1);
  EXPECT_TRUE(q.TryPush(0, &c));
  WorkItem d = Item(1);
  EXPECT_FALSE(q.TryPush(0, &d)) << "reports bound";
  EXPECT_EQ(q.reports(), 2);
  EXPECT_EQ(q.bytes(), 61);
}

TEST(WorkQueueTest, OversizedItemIsAdmittedIntoAnEmptyQueue) {
  WorkQueue q(1, 4, 10, 0, /*max_waiting=*/8);
  WorkItem big = Item(1000);
  EXPECT_TRUE(q.TryPush(0, &big));
  WorkItem small = Item(1);
  EXPECT_FALSE(q.TryPush(0, &small));
}

TEST(WorkQueueTest, ShardsAreFifoAndIndependent) {
  WorkQueue q(2, 10, 1000, 0, /*max_waiting=*/8);
  for (int i = 0; i < 3; ++i) {
    WorkItem item = Item(i + 1);
    ASSERT_TRUE(q.TryPush(i % 2, &item));
  }
  WorkItem out;
  ASSERT_TRUE(q.Pop(0, &out));
  EXPECT_EQ(out.bytes, 1);
  ASSERT_TRUE(q.Pop(0, &out));
  EXPECT_EQ(out.bytes, 3);
  ASSERT_TRUE(q.Pop(1, &out));
  EXPECT_EQ(out.bytes, 2);
  EXPECT_EQ(q.ShardOf("run", 3), q.ShardOf("run", 3));
}

// Pops and finishes one item of the shard; returns its bytes.
int64_t FinishOne(WorkQueue* q, int shard) {
  WorkItem out;
  EXPECT_TRUE(q->Pop(shard, &out));
  q->Finished(out.bytes);
  return out.bytes;
}

TEST(WorkQueueTest, WaitingReportsEnterInArrivalOrderWhenRoomIsFreed) {
  WorkQueue q(1, /*max_reports=*/2, /*max_bytes=*/100, /*memory_limit_bytes=*/1000,
              /*max_waiting=*/8);
  WorkItem a = Item(60);
  ASSERT_EQ(q.Push(0, &a, [](bool) { FAIL() << "a was queued at once"; }),
            WorkQueue::Admission::kQueued);
  std::vector<int> order;
  WorkItem b = Item(50);
  WorkItem c = Item(10);
  ASSERT_EQ(q.Push(0, &b, [&](bool queued) { order.push_back(queued ? 2 : -2); }),
            WorkQueue::Admission::kWaiting);
  // c would fit, but must not overtake b; nor may a unary TryPush.
  ASSERT_EQ(q.Push(0, &c, [&](bool queued) { order.push_back(queued ? 3 : -3); }),
            WorkQueue::Admission::kWaiting);
  WorkItem d = Item(1);
  EXPECT_FALSE(q.TryPush(0, &d)) << "unary pushes do not overtake waiting reports";
  EXPECT_EQ(q.waiting_reports(), 2);
  EXPECT_EQ(q.waiting_bytes(), 60);
  EXPECT_NE(b.report, nullptr) << "a waiting item stays with its owner";
  EXPECT_TRUE(order.empty());

  EXPECT_EQ(FinishOne(&q, 0), 60);
  EXPECT_EQ(order, (std::vector<int>{2, 3})) << "both fit once a finished: b first, then c";
  EXPECT_EQ(b.owned, nullptr) << "b was moved into the queue";
  EXPECT_EQ(q.waiting_reports(), 0);
  EXPECT_EQ(q.waiting_bytes(), 0);
  EXPECT_EQ(q.reports(), 2);
  EXPECT_EQ(q.bytes(), 60);
  EXPECT_EQ(FinishOne(&q, 0), 50);
  EXPECT_EQ(FinishOne(&q, 0), 10);
}

TEST(WorkQueueTest, MemoryLimitCoversQueuedAndWaitingBytes) {
  WorkQueue q(1, /*max_reports=*/10, /*max_bytes=*/100, /*memory_limit_bytes=*/250,
              /*max_waiting=*/8);
  WorkItem a = Item(100);
  ASSERT_EQ(q.Push(0, &a, [](bool) {}), WorkQueue::Admission::kQueued);
  WorkItem b = Item(100);
  ASSERT_EQ(q.Push(0, &b, [](bool) {}), WorkQueue::Admission::kWaiting);
  WorkItem c = Item(51);
  EXPECT_EQ(q.Push(0, &c, [](bool) { FAIL() << "refused items are never called back"; }),
            WorkQueue::Admission::kOverLimit)
      << "100 queued + 100 waiting + 51 > 250";
  EXPECT_NE(c.report, nullptr) << "a refused item is left untouched";
  WorkItem d = Item(50);
  EXPECT_EQ(q.Push(0, &d, [](bool) {}), WorkQueue::Admission::kWaiting) << "exactly 250 fits";
  EXPECT_EQ(q.waiting_bytes(), 150);
  EXPECT_EQ(q.memory_limit_bytes(), 250);
  WorkQueue raised(1, 10, 100, /*memory_limit_bytes=*/5, /*max_waiting=*/8);
  EXPECT_EQ(raised.memory_limit_bytes(), 100) << "the limit is never below the queue bound";
}

TEST(WorkQueueTest, AtMostMaxWaitingReportsWait) {
  WorkQueue q(1, /*max_reports=*/1, /*max_bytes=*/100, /*memory_limit_bytes=*/1000,
              /*max_waiting=*/2);
  WorkItem a = Item(1);
  ASSERT_EQ(q.Push(0, &a, [](bool) {}), WorkQueue::Admission::kQueued);
  WorkItem b = Item(1);
  WorkItem c = Item(1);
  WorkItem d = Item(1);
  EXPECT_EQ(q.Push(0, &b, [](bool) {}), WorkQueue::Admission::kWaiting);
  EXPECT_EQ(q.Push(0, &c, [](bool) {}), WorkQueue::Admission::kWaiting);
  EXPECT_EQ(q.Push(0, &d, [](bool) {}), WorkQueue::Admission::kOverLimit)
      << "a third waiting report, far below the byte limit";
  EXPECT_EQ(q.max_waiting(), 2);
  EXPECT_EQ(FinishOne(&q, 0), 1);
  EXPECT_EQ(q.waiting_reports(), 1) << "b entered the queue";
  EXPECT_EQ(q.Push(0, &d, [](bool) {}), WorkQueue::Admission::kWaiting);
}

TEST(WorkQueueTest, CloseHandsWaitingReportsBackUntouched) {
  WorkQueue q(1, /*max_reports=*/1, /*max_bytes=*/100, /*memory_limit_bytes=*/1000,
              /*max_waiting=*/8);
  WorkItem a = Item(1);
  ASSERT_EQ(q.Push(0, &a, [](bool) {}), WorkQueue::Admission::kQueued);
  WorkItem b = Item(1);
  int result = 0;
  ASSERT_EQ(q.Push(0, &b, [&](bool queued) { result = queued ? 1 : -1; }),
            WorkQueue::Admission::kWaiting);
  q.Close();
  EXPECT_EQ(result, -1);
  EXPECT_NE(b.report, nullptr);
  EXPECT_EQ(q.waiting_reports(), 0);
  WorkItem c = Item(1);
  EXPECT_EQ(q.Push(0, &c, [](bool) {}), WorkQueue::Admission::kClosed);
  // What was queued before Close still drains.
  EXPECT_EQ(FinishOne(&q, 0), 1);
}

TEST(WorkQueueTest, CloseDrainsThenStopsPoppersAndRefusesPushes) {
  WorkQueue q(1, 10, 1000, 0, /*max_waiting=*/8);
  WorkItem a = Item(5);
  ASSERT_TRUE(q.TryPush(0, &a));
  std::atomic<int> popped{0};
  std::thread worker([&] {
    WorkItem out;
    while (q.Pop(0, &out)) {
      popped++;
      q.Finished(out.bytes);
    }
  });
  q.Close();
  worker.join();
  EXPECT_EQ(popped.load(), 1);
  WorkItem b = Item(1);
  EXPECT_FALSE(q.TryPush(0, &b));
  EXPECT_TRUE(q.closed());
}

}  // namespace
}  // namespace entrowatch::ingest
