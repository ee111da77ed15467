#include "ingest/work_queue.h"

#include <algorithm>
#include <functional>
#include <string>
#include <utility>

namespace entrowatch::ingest {

WorkQueue::WorkQueue(int shards, int64_t max_reports, int64_t max_bytes, int64_t memory_limit_bytes,
                     int64_t max_waiting)
    : max_reports_(max_reports),
      max_bytes_(max_bytes),
      memory_limit_bytes_(std::max(memory_limit_bytes, max_bytes)),
      max_waiting_(max_waiting),
      shards_(shards) {}

int WorkQueue::ShardOf(const std::string& run_id, uint32_t rank) const {
  const size_t h = std::hash<std::string>{}(run_id)*31 + rank;
  return static_cast<int>(h % shards_.size());
}

bool WorkQueue::FitsLocked(int64_t bytes) const {
  return reports_ == 0 || (reports_ + 1 <= max_reports_ && bytes_ + bytes <= max_bytes_);
}

void WorkQueue::EnqueueLocked(int shard, WorkItem* item) {
  reports_ += 1;
  bytes_ += item->bytes;
  shards_[shard].push_back(std::move(*item));
}

bool WorkQueue::TryPush(int shard, WorkItem* item) {
  absl::MutexLock lock(&mu_);
  if (closed_ || !waiting_.empty() || !FitsLocked(item->bytes)) {
    return false;
  }
  EnqueueLocked(shard, item);
  return true;
}

WorkQueue::Admission WorkQueue::Push(int shard, WorkItem* item,
                                     absl::AnyInvocable<void(bool)> on_queued) {
  absl::MutexLock lock(&mu_);
  if (closed_) {
    return Admission::kClosed;
  }
  if (waiting_.empty() && FitsLocked(item->bytes)) {
    EnqueueLocked(shard, item);
    return Admission::kQueued;
  }
  // Nothing waits while the queue is empty, so the first waiter always finds
  // room once the queue has room for it.
  if (static_cast<int64_t>(waiting_.size()) >= max_waiting_ ||
      bytes_ + waiting_bytes_ + item->bytes > memory_limit_bytes_) {
    return Admission::kOverLimit;
  }
  waiting_bytes_ += item->bytes;
  waiting_.push_back(Waiter{shard, item, std::move(on_queued)});
  return Admission::kWaiting;
}

bool WorkQueue::Pop(int shard, WorkItem* out) {
  absl::MutexLock lock(&mu_);
  auto ready = [this, shard]() { return closed_ || !shards_[shard].empty(); };
  mu_.Await(absl::Condition(&ready));
  if (shards_[shard].empty()) {
    return false;
  }
  *out = std::move(shards_[shard].front());
  shards_[shard].pop_front();
  return true;
}

void WorkQueue::Finished(int64_t bytes) {
  std::vector<absl::AnyInvocable<void(bool)>> admitted;
  {
    absl::MutexLock lock(&mu_);
    reports_ -= 1;
    bytes_ -= bytes;
    while (!closed_ && !waiting_.empty() && FitsLocked(waiting_.front().item->bytes)) {
      Waiter& w = waiting_.front();
      waiting_bytes_ -= w.item->bytes;
      EnqueueLocked(w.shard, w.item);
      admitted.push_back(std::move(w.on_queued));
      waiting_.pop_front();
    }
  }
  for (auto& fn : admitted) {
    fn(true);
  }
}

void WorkQueue::Close() {
  std::deque<Waiter> refused;
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    refused.swap(waiting_);
    waiting_bytes_ = 0;
  }
  for (auto& w : refused) {
    w.on_queued(false);
  }
}

bool WorkQueue::closed() const {
  absl::MutexLock lock(&mu_);
  return closed_;
}

int64_t WorkQueue::reports() const {
  absl::MutexLock lock(&mu_);
  return reports_;
}

int64_t WorkQueue::bytes() const {
  absl::MutexLock lock(&mu_);
  return bytes_;
}

int64_t WorkQueue::waiting_reports() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(waiting_.size());
}

int64_t WorkQueue::waiting_bytes() const {
  absl::MutexLock lock(&mu_);
  return waiting_bytes_;
}

}  // namespace entrowatch::ingest
