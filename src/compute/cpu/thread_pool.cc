#include "compute/cpu/thread_pool.h"

#include <atomic>

namespace entrowatch::compute {

struct ThreadPool::Loop {
  Loop(int64_t n, absl::FunctionRef<void(int64_t)> fn) : n(n), fn(fn) {}

  const int64_t n;
  const absl::FunctionRef<void(int64_t)> fn;
  std::atomic<int64_t> next{0};
  absl::Mutex mu;
  int64_t done ABSL_GUARDED_BY(mu) = 0;
};

ThreadPool::ThreadPool(int threads) {
  for (int i = 1; i < threads; ++i) {
    workers_.emplace_back([this] { WorkerMain(); });
  }
}

ThreadPool::~ThreadPool() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& worker : workers_) {
    worker.join();
  }
}

void ThreadPool::Drain(Loop& loop) {
  int64_t finished = 0;
  for (int64_t i = loop.next.fetch_add(1); i < loop.n; i = loop.next.fetch_add(1)) {
    loop.fn(i);
    ++finished;
  }
  if (finished > 0) {
    absl::MutexLock lock(&loop.mu);
    loop.done += finished;
  }
}

void ThreadPool::WorkerMain() {
  while (true) {
    std::shared_ptr<Loop> loop;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](ThreadPool* pool) ABSL_EXCLUSIVE_LOCKS_REQUIRED(pool->mu_) {
            return pool->stopping_ || !pool->loops_.empty();
          },
          this));
      if (loops_.empty()) {
        return;
      }
      loop = loops_.front();
      // Every index is claimed once the counter passes n: retire the loop so
      // idle workers wait instead of spinning on it.
      if (loop->next.load() >= loop->n) {
        loops_.pop_front();
        continue;
      }
    }
    Drain(*loop);
  }
}

void ThreadPool::ParallelFor(int64_t n, absl::FunctionRef<void(int64_t)> fn) {
  if (n <= 0) {
    return;
  }
  if (n == 1 || workers_.empty()) {
    for (int64_t i = 0; i < n; ++i) {
      fn(i);
    }
    return;
  }
  auto loop = std::make_shared<Loop>(n, fn);
  {
    absl::MutexLock lock(&mu_);
    loops_.push_back(loop);
  }
  Drain(*loop);
  {
    absl::MutexLock lock(&mu_);
    // Workers may not have retired it yet; nobody needs it once drained.
    for (auto it = loops_.begin(); it != loops_.end(); ++it) {
      if (*it == loop) {
        loops_.erase(it);
        break;
      }
    }
  }
  absl::MutexLock lock(&loop->mu);
  loop->mu.Await(absl::Condition(
      +[](Loop* l) ABSL_EXCLUSIVE_LOCKS_REQUIRED(l->mu) { return l->done == l->n; }, loop.get()));
}

}  // namespace entrowatch::compute
