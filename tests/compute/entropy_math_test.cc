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

// Tiles of `tile` elements (4 = one 16-byte fp32 load, 8 = one bf16 load),
// merged pairwise like a block reduction.
EntropyAccumulator<float> TiledTree(const std::vector<float>& x, int tile, float beta) {
  std::vector<EntropyAccumulator<float>> parts;
  for (size_t i = 0; i < x.size(); i += tile) {
    const int n = static_cast<int>(std::min<size_t>(tile, x.size() - i));
    parts.push_back(AccumulateTile(x.data() + i, n, beta));
  }
  while (parts.size() > 1) {
    std::vector<EntropyAccumulator<float>> next;
    for (size_t i = 0; i < parts.size(); i += 2) {
      next.push_back(i + 1 < parts.size() ? Merge(parts[i], parts[i + 1], beta) : parts[i]);
    }
    parts.swap(next);
  }
  return parts[0];
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
        for (int tile : {4, 8, 64}) {
          const EntropyStats tree = Finalize(TiledTree(x, tile, beta), n);
          EXPECT_NEAR(tree.entropy, want, tol) << "tile " << tile;
        }
        if (n <= 4096) {
          // One float accumulator element by element (the scalar tails):
          // sequential rounding grows like sqrt(n), so only short spans.
          EntropyAccumulator<float> streamed;
          for (float v : x) {
            AccumulateOne(streamed, v, beta);
          }
          EXPECT_NEAR(Finalize(streamed, n).entropy, want, tol);
        }
        // Right-to-left fold of uneven chunks: merge order must not matter.
        EntropyAccumulator<float> reversed;
        for (int64_t end = n; end > 0;) {
          const int64_t begin = std::max<int64_t>(0, end - 1 - (end * 7919) % 1000);
          reversed = Merge(AccumulateTile(x.data() + begin, static_cast<int>(end - begin), beta),
                           reversed, beta);
          end = begin;
        }
        EXPECT_NEAR(Finalize(reversed, n).entropy, want, tol);
      }
    }
  }
}

TEST(EntropyMathTest, EmptyAccumulatorIsTheMergeIdentity) {
  const float x[3] = {1.0f, -testing::kInf, 2.0f};
  const EntropyAccumulator<float> a = AccumulateTile(x, 3, 1.0f);
  const EntropyAccumulator<float> empty;
  const float masked[2] = {-testing::kInf, -testing::kInf};
  const EntropyAccumulator<float> all_masked = AccumulateTile(masked, 2, 1.0f);
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
      AccumulateOne(a, static_cast<double>(v), 1.0);
    }
    return a;
  }();
  double z = 0;
  for (float v : x) {
    z += std::exp(static_cast<double>(v));
  }
  EXPECT_NEAR(Finalize(acc, 4).top1_prob, std::exp(2.0) / z, 1e-12);
  EXPECT_NEAR(Surprisal(acc, 0.5, 1.0), -std::log(std::exp(0.5) / z), 1e-12);
  EXPECT_EQ(Surprisal(acc, -static_cast<double>(testing::kInf), 1.0), INFINITY);
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

}  // namespace
}  // namespace entrowatch::compute
