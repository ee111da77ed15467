// The CUDA engine against the float64 reference engine (label gpu). Every
// test skips when no CUDA device is present. Outputs are poisoned before
// each run so that an element the device never wrote cannot pass.

#include "compute/cuda/cuda_engine.h"

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "compute/cpu/reference_engine.h"
#include "compute/degrading_engine.h"
#include "compute/engine_factory.h"
#include "gtest/gtest.h"
#include "test_util.h"

namespace entrowatch::compute {
namespace {

using common::DType;
using testing::kInf;
using testing::TestMatrix;

class CudaEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() == 0) {
      GTEST_SKIP() << CudaDeviceDescription();
    }
    absl::StatusOr<std::unique_ptr<EntropyEngine>> engine = CreateCudaEngine(64 << 20);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(engine).value();
  }

  static std::vector<RowEntropy> Poisoned(int64_t rows) {
    RowEntropy poison;
    poison.status = RowStatus::kAllMasked;
    poison.entropy = poison.normalized = poison.top1_prob = poison.surprisal =
        std::numeric_limits<double>::quiet_NaN();
    return std::vector<RowEntropy>(rows, poison);
  }

  // Runs `engine` and the reference on the same input and compares.
  void ExpectParity(EntropyEngine& engine, const LogitsInput& in) {
    std::vector<RowEntropy> got = Poisoned(in.logits.rows);
    std::vector<RowEntropy> want(in.logits.rows);
    ASSERT_TRUE(reference_.TokenEntropy(in, absl::MakeSpan(want)).ok());
    const absl::Status status = engine.TokenEntropy(in, absl::MakeSpan(got));
    ASSERT_TRUE(status.ok()) << status;
    for (int64_t r = 0; r < in.logits.rows; ++r) {
      ASSERT_EQ(got[r].status, want[r].status) << "row " << r;
      if (want[r].status != RowStatus::kOk) {
        continue;
      }
      const double tol = 1e-5 * std::max(1.0, want[r].entropy);
      EXPECT_NEAR(got[r].entropy, want[r].entropy, tol) << "row " << r;
      EXPECT_NEAR(got[r].normalized, want[r].normalized, 1e-5) << "row " << r;
      EXPECT_NEAR(got[r].top1_prob, want[r].top1_prob, 1e-5) << "row " << r;
      if (!in.target_ids.empty()) {
        EXPECT_NEAR(got[r].surprisal, want[r].surprisal, 1e-5 * std::max(1.0, want[r].surprisal))
            << "row " << r;
      }
      if (in.sampling()) {
        EXPECT_NEAR(got[r].final_entropy, want[r].final_entropy, 1e-9) << "row " << r;
        EXPECT_EQ(got[r].effective_vocab, want[r].effective_vocab) << "row " << r;
      }
    }
  }

  ReferenceEngine reference_;
  std::unique_ptr<EntropyEngine> engine_;
};

TEST_F(CudaEngineTest, TokenEntropyMatchesReferenceOnRandomRows) {
  std::mt19937_64 rng(21);
  for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
    for (int64_t vocab : {1, 3, 7, 8, 9, 1000, 4099, 32000, 152064}) {
      for (int64_t rows : {1, 3, 70}) {
        if (vocab * rows > 4'000'000) {
          continue;
        }
        TestMatrix m(dtype, rows, vocab);
        testing::FillNormal(m, rng, 3.0f);
        std::vector<int32_t> targets(rows);
        for (int64_t r = 0; r < rows; ++r) {
          targets[r] = static_cast<int32_t>((r * 7919) % vocab);
        }
        LogitsInput in;
        in.logits = m.view();
        in.valid_vocab = vocab;
        in.temperature = 0.8f;
        in.target_ids = targets;
        SCOPED_TRACE(::testing::Message()
                     << static_cast<int>(dtype) << " " << rows << "x" << vocab);
        ExpectParity(*engine_, in);
      }
    }
  }
}

TEST_F(CudaEngineTest, AdversarialRows) {
  std::mt19937_64 rng(22);
  for (DType dtype : {DType::kFloat32, DType::kBFloat16}) {
    TestMatrix m(dtype, 8, 5003);
    testing::FillNormal(m, rng, 1.0f);
    for (int64_t c = 0; c < 5003; ++c) {
      m.Set(0, c, 1e4f + m.Get(0, c));                // huge logits
      m.Set(1, c, c == 17 ? 5.0f : -kInf);            // one-hot
      m.Set(2, c, 2.0f);                              // uniform
      m.Set(3, c, c % 3 == 0 ? -kInf : m.Get(3, c));  // masked columns
      m.Set(4, c, -kInf);                             // all masked
      if (c >= 4000) {
        m.Set(5, c, std::nanf(""));  // garbage in padding only
      }
    }
    m.Set(6, 2500, std::nanf(""));
    m.Set(7, 0, kInf);
    LogitsInput in;
    in.logits = m.view();
    in.valid_vocab = 4000;
    ExpectParity(*engine_, in);
  }
}

