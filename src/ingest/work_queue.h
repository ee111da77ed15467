#pragma once

// Bounded, sharded FIFO between the gRPC handlers and the workers. Reports of
// one (run, rank) always go to the same shard, so a rank's reports are
// processed in arrival order; different shards run in parallel.
//
// Two bounds, both global:
//  - the queue bound (max_reports, max_bytes) covers reports queued and being
//    processed; a report that does not fit waits (streams) or is refused
//    (unary Submit);
//  - the memory limit covers the queue plus the reports waiting for room,
//    and at most max_waiting reports wait. Streams stop reading while their
//    report waits, so each stream holds at most one (HTTP/2 still buffers up
//    to a flow-control window behind it, hence the count bound too); a report
//    that would pass either bound is refused, which bounds the daemon's
//    ingest memory whatever the number of streams.
// Waiting reports enter the queue in arrival order (no stream overtakes
// another, and new reports never overtake waiting ones). Thread-safe.

#include <cstdint>
#include <deque>
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
  // memory_limit_bytes below max_bytes is raised to max_bytes.
  WorkQueue(int shards, int64_t max_reports, int64_t max_bytes, int64_t memory_limit_bytes,
            int64_t max_waiting);
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  int shards() const { return static_cast<int>(shards_.size()); }
  // The shard of a (run, rank).
  int ShardOf(const std::string& run_id, uint32_t rank) const;

  // Moves *item into the queue and returns true, or returns false (item
  // untouched) when the queue bound is reached, reports are waiting, or the
  // queue is closed. One item is always admitted into an empty queue,
  // whatever its size. For unary calls, which cannot wait.
  bool TryPush(int shard, WorkItem* item);

  enum class Admission {
    kQueued,     // *item moved into the queue
    kWaiting,    // *item stays with the caller; on_queued runs later
    kOverLimit,  // refused: a waiting bound would be passed; item untouched
    kClosed,     // refused: closing; item untouched
  };
  // For streams: like TryPush, but a report that does not fit waits for room
  // while the memory limit allows. Then *item must stay valid and untouched
  // until on_queued runs, once, on some thread: with true after *item was
  // moved into the queue, or with false at Close() (item untouched).
  Admission Push(int shard, WorkItem* item, absl::AnyInvocable<void(bool queued)> on_queued);

  // Blocks until an item of this shard is available (true) or the queue is
  // closed and the shard drained (false).
  bool Pop(int shard, WorkItem* out);

  // A popped item is finished: frees its share of the bounds and admits
  // waiting reports that now fit.
  void Finished(int64_t bytes);

  // Refuses further pushes and hands waiting reports back (on_queued(false));
  // Pop drains what is queued, then returns false.
  void Close();
  bool closed() const;

  int64_t reports() const;
  int64_t bytes() const;
  // Reports waiting for room, and their bytes.
  int64_t waiting_reports() const;
  int64_t waiting_bytes() const;
  int64_t memory_limit_bytes() const { return memory_limit_bytes_; }
  int64_t max_waiting() const { return max_waiting_; }

 private:
  struct Waiter {
    int shard = 0;
    WorkItem* item = nullptr;
    absl::AnyInvocable<void(bool)> on_queued;
  };
  bool FitsLocked(int64_t bytes) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EnqueueLocked(int shard, WorkItem* item) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int64_t max_reports_;
  const int64_t max_bytes_;
  const int64_t memory_limit_bytes_;
  const int64_t max_waiting_;
  mutable absl::Mutex mu_;
  std::vector<std::deque<WorkItem>> shards_ ABSL_GUARDED_BY(mu_);
  std::deque<Waiter> waiting_ ABSL_GUARDED_BY(mu_);
  int64_t waiting_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t reports_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace entrowatch::ingest
