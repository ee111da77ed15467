// Every CPU engine against closed forms and the naive float64 definitions
// (test_util.h) on random and adversarial inputs.

#include <cmath>
#include <functional>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "compute/cpu/reference_engine.h"
#include "compute/cpu/vector_engine.h"
#if defined(ENTROWATCH_CONFORMANCE_CUDA)
#include "compute/cuda/cuda_engine.h"
#endif
#include "compute/input_checks.h"
#include "gtest/gtest.h"
#include "test_util.h"

namespace entrowatch::compute {
namespace {

using common::DType;
using testing::kInf;
using testing::NaiveRow;
using testing::TestMatrix;

struct EngineCase {
  std::string name;
  std::function<std::unique_ptr<EntropyEngine>()> make;
  // Allowed |error| / max(1, value) against float64 for entropies.
  double tolerance;
};

void PrintTo(const EngineCase& engine, std::ostream* os) { *os << engine.name; }

#if defined(ENTROWATCH_CONFORMANCE_CUDA)
// The same suite against the CUDA engine (tests/cuda_emu runs it on the
// emulated device): a roomy pool, and one small enough that a call spans
// several batches on both streams.
std::vector<EngineCase> Engines() {
  auto make = [](int64_t pool_bytes) {
    return [pool_bytes]() -> std::unique_ptr<EntropyEngine> {
      absl::StatusOr<std::unique_ptr<EntropyEngine>> engine = CreateCudaEngine(pool_bytes);
      if (!engine.ok()) {
        ADD_FAILURE() << engine.status();
        return std::make_unique<ReferenceEngine>();
      }
      return std::move(engine).value();
    };
  };
  return {{"cuda", make(64 << 20), 1e-5}, {"cuda_small_pool", make(2 << 20), 1e-5}};
}
#else
std::vector<EngineCase> Engines() {
  return {
      {"reference", [] { return std::make_unique<ReferenceEngine>(); }, 1e-9},
      // Float accumulators: ~2e-8 per exp2, sums over a few thousand terms
      // per lane; the budget is the one the issue sets for every fast engine.
      {"vector_1thread", [] { return std::make_unique<VectorEngine>(1); }, 1e-5},
      {"vector_3threads", [] { return std::make_unique<VectorEngine>(3); }, 1e-5},
  };
}
#endif

class EngineConformanceTest : public ::testing::TestWithParam<EngineCase> {
 protected:
  void SetUp() override { engine_ = GetParam().make(); }

  std::vector<RowEntropy> Run(const LogitsInput& in) {
    std::vector<RowEntropy> out(in.logits.rows);
    const absl::Status status = engine_->TokenEntropy(in, absl::MakeSpan(out));
    EXPECT_TRUE(status.ok()) << status;
    return out;
  }

  void ExpectClose(double actual, double expected, const std::string& what) {
    EXPECT_NEAR(actual, expected, GetParam().tolerance * std::max(1.0, std::fabs(expected)))
        << what;
  }

  // Checks every row of `m` against the naive definition.
  void CheckAgainstNaive(const TestMatrix& m, int64_t valid_vocab, float temperature,
                         const std::vector<int32_t>& targets, uint32_t top_k, float top_p) {
    LogitsInput in;
    in.logits = m.view();
    in.valid_vocab = valid_vocab;
    in.temperature = temperature;
    in.target_ids = targets;
    in.top_k = top_k;
    in.top_p = top_p;
    const std::vector<RowEntropy> out = Run(in);
    for (int64_t r = 0; r < m.rows(); ++r) {
      const NaiveRow want = testing::NaiveTokenEntropy(
          m, r, valid_vocab, temperature, targets.empty() ? -1 : targets[r], top_k, top_p);
      const std::string where = "row " + std::to_string(r);
      ASSERT_EQ(out[r].status, want.status) << where;
      if (want.status != RowStatus::kOk) {
        continue;
      }
      ExpectClose(out[r].entropy, want.entropy, where + " entropy");
      ExpectClose(out[r].normalized, want.normalized, where + " normalized");
      ExpectClose(out[r].top1_prob, want.top1_prob, where + " top1");
      if (!targets.empty()) {
        ExpectClose(out[r].surprisal, want.surprisal, where + " surprisal");
      }
      if (in.sampling()) {
        ExpectClose(out[r].final_entropy, want.final_entropy, where + " final entropy");
        EXPECT_EQ(out[r].effective_vocab, want.effective_vocab) << where;
        ExpectClose(out[r].final_top1_prob, want.final_top1_prob, where + " final top1");
      }
    }
  }

