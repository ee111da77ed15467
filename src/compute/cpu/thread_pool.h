#pragma once

// A fixed pool of worker threads for data-parallel loops.

#include <cstdint>
#include <deque>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/synchronization/mutex.h"

namespace entrowatch::compute {

// Owns `threads - 1` workers; the thread calling ParallelFor is the last one,
// so a loop always makes progress even when every worker is busy with other
// callers' loops. Thread-safe: concurrent ParallelFor calls share the
// workers. Neither copyable nor movable; the destructor joins the workers
// and must not race with ParallelFor.
class ThreadPool {
 public:
  // threads >= 1.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Runs fn(i) once for every i in [0, n), on the workers and the calling
  // thread, and returns when all calls have returned. fn must not call
  // ParallelFor on the same pool.
  void ParallelFor(int64_t n, absl::FunctionRef<void(int64_t)> fn);

  int threads() const { return static_cast<int>(workers_.size()) + 1; }

 private:
  struct Loop;

  void WorkerMain();
  // Claims and runs indices of `loop` until none is left.
  static void Drain(Loop& loop);

  absl::Mutex mu_;
  std::deque<std::shared_ptr<Loop>> loops_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
};

}  // namespace entrowatch::compute
