#pragma once

// Bounded, sharded FIFO between the gRPC handlers and the workers. Reports of
// one (run, rank) always go to the same shard, so a rank's reports are
// processed in arrival order; different shards run in parallel. The bounds
// (reports and bytes) are global. Thread-safe.

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"
#include "entrowatch/v1/entrowatch.pb.h"

namespace entrowatch::ingest {

struct WorkItem {
  // The report; owned by `owned` or, for unary calls, by the RPC until done().
  const entrowatch::v1::Report* report = nullptr;
  std::unique_ptr<entrowatch::v1::Report> owned;
  int64_t bytes = 0;
  // Called exactly once, on a worker thread, with the report's Ack.
  absl::AnyInvocable<void(entrowatch::v1::Ack)> done;
};

class WorkQueue {
 public:
  WorkQueue(int shards, int64_t max_reports, int64_t max_bytes);
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  int shards() const { return static_cast<int>(shards_.size()); }
  // The shard of a (run, rank).
  int ShardOf(const std::string& run_id, uint32_t rank) const;

  // Moves *item into the queue and returns true, or returns false (item
  // untouched) when a bound is reached or the queue is closed. One item is
  // always admitted into an empty queue, whatever its size.
  bool TryPush(int shard, WorkItem* item);

  // Runs fn once, on some thread, after space was freed (or at Close()).
  // Used by streams for flow control: they stop reading until then.
  void NotifyWhenSpace(std::function<void()> fn);

  // Blocks until an item of this shard is available (true) or the queue is
  // closed and the shard drained (false).
  bool Pop(int shard, WorkItem* out);

  // A popped item is finished: frees its share of the bounds.
  void Finished(int64_t bytes);

  // Refuses further pushes; Pop drains what is queued, then returns false.
  void Close();
  bool closed() const;

  int64_t reports() const;
  int64_t bytes() const;

 private:
  const int64_t max_reports_;
  const int64_t max_bytes_;
  mutable absl::Mutex mu_;
  std::vector<std::deque<WorkItem>> shards_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<void()>> space_waiters_ ABSL_GUARDED_BY(mu_);
  int64_t reports_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace entrowatch::ingest