  std::unique_ptr<EntropyEngine> engine_;
};

TEST_P(EngineConformanceTest, ClosedForms) {
  TestMatrix m(DType::kFloat32, 4, 4);
  const float rows[4][4] = {{2.0f, 1.0f, 0.5f, 0.3f},
                            {10.0f, 1.0f, 0.5f, 0.1f},
                            {7.0f, 7.0f, 7.0f, 7.0f},
                            {3.0f, -kInf, -kInf, -kInf}};
  for (int r = 0; r < 4; ++r) {
    for (int c = 0; c < 4; ++c) {
      m.Set(r, c, rows[r][c]);
    }
  }
  LogitsInput in;
  in.logits = m.view();
  in.valid_vocab = 4;
  const std::vector<RowEntropy> out = Run(in);
  EXPECT_NEAR(out[0].entropy, 1.144266, 1e-6);
  EXPECT_NEAR(out[1].entropy, 0.002566, 1e-6);
  EXPECT_NEAR(out[2].entropy, std::log(4.0), 1e-6);
  EXPECT_NEAR(out[2].normalized, 1.0, 1e-6);
  EXPECT_NEAR(out[2].top1_prob, 0.25, 1e-6);
  EXPECT_EQ(out[3].entropy, 0.0);
  EXPECT_NEAR(out[3].top1_prob, 1.0, 1e-9);
}

// Rows whose span overflows float32 once scaled (found by fuzzing): the
// vanished terms must add 0, not 0 * -inf = NaN.
TEST_P(EngineConformanceTest, ExtremeSpansStayFinite) {
  TestMatrix m(DType::kFloat32, 2, 2);
  m.Set(0, 0, 3e38f);
  m.Set(0, 1, -3e38f);
  m.Set(1, 0, 1e35f);
  m.Set(1, 1, 0.0f);
  for (float temperature : {1.0f, kMinTemperature}) {
    LogitsInput in;
    in.logits = m.view();
    in.valid_vocab = 2;
    in.temperature = temperature;
    const std::vector<RowEntropy> out = Run(in);
    for (int r = 0; r < 2; ++r) {
      ASSERT_EQ(out[r].status, RowStatus::kOk);
      EXPECT_EQ(out[r].entropy, 0.0) << "row " << r << " T " << temperature;
      EXPECT_NEAR(out[r].top1_prob, 1.0, 1e-9) << "row " << r << " T " << temperature;
    }
  }
}

// The surprisal of a target far below the maximum: scale2 * (m - z) leaves
// the float range (logits near +-3e38, or a temperature near 1e-6 with large
// logits) while -log p stays finite in float64.
TEST_P(EngineConformanceTest, SurprisalFarBelowTheMaximumStaysFinite) {
  TestMatrix m(DType::kFloat32, 3, 5);
  for (int64_t c = 0; c < 5; ++c) {
    m.Set(0, c, c == 0 ? 3e38f : -3e38f);
    m.Set(1, c, c == 0 ? 3e33f : -3e33f);
    m.Set(2, c, static_cast<float>(c));
  }
  for (float temperature : {1.0f, kMinTemperature, 1e-3f, 50.0f}) {
    SCOPED_TRACE(temperature);
    CheckAgainstNaive(m, 5, temperature, {4, 3, 0}, 0, 1.0f);
  }
}

TEST_P(EngineConformanceTest, UniformRowsGiveLogV) {
  for (int64_t vocab : {1, 2, 3, 17, 1000, 50257}) {
    TestMatrix m(DType::kBFloat16, 2, vocab);
    for (int64_t c = 0; c < vocab; ++c) {
      m.Set(0, c, 0.0f);
      m.Set(1, c, 1e4f);
    }
    LogitsInput in;
    in.logits = m.view();
    in.valid_vocab = vocab;
    const std::vector<RowEntropy> out = Run(in);
    for (int r = 0; r < 2; ++r) {
      EXPECT_NEAR(out[r].entropy, std::log(static_cast<double>(vocab)), 1e-5) << vocab;
      EXPECT_NEAR(out[r].top1_prob, 1.0 / vocab, 1e-6) << vocab;
    }
  }
}

TEST_P(EngineConformanceTest, RandomRowsAllDtypes) {
  std::mt19937_64 rng(1);
  for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
    for (int64_t vocab : {1, 7, 64, 1000, 4099, 32000}) {
      for (float stddev : {0.1f, 3.0f, 30.0f}) {
        TestMatrix m(dtype, 5, vocab);
        testing::FillNormal(m, rng, stddev);
        std::vector<int32_t> targets;
        std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(vocab) - 1);
        for (int r = 0; r < 5; ++r) {
          targets.push_back(pick(rng));
        }
        SCOPED_TRACE(
            ::testing::PrintToString(std::make_tuple(static_cast<int>(dtype), vocab, stddev)));
        CheckAgainstNaive(m, vocab, 1.0f, targets, 0, 1.0f);
      }
    }
  }
}

