#include "ingest/work_queue.h"

#include <functional>
#include <string>

namespace entrowatch::ingest {

WorkQueue::WorkQueue(int shards, int64_t max_reports, int64_t max_bytes)
    : max_reports_(max_reports), max_bytes_(max_bytes), shards_(shards) {}

int WorkQueue::ShardOf(const std::string& run_id, uint32_t rank) const {
  const size_t h = std::hash<std::string>{}(run_id)*31 + rank;
  return static_cast<int>(h % shards_.size());
}

bool WorkQueue::TryPush(int shard, WorkItem* item) {
  absl::MutexLock lock(&mu_);
  if (closed_) {
    return false;
  }
  if (reports_ > 0 && (reports_ + 1 > max_reports_ || bytes_ + item->bytes > max_bytes_)) {
    return false;
  }
  reports_ += 1;
  bytes_ += item->bytes;
  shards_[shard].push_back(std::move(*item));
  return true;
}

void WorkQueue::NotifyWhenSpace(std::function<void()> fn) {
  {
    absl::MutexLock lock(&mu_);
    if (!closed_ && reports_ > 0) {
      space_waiters_.push_back(std::move(fn));
      return;
    }
  }
  fn();
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
  std::vector<std::function<void()>> waiters;
  {
    absl::MutexLock lock(&mu_);
    reports_ -= 1;
    bytes_ -= bytes;
    waiters.swap(space_waiters_);
  }
  for (auto& fn : waiters) {
    fn();
  }
}

void WorkQueue::Close() {
  std::vector<std::function<void()>> waiters;
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    waiters.swap(space_waiters_);
  }
  for (auto& fn : waiters) {
    fn();
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

}  // namespace entrowatch::ingest
