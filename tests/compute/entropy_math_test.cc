// The shared EW_HD math (entropy_math.h) with the float accumulators and the
// tilings the vectorized engine and the CUDA kernels use, against float64.

#include "compute/entropy_math.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "test_util.h"

namespace entrowatch::compute {
namespace {

std::vector<float> RandomRow(std::mt19937_64& rng, int64_t n, float stddev, double masked) {
  std::normal_distribution<float> normal(0.0f, stddev);
  std::bernoulli_distribution mask(masked);
  std::vector<float> x(n);
  for (float& v : x) {
    v = mask(rng) ? -testing::kInf : normal(rng);
  }
  x[n / 2] = normal(rng);  // at least one finite value
  return x;
}

double NaiveEntropyOf(const std::vector<float>& x, double beta) {
  std::vector<double> xd;
  for (float v : x) {
    xd.push_back(beta * v);
  }
  double top1;
  return testing::NaiveEntropy(xd, &top1);
}

// Replays the CUDA token kernel's tiling (entropy_math.h) on one row of
// floats: `head` scalar elements, whole vectors of `per_vector` elements in
// `splits` chunks, each chunk walked by kTokenBlockThreads accumulators with
// kTokenLoadsPerStep loads per step, a pairwise tree per chunk, the scalar
// tail, and the chunks merged in order.
EntropyAccumulator<float> ReplayTokenKernel(const std::vector<float>& x, int64_t head,
                                            int per_vector, int64_t splits, float scale2) {
  const int64_t n = static_cast<int64_t>(x.size());
  head = std::min(head, n);
  const int64_t vectors = (n - head) / per_vector;
  EntropyAccumulator<float> row;
  for (int64_t i = 0; i < head; ++i) {
    AccumulateOne(row, x[i], scale2);
  }
  for (int64_t c = 0; c < splits; ++c) {
    const int64_t v_begin = vectors * c / splits;
    const int64_t v_end = vectors * (c + 1) / splits;
    std::vector<EntropyAccumulator<float>> threads(kTokenBlockThreads);
    const int64_t per_step = int64_t{kTokenBlockThreads} * kTokenLoadsPerStep;
    for (int64_t step = v_begin; step < v_end; step += per_step) {
      for (int t = 0; t < kTokenBlockThreads; ++t) {
        std::vector<float> tile;
        for (int l = 0; l < kTokenLoadsPerStep; ++l) {
          const int64_t v = step + int64_t{l} * kTokenBlockThreads + t;
          if (v < v_end) {
            const float* first = x.data() + head + v * per_vector;
            tile.insert(tile.end(), first, first + per_vector);
          }
        }
        AccumulateTile(threads[t], tile.data(), static_cast<int>(tile.size()), scale2);
      }
    }
    for (size_t width = 1; width < threads.size(); width *= 2) {
      for (size_t t = 0; t + width < threads.size(); t += 2 * width) {
        threads[t] = Merge(threads[t], threads[t + width], scale2);
      }
    }
    row = Merge(row, threads[0], scale2);
  }
  for (int64_t i = head + vectors * per_vector; i < n; ++i) {
    AccumulateOne(row, x[i], scale2);
  }
  return row;
}

TEST(EntropyMathTest, FloatTilingsAndMergeOrdersMatchFloat64) {
  std::mt19937_64 rng(11);
  for (int64_t n : {1, 3, 4, 5, 8, 127, 4096, 152064}) {
    for (float stddev : {0.01f, 2.0f, 50.0f}) {
      for (float offset : {0.0f, 1e4f}) {
        const float beta = 1.0f / 0.7f;
        std::vector<float> x = RandomRow(rng, n, stddev, 0.1);
        for (float& v : x) {
          v += offset;  // huge logits: precision must come from z - m, not beta * z
        }
        const double want = NaiveEntropyOf(x, beta);
        const double tol = 1e-5 * std::max(1.0, want);
        SCOPED_TRACE(::testing::Message() << n << " " << stddev << " " << offset);
        const float scale2 = Log2Scale(beta);
        for (int per_vector : {4, 8}) {  // 16-byte loads of fp32, of bf16 / fp16
          for (int64_t head : {0, 3}) {
            for (int64_t splits : {1, 3}) {
              const EntropyStats replayed =
                  Finalize(ReplayTokenKernel(x, head, per_vector, splits, scale2), n);
              EXPECT_NEAR(replayed.entropy, want, tol)
                  << per_vector << " per vector, head " << head << ", splits " << splits;
            }
          }
        }
        if (n <= 4096) {
          // One float accumulator element by element (the scalar tails):
          // sequential rounding grows like sqrt(n), so only short spans.
          EntropyAccumulator<float> streamed;
          for (float v : x) {
            AccumulateOne(streamed, v, scale2);
          }
          EXPECT_NEAR(Finalize(streamed, n).entropy, want, tol);
        }
        // Right-to-left fold of uneven chunks: merge order must not matter.
        EntropyAccumulator<float> reversed;
        for (int64_t end = n; end > 0;) {
          const int64_t begin = std::max<int64_t>(0, end - 1 - (end * 7919) % 1000);
          EntropyAccumulator<float> chunk;
          AccumulateTile(chunk, x.data() + begin, static_cast<int>(end - begin), scale2);
          reversed = Merge(chunk, reversed, scale2);
          end = begin;
        }
        EXPECT_NEAR(Finalize(reversed, n).entropy, want, tol);
      }
    }
  }
}

TEST(EntropyMathTest, EmptyAccumulatorIsTheMergeIdentity) {
  const float x[3] = {1.0f, -testing::kInf, 2.0f};
  EntropyAccumulator<float> a;
  AccumulateTile(a, x, 3, 1.0f);
  const EntropyAccumulator<float> empty;
  const float masked[2] = {-testing::kInf, -testing::kInf};
  EntropyAccumulator<float> all_masked;
  AccumulateTile(all_masked, masked, 2, 1.0f);
  EXPECT_EQ(all_masked.d, 0.0f);
  for (const EntropyAccumulator<float>& e : {empty, all_masked}) {
    const EntropyAccumulator<float> left = Merge(e, a, 1.0f);
    const EntropyAccumulator<float> right = Merge(a, e, 1.0f);
    EXPECT_EQ(left.m, a.m);
    EXPECT_EQ(left.d, a.d);
    EXPECT_EQ(right.u, a.u);
  }
}

TEST(EntropyMathTest, SurprisalAndTop1) {
  const float x[4] = {2.0f, 1.0f, 0.5f, 0.3f};
  const EntropyAccumulator<double> acc = [&] {
    EntropyAccumulator<double> a;
    for (float v : x) {
      AccumulateOne(a, static_cast<double>(v), Log2Scale(1.0));
    }
    return a;
  }();
  double z = 0;
  for (float v : x) {
    z += std::exp(static_cast<double>(v));
  }
  EXPECT_NEAR(Finalize(acc, 4).top1_prob, std::exp(2.0) / z, 1e-12);
  EXPECT_NEAR(Surprisal(acc, 0.5, Log2Scale(1.0)), -std::log(std::exp(0.5) / z), 1e-12);
  EXPECT_EQ(Surprisal(acc, -static_cast<double>(testing::kInf), Log2Scale(1.0)), INFINITY);
}

TEST(EntropyMathTest, AttentionAccumulatorMergesLikeOneStream) {
  std::mt19937_64 rng(12);
  for (int64_t n : {1, 2, 63, 64, 65, 1000}) {
    const std::vector<float> x = RandomRow(rng, n, 3.0f, 0.0);
    AttentionAccumulator<float> streamed;
    AttentionAccumulator<float> merged;
    for (size_t begin = 0; begin < x.size(); begin += 64) {
      AttentionAccumulator<float> tile;
      for (size_t i = begin; i < std::min(x.size(), begin + 64); ++i) {
        AccumulateOne(tile, x[i]);
      }
      merged = Merge(merged, tile);
    }
    for (float v : x) {
      AccumulateOne(streamed, v);
    }
    std::vector<double> xd(x.begin(), x.end());
    double top1;
    std::vector<double> p;
    const double h = testing::NaiveEntropy(xd, &top1, &p);
    double collision = 0;
    for (double v : p) {
      collision += v * v;
    }
    for (const AttentionAccumulator<float>& acc : {streamed, merged}) {
      const AttentionStats stats = FinalizeAttention(acc, n);
      EXPECT_NEAR(stats.shannon, h, 1e-5 * std::max(1.0, h)) << n;
      EXPECT_NEAR(stats.renyi2, -std::log(collision), 1e-5 * std::max(1.0, h)) << n;
    }
  }
}

// Replays the CUDA attention kernel's tiling (entropy_math.h) for one query:
// per-lane accumulators over the keys each lane sees, then a pairwise warp
// tree.
AttentionAccumulator<float> ReplayAttentionKernel(const std::vector<float>& scores) {
  std::vector<AttentionAccumulator<float>> lanes(kWarpLanes);
  const int64_t n = static_cast<int64_t>(scores.size());
  for (int64_t tile = 0; tile < n; tile += kAttentionTileKeys) {
    for (int lane = 0; lane < kWarpLanes; ++lane) {
      for (int j = 0; j < kAttentionTileKeys / kWarpLanes; ++j) {
        const int64_t key = tile + lane + int64_t{kWarpLanes} * j;
        if (key < n) {
          AccumulateOne(lanes[lane], scores[key]);
        }
      }
    }
  }
  for (int width = 1; width < kWarpLanes; width *= 2) {
    for (int lane = 0; lane + width < kWarpLanes; lane += 2 * width) {
      lanes[lane] = Merge(lanes[lane], lanes[lane + width]);
    }
  }
  return lanes[0];
}

TEST(EntropyMathTest, AttentionKernelTilingMatchesFloat64) {
  std::mt19937_64 rng(13);
  for (int64_t n : {1, 2, 31, 33, 64, 65, 200, 4096}) {
    for (float stddev : {0.5f, 4.0f, 40.0f}) {
      const std::vector<float> scores = RandomRow(rng, n, stddev, 0.0);
      std::vector<double> xd(scores.begin(), scores.end());
      double top1;
      std::vector<double> p;
      const double h = testing::NaiveEntropy(xd, &top1, &p);
      double collision = 0;
      for (double v : p) {
        collision += v * v;
      }
      const AttentionStats stats = FinalizeAttention(ReplayAttentionKernel(scores), n);
      EXPECT_NEAR(stats.shannon, h, 1e-5 * std::max(1.0, h)) << n << " " << stddev;
      EXPECT_NEAR(stats.renyi2, -std::log(collision), 1e-5 * std::max(1.0, h))
          << n << " " << stddev;
    }
  }
}

}  // namespace
}  // namespace entrowatch::compute