TEST_P(EngineConformanceTest, FewLongRowsSplitAcrossThreads) {
  std::mt19937_64 rng(9);
  for (DType dtype : {DType::kFloat32, DType::kBFloat16}) {
    for (int64_t rows : {1, 2}) {
      TestMatrix m(dtype, rows, 152064);
      testing::FillNormal(m, rng, 3.0f);
      m.Set(0, 151000, 40.0f);  // the maximum late in the row
      SCOPED_TRACE(::testing::Message() << static_cast<int>(dtype) << " rows " << rows);
      CheckAgainstNaive(m, 151936, 1.0f, std::vector<int32_t>(rows, 151000), 0, 1.0f);
    }
  }
}

TEST_P(EngineConformanceTest, TemperatureScalesLogits) {
  std::mt19937_64 rng(2);
  TestMatrix m(DType::kFloat32, 3, 3000);
  testing::FillNormal(m, rng, 4.0f);
  for (float temperature : {0.01f, 0.5f, 1.0f, 2.0f, 100.0f}) {
    SCOPED_TRACE(temperature);
    CheckAgainstNaive(m, 3000, temperature, {0, 1, 2999}, 0, 1.0f);
  }
}

TEST_P(EngineConformanceTest, HugeLogits) {
  std::mt19937_64 rng(3);
  TestMatrix m(DType::kFloat32, 4, 5000);
  testing::FillNormal(m, rng, 1.0f);
  for (int64_t c = 0; c < 5000; ++c) {
    m.Set(1, c, 1e4f + m.Get(1, c));
    m.Set(2, c, -1e4f * (c % 3));
  }
  m.Set(0, 4999, 1e4f);
  m.Set(3, 0, -1e4f);
  m.Set(3, 1, 1e4f);
  CheckAgainstNaive(m, 5000, 1.0f, {4999, 0, 1, 0}, 0, 1.0f);
  TestMatrix h(DType::kFloat16, 2, 300);
  testing::FillNormal(h, rng, 1.0f);
  h.Set(0, 17, 65504.0f);
  h.Set(1, 3, -65504.0f);
  CheckAgainstNaive(h, 300, 1.0f, {17, 3}, 0, 1.0f);
}

TEST_P(EngineConformanceTest, MaskedColumnsAndPaddedVocab) {
  std::mt19937_64 rng(4);
  for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
    TestMatrix m(dtype, 6, 1031);
    testing::FillNormal(m, rng, 2.0f);
    std::bernoulli_distribution masked(0.3);
    for (int64_t r = 0; r < 6; ++r) {
      for (int64_t c = 0; c < 1031; ++c) {
        if (c >= 1000) {
          // Padding is never read: garbage must not leak in.
          m.Set(r, c, (c % 2) ? std::nanf("") : kInf);
        } else if (masked(rng) && c != r) {
          m.Set(r, c, -kInf);
        }
      }
    }
    CheckAgainstNaive(m, 1000, 1.0f, {0, 1, 2, 3, 4, 5}, 0, 1.0f);
    CheckAgainstNaive(m, 1000, 0.7f, {}, 50, 0.9f);
  }
}

