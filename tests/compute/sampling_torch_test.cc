// The sampling view against PyTorch's filters on random inputs: the fixture
// is written by gen_sampling_fixture.py (torch, float64).

#include <cmath>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "compute/cpu/reference_engine.h"
#include "compute/cpu/vector_engine.h"
#include "gtest/gtest.h"
#include "test_util.h"

namespace entrowatch::compute {
namespace {

struct TorchCase {
  common::DType dtype = common::DType::kFloat32;
  float temperature = 1;
  uint32_t top_k = 0;
  float top_p = 1;
  std::vector<float> logits;
  double entropy = 0;
  double final_entropy = 0;
  int64_t effective_vocab = 0;
  double final_top1 = 0;
};

std::vector<TorchCase> LoadCases() {
  std::ifstream file(std::string(ENTROWATCH_COMPUTE_TESTDATA) + "/sampling_torch.txt");
  std::vector<TorchCase> cases;
  std::string line;
  while (std::getline(file, line)) {
    if (line.rfind("case ", 0) != 0) {
      continue;
    }
    TorchCase c;
    std::istringstream header(line.substr(5));
    std::string dtype;
    int64_t vocab;
    header >> dtype >> vocab >> c.temperature >> c.top_k >> c.top_p;
    c.dtype = dtype == "bf16" ? common::DType::kBFloat16 : common::DType::kFloat32;
    std::getline(file, line);
    std::istringstream values(line);
    c.logits.resize(vocab);
    for (float& v : c.logits) {
      values >> v;
    }
    std::getline(file, line);
    std::istringstream expect(line.substr(7));
    expect >> c.entropy >> c.final_entropy >> c.effective_vocab >> c.final_top1;
    cases.push_back(c);
  }
  return cases;
}

TEST(SamplingTorchTest, EnginesMatchPyTorchFilters) {
  const std::vector<TorchCase> cases = LoadCases();
  ASSERT_EQ(cases.size(), 30u);
  std::vector<std::unique_ptr<EntropyEngine>> engines;
  engines.push_back(std::make_unique<ReferenceEngine>());
  engines.push_back(std::make_unique<VectorEngine>(2));
  for (size_t i = 0; i < cases.size(); ++i) {
    const TorchCase& c = cases[i];
    testing::TestMatrix m(c.dtype, 1, static_cast<int64_t>(c.logits.size()));
    for (size_t j = 0; j < c.logits.size(); ++j) {
      m.Set(0, static_cast<int64_t>(j), c.logits[j]);
      ASSERT_EQ(m.Get(0, static_cast<int64_t>(j)), c.logits[j]) << "not representable";
    }
    LogitsInput in;
    in.logits = m.view();
    in.valid_vocab = m.cols();
    in.temperature = c.temperature;
    in.top_k = c.top_k;
    in.top_p = c.top_p;
    for (const auto& engine : engines) {
      SCOPED_TRACE(::testing::Message() << "case " << i << " engine " << engine->name());
      std::vector<RowEntropy> out(1);
      ASSERT_TRUE(engine->TokenEntropy(in, absl::MakeSpan(out)).ok());
      // The temperature and top-p are float32 in LogitsInput and float64 in
      // the fixture: 1e-6 covers that rounding, not a wrong filter.
      EXPECT_NEAR(out[0].entropy, c.entropy, 1e-5 * std::max(1.0, c.entropy));
      EXPECT_NEAR(out[0].final_entropy, c.final_entropy, 1e-6 * std::max(1.0, c.final_entropy));
      EXPECT_EQ(out[0].effective_vocab, c.effective_vocab);
      EXPECT_NEAR(out[0].final_top1_prob, c.final_top1, 1e-6);
    }
  }
}

}  // namespace
}  // namespace entrowatch::compute
