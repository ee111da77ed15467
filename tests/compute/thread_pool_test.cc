#include "compute/cpu/thread_pool.h"

#include <atomic>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace entrowatch::compute {
namespace {

TEST(ThreadPoolTest, RunsEveryIndexExactlyOnce) {
  for (int threads : {1, 2, 5}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.threads(), threads);
    for (int64_t n : {0, 1, 7, 1000}) {
      std::vector<std::atomic<int>> hits(n);
      pool.ParallelFor(n, [&](int64_t i) { hits[i].fetch_add(1); });
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_EQ(hits[i].load(), 1) << threads << " threads, n " << n << ", index " << i;
      }
    }
  }
}

TEST(ThreadPoolTest, ConcurrentLoopsShareTheWorkers) {
  ThreadPool pool(3);
  std::atomic<int64_t> total{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 4; ++c) {
    callers.emplace_back([&] {
      for (int round = 0; round < 50; ++round) {
        std::atomic<int64_t> local{0};
        pool.ParallelFor(100, [&](int64_t i) { local.fetch_add(i); });
        // ParallelFor returns only after every index ran.
        ASSERT_EQ(local.load(), 4950);
        total.fetch_add(local.load());
      }
    });
  }
  for (std::thread& t : callers) {
    t.join();
  }
  EXPECT_EQ(total.load(), 4 * 50 * 4950);
}

}  // namespace
}  // namespace entrowatch::compute