TEST_P(EngineConformanceTest, NonFiniteAndAllMaskedRowsAreFlagged) {
  TestMatrix m(DType::kFloat32, 4, 257);
  std::mt19937_64 rng(5);
  testing::FillNormal(m, rng, 1.0f);
  m.Set(0, 256, std::nanf(""));
  m.Set(1, 100, kInf);
  for (int64_t c = 0; c < 257; ++c) {
    m.Set(2, c, -kInf);
  }
  LogitsInput in;
  in.logits = m.view();
  in.valid_vocab = 257;
  const std::vector<RowEntropy> out = Run(in);
  EXPECT_EQ(out[0].status, RowStatus::kNonFinite);
  EXPECT_EQ(out[1].status, RowStatus::kNonFinite);
  EXPECT_EQ(out[2].status, RowStatus::kAllMasked);
  EXPECT_EQ(out[3].status, RowStatus::kOk);
  EXPECT_TRUE(std::isfinite(out[3].entropy));
}

TEST_P(EngineConformanceTest, SamplingView) {
  std::mt19937_64 rng(6);
  for (DType dtype : {DType::kFloat32, DType::kBFloat16}) {
    TestMatrix m(dtype, 4, 2000);
    testing::FillNormal(m, rng, 2.5f);
    for (uint32_t top_k : {0u, 1u, 5u, 50u, 1999u, 5000u}) {
      for (float top_p : {0.05f, 0.5f, 0.9f, 0.999f, 1.0f}) {
        if (top_k == 0 && top_p >= 1.0f) {
          continue;
        }
        SCOPED_TRACE(::testing::PrintToString(std::make_tuple(top_k, top_p)));
        CheckAgainstNaive(m, 2000, 0.8f, {}, top_k, top_p);
      }
    }
  }
}

TEST_P(EngineConformanceTest, SamplingViewOnLongRows) {
  std::mt19937_64 rng(10);
  TestMatrix m(DType::kBFloat16, 3, 50000);
  testing::FillNormal(m, rng, 1.5f);  // flat: the nucleus spans many tokens
  for (int64_t c = 0; c < 50000; c += 7) {
    m.Set(1, c, -kInf);
  }
  for (const auto& [top_k, top_p] :
       {std::pair{0u, 0.3f}, std::pair{0u, 0.9f}, std::pair{0u, 0.999f}, std::pair{2000u, 0.5f},
        std::pair{20000u, 1.0f}}) {
    SCOPED_TRACE(::testing::Message() << top_k << " " << top_p);
    CheckAgainstNaive(m, 50000, 1.3f, {}, top_k, top_p);
  }
}

TEST_P(EngineConformanceTest, TopKKeepsTiesWithTheKthValue) {
  TestMatrix m(DType::kFloat32, 1, 6);
  const float row[6] = {3, 1, 2, 2, 2, 0};
  for (int c = 0; c < 6; ++c) {
    m.Set(0, c, row[c]);
  }
  LogitsInput in;
  in.logits = m.view();
  in.valid_vocab = 6;
  in.top_k = 2;
  const std::vector<RowEntropy> out = Run(in);
  EXPECT_EQ(out[0].effective_vocab, 4);
  CheckAgainstNaive(m, 6, 1.0f, {}, 2, 1.0f);
}

