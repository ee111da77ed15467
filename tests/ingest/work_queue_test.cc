#include "ingest/work_queue.h"

#include <atomic>
#include <thread>

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
  WorkQueue q(2, /*max_reports=*/2, /*max_bytes=*/100);
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
  WorkQueue q(1, 4, 10);
  WorkItem big = Item(1000);
  EXPECT_TRUE(q.TryPush(0, &big));
  WorkItem small = Item(1);
  EXPECT_FALSE(q.TryPush(0, &small));
}

TEST(WorkQueueTest, ShardsAreFifoAndIndependent) {
  WorkQueue q(2, 10, 1000);
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

TEST(WorkQueueTest, SpaceWaitersRunWhenWorkFinishes) {
  WorkQueue q(1, 1, 100);
  WorkItem a = Item(1);
  ASSERT_TRUE(q.TryPush(0, &a));
  std::atomic<int> woken{0};
  q.NotifyWhenSpace([&] { woken++; });
  EXPECT_EQ(woken.load(), 0);
  WorkItem out;
  ASSERT_TRUE(q.Pop(0, &out));
  q.Finished(out.bytes);
  EXPECT_EQ(woken.load(), 1);
  q.NotifyWhenSpace([&] { woken++; });  // empty queue: runs at once
  EXPECT_EQ(woken.load(), 2);
}

TEST(WorkQueueTest, CloseDrainsThenStopsPoppersAndRefusesPushes) {
  WorkQueue q(1, 10, 1000);
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