TEST_F(CudaEngineTest, SmallPoolBatchesAcrossBothStreams) {
  absl::StatusOr<std::unique_ptr<EntropyEngine>> small = CreateCudaEngine(2 << 20);
  ASSERT_TRUE(small.ok()) << small.status();
  std::mt19937_64 rng(23);
  TestMatrix m(DType::kBFloat16, 300, 32001);  // ~19 MB: many batches
  testing::FillNormal(m, rng, 2.0f);
  LogitsInput in;
  in.logits = m.view();
  in.valid_vocab = 32000;
  in.top_k = 40;
  in.top_p = 0.9f;
  ExpectParity(**small, in);
}

TEST_F(CudaEngineTest, AttentionMatchesReference) {
  std::mt19937_64 rng(24);
  struct Shape {
    int64_t heads, kv_heads, nq, nk, d;
    bool causal;
  };
  const Shape shapes[] = {{4, 4, 33, 33, 64, true},
                          {8, 2, 17, 100, 128, true},
                          {2, 1, 70, 70, 128, false},
                          {3, 3, 1, 5, 64, true},
                          {2, 2, 129, 300, 64, false}};
  for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
    for (const Shape& s : shapes) {
      TestMatrix q(dtype, s.heads * s.nq, s.d);
      TestMatrix k(dtype, s.kv_heads * s.nk, s.d);
      testing::FillNormal(q, rng, 1.0f);
      testing::FillNormal(k, rng, 1.0f);
      AttentionInput in;
      in.dtype = dtype;
      in.q = q.data();
      in.k = k.data();
      in.heads = s.heads;
      in.kv_heads = s.kv_heads;
      in.nq = s.nq;
      in.nk = s.nk;
      in.head_dim = s.d;
      in.causal = s.causal;
      AttentionOutput want;
      ASSERT_TRUE(reference_.AttentionEntropy(in, &want).ok());
      AttentionOutput got;
      got.shannon.assign(want.shannon.size(), std::nanf(""));
      ASSERT_TRUE(engine_->AttentionEntropy(in, &got).ok());
      ASSERT_EQ(got.shannon.size(), want.shannon.size());
      for (size_t i = 0; i < want.shannon.size(); ++i) {
        EXPECT_NEAR(got.shannon[i], want.shannon[i], 1e-5 * std::max(1.0f, want.shannon[i])) << i;
        EXPECT_NEAR(got.renyi2[i], want.renyi2[i], 1e-5 * std::max(1.0f, want.renyi2[i])) << i;
      }
      ASSERT_EQ(got.max_logit.size(), static_cast<size_t>(s.heads));
      for (int64_t h = 0; h < s.heads; ++h) {
        EXPECT_NEAR(got.max_logit[h], want.max_logit[h],
                    2e-5 * std::max(1.0f, std::fabs(want.max_logit[h])))
            << "head " << h;
      }
    }
  }
}

// NaN / Inf in q or k is the caller's error, as in the reference engine: an
// InvalidArgument, and the degrading wrapper stays on the device.
TEST_F(CudaEngineTest, NonFiniteAttentionInputIsInvalidArgumentAndDoesNotDegrade) {
  DegradingEngine engine(std::move(engine_), std::make_unique<ReferenceEngine>());
  for (float bad : {std::nanf(""), kInf, -kInf}) {
    TestMatrix q(DType::kBFloat16, 2 * 40, 64);
    TestMatrix k(DType::kBFloat16, 1 * 70, 64);
    std::mt19937_64 rng(25);
    testing::FillNormal(q, rng, 1.0f);
    testing::FillNormal(k, rng, 1.0f);
    k.Set(69, 63, bad);  // in the last key tile
    AttentionInput in;
    in.dtype = DType::kBFloat16;
    in.q = q.data();
    in.k = k.data();
    in.heads = 2;
    in.kv_heads = 1;
    in.nq = 40;
    in.nk = 70;
    in.head_dim = 64;
    AttentionOutput out;
    const absl::Status status = engine.AttentionEntropy(in, &out);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_FALSE(engine.degraded());
  }
}

TEST_F(CudaEngineTest, FactoryPicksCudaWhenADeviceWorks) {
  EngineOptions options;
  options.backend = "auto";
  absl::StatusOr<EngineSelection> selection = CreateEngine(options);
  ASSERT_TRUE(selection.ok()) << selection.status();
  EXPECT_EQ(selection->backend, "cuda");
  EXPECT_FALSE(selection->degraded);
  EXPECT_EQ(selection->engine->name(), "cuda");
}

}  // namespace
}  // namespace entrowatch::compute