TEST_P(EngineConformanceTest, InvalidInputsAreRejected) {
  TestMatrix m(DType::kFloat32, 2, 8);
  std::vector<RowEntropy> out(2);
  LogitsInput in;
  in.logits = m.view();
  in.valid_vocab = 8;
  EXPECT_TRUE(engine_->TokenEntropy(in, absl::MakeSpan(out)).ok());
  LogitsInput bad = in;
  bad.valid_vocab = 0;
  EXPECT_EQ(engine_->TokenEntropy(bad, absl::MakeSpan(out)).code(),
            absl::StatusCode::kInvalidArgument);
  bad = in;
  bad.valid_vocab = 9;
  EXPECT_EQ(engine_->TokenEntropy(bad, absl::MakeSpan(out)).code(),
            absl::StatusCode::kInvalidArgument);
  bad = in;
  bad.temperature = 0;
  EXPECT_EQ(engine_->TokenEntropy(bad, absl::MakeSpan(out)).code(),
            absl::StatusCode::kInvalidArgument);
  bad = in;
  bad.temperature = std::nanf("");
  EXPECT_EQ(engine_->TokenEntropy(bad, absl::MakeSpan(out)).code(),
            absl::StatusCode::kInvalidArgument);
  bad = in;
  bad.top_p = std::nanf("");
  EXPECT_EQ(engine_->TokenEntropy(bad, absl::MakeSpan(out)).code(),
            absl::StatusCode::kInvalidArgument);
  const std::vector<int32_t> targets = {0, 8};
  bad = in;
  bad.target_ids = targets;
  EXPECT_EQ(engine_->TokenEntropy(bad, absl::MakeSpan(out)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine_->TokenEntropy(in, absl::MakeSpan(out).subspan(1)).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_P(EngineConformanceTest, ConcurrentCallsAgree) {
  std::mt19937_64 rng(7);
  TestMatrix m(DType::kBFloat16, 16, 20000);
  testing::FillNormal(m, rng, 3.0f);
  LogitsInput in;
  in.logits = m.view();
  in.valid_vocab = 19999;
  const std::vector<RowEntropy> want = Run(in);
  std::vector<std::vector<RowEntropy>> got(4, std::vector<RowEntropy>(16));
  std::vector<absl::Status> status(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 3 && status[t].ok(); ++i) {
        status[t] = engine_->TokenEntropy(in, absl::MakeSpan(got[t]));
      }
    });
  }
  for (std::thread& t : threads) {
    t.join();
  }
  for (int t = 0; t < 4; ++t) {
    ASSERT_TRUE(status[t].ok()) << status[t];
    for (int r = 0; r < 16; ++r) {
      EXPECT_EQ(got[t][r].entropy, want[r].entropy);
    }
  }
}

AttentionInput MakeAttention(const TestMatrix& q, const TestMatrix& k, DType dtype, int64_t heads,
                             int64_t kv_heads, int64_t nq, int64_t nk, int64_t d, bool causal) {
  AttentionInput in;
  in.dtype = dtype;
  in.q = q.data();
  in.k = k.data();
  in.heads = heads;
  in.kv_heads = kv_heads;
  in.nq = nq;
  in.nk = nk;
  in.head_dim = d;
  in.causal = causal;
  return in;
}

TEST_P(EngineConformanceTest, AttentionMatchesMaterializedReference) {
  std::mt19937_64 rng(8);
  struct Shape {
    int64_t heads, kv_heads, nq, nk, d;
    bool causal;
  };
  const Shape shapes[] = {{4, 4, 9, 9, 16, true},     {4, 2, 5, 9, 16, true},
                          {8, 1, 7, 7, 64, false},    {2, 2, 1, 33, 8, true},
                          {6, 3, 13, 40, 128, false}, {3, 1, 70, 70, 64, true}};
  for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
    for (const Shape& s : shapes) {
      TestMatrix q(dtype, s.heads * s.nq, s.d);
      TestMatrix k(dtype, s.kv_heads * s.nk, s.d);
      testing::FillNormal(q, rng, 1.5f);
      testing::FillNormal(k, rng, 1.5f);
      AttentionInput in =
          MakeAttention(q, k, dtype, s.heads, s.kv_heads, s.nq, s.nk, s.d, s.causal);
      if (s.d == 8) {
        in.scale = 2.0f;
      }
      AttentionOutput out;
      ASSERT_TRUE(engine_->AttentionEntropy(in, &out).ok());
      const testing::NaiveAttention want = testing::NaiveAttentionEntropy(in);
      ASSERT_EQ(out.shannon.size(), want.shannon.size());
      ASSERT_EQ(out.renyi2.size(), want.renyi2.size());
      for (size_t i = 0; i < want.shannon.size(); ++i) {
        // Outputs are float: allow float rounding on top of the engine's own.
        const double tol = std::max(GetParam().tolerance, 2e-7);
        EXPECT_NEAR(out.shannon[i], want.shannon[i], tol * std::max(1.0, want.shannon[i])) << i;
        EXPECT_NEAR(out.renyi2[i], want.renyi2[i], tol * std::max(1.0, want.renyi2[i])) << i;
        EXPECT_LE(out.renyi2[i], out.shannon[i] + 1e-6);
      }
      ASSERT_EQ(out.max_logit.size(), want.max_logit.size());
      for (size_t h = 0; h < want.max_logit.size(); ++h) {
        // Float dot products of d terms: a few ulps of the largest partial sum.
        EXPECT_NEAR(out.max_logit[h], want.max_logit[h],
                    2e-5 * std::max(1.0, std::fabs(want.max_logit[h])))
            << "head " << h;
      }
      if (s.causal && s.nq == s.nk) {
        EXPECT_EQ(out.shannon[0], 0.0f);  // the first query sees one key
      }
    }
  }
}

TEST_P(EngineConformanceTest, AttentionRejectsBadShapesAndValues) {
  TestMatrix q(DType::kFloat32, 4 * 3, 8);
  TestMatrix k(DType::kFloat32, 2 * 5, 8);
  AttentionOutput out;
  AttentionInput in = MakeAttention(q, k, DType::kFloat32, 4, 2, 3, 5, 8, true);
  EXPECT_TRUE(engine_->AttentionEntropy(in, &out).ok());
  AttentionInput bad = MakeAttention(q, k, DType::kFloat32, 4, 3, 3, 5, 8, true);
  EXPECT_EQ(engine_->AttentionEntropy(bad, &out).code(), absl::StatusCode::kInvalidArgument);
  bad = MakeAttention(q, k, DType::kFloat32, 2, 1, 6, 5, 8, true);
  EXPECT_EQ(engine_->AttentionEntropy(bad, &out).code(), absl::StatusCode::kInvalidArgument);
  q.Set(5, 1, std::nanf(""));
  EXPECT_EQ(engine_->AttentionEntropy(in, &out).code(), absl::StatusCode::kInvalidArgument);
}

// Scores within bounds can still come from float dot products that overflow
// before a tiny scale brings them back (a fuzz finding:
// tests/fuzz/crashes/attention_unscaled_dot_overflow.pb).
TEST(AttentionValuesTest, DotProductsBeyondFloatAreRefusedWhateverTheScale) {
  TestMatrix q(DType::kFloat32, 1 * 2, 4);
  TestMatrix k(DType::kFloat32, 1 * 2, 4);
  AttentionInput in = MakeAttention(q, k, DType::kFloat32, 1, 1, 2, 2, 4, true);
  EXPECT_TRUE(CheckAttentionValues(in).ok());
  q.Set(0, 0, 6e37f);
  k.Set(1, 2, 3e25f);
  in = MakeAttention(q, k, DType::kFloat32, 1, 1, 2, 2, 4, true);
  in.scale = 1e-37f;  // scaled scores about 7e25: under the score bound
  const absl::Status status = CheckAttentionValues(in);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("dot products could reach"), absl::string_view::npos) << status;
  in.scale = 1.0f;  // and without the tiny scale the score bound names it
  const absl::Status unscaled = CheckAttentionValues(in);
  EXPECT_NE(unscaled.message().find("scores could reach"), absl::string_view::npos) << unscaled;
}

INSTANTIATE_TEST_SUITE_P(Engines, EngineConformanceTest, ::testing::ValuesIn(Engines()),
                         [](const ::testing::TestParamInfo<EngineCase>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace entrowatch::compute
