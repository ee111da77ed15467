#include "cli/scenario.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/half.h"

namespace entrowatch::cli {
namespace {

// Independent, reproducible streams per (seed, step, rank, purpose).
std::mt19937_64 Rng(uint64_t seed, int64_t step, uint64_t rank, uint64_t purpose) {
  std::seed_seq seq{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32),
                    static_cast<uint32_t>(step), static_cast<uint32_t>(rank),
                    static_cast<uint32_t>(purpose)};
  return std::mt19937_64(seq);
}

enum Purpose : uint64_t { kStepNoise = 1, kHeadNoise = 2, kTokens = 3, kLogits = 4 };

// Entropy of softmax(beta * z) in float64, from the bfloat16-rounded logits
// so the row sent on the wire is the one measured.
double QuantizedEntropy(const std::vector<double>& base, double beta, std::vector<uint16_t>* bits) {
  std::vector<double> logits(base.size());
  for (size_t i = 0; i < base.size(); ++i) {
    (*bits)[i] = common::FloatToBFloat16(static_cast<float>(beta * base[i]));
    logits[i] = common::BFloat16ToFloat((*bits)[i]);
  }
  return EntropyOfLogits(logits);
}

}  // namespace

const std::vector<ScenarioInfo>& AllScenarios() {
  static const auto* const kScenarios = new std::vector<ScenarioInfo>{
      {Scenario::kHealthy, "healthy", "steady training: entropy slowly falls, grad norm stable"},
      {Scenario::kEntropyCollapse, "entropy_collapse",
       "token entropy decays towards zero (mode collapse)"},
      {Scenario::kPanic, "panic", "high entropy + high grad norm, loss spike (data shock)"},
      {Scenario::kStagnation, "stagnation", "high entropy, tiny grad norm (LR too low)"},
      {Scenario::kPathologicalConfidence, "pathological_confidence",
       "low entropy, high grad norm (forgetting)"},
      {Scenario::kComfortZone, "comfort_zone",
       "low entropy, low grad norm, loss towards zero (memorization)"},
      {Scenario::kOverload, "overload", "entropy rises to near log V (entropic overload)"},
      {Scenario::kAttentionLocking, "attention_locking",
       "one layer's head entropies frozen at one value"},
      {Scenario::kDrift, "drift", "slow, sustained rise of the mean entropy"},
  };
  return *kScenarios;
}

absl::StatusOr<Scenario> ScenarioFromName(absl::string_view name) {
  std::vector<absl::string_view> names;
  for (const ScenarioInfo& info : AllScenarios()) {
    if (info.name == name) {
      return info.scenario;
    }
    names.push_back(info.name);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown scenario \"", name, "\"; known: ", absl::StrJoin(names, ", ")));
}

absl::string_view ScenarioName(Scenario scenario) {
  for (const ScenarioInfo& info : AllScenarios()) {
    if (info.scenario == scenario) {
      return info.name;
    }
  }
  return "unknown";
}

double EntropyOfLogits(const std::vector<double>& logits) {
  double max = -INFINITY;
  for (double z : logits) {
    max = std::max(max, z);
  }
  double sum = 0;
  double weighted = 0;
  for (double z : logits) {
    const double e = std::exp(z - max);
    sum += e;
    weighted += e * (z - max);
  }
  return std::log(sum) - weighted / sum;
}

std::vector<uint16_t> BFloat16RowWithEntropy(const std::vector<double>& base, double target_nats) {
  // Shifting the maximum to 0 keeps the logits that carry the probability
  // mass small, where bfloat16 is fine-grained; softmax does not change.
  const double max = *std::max_element(base.begin(), base.end());
  std::vector<double> shifted(base.size());
  for (size_t i = 0; i < base.size(); ++i) {
    shifted[i] = base[i] - max;
  }
  std::vector<uint16_t> bits(base.size());
  // Entropy falls monotonically from log V at beta = 0 as beta grows: find an
  // upper bracket, then bisect.
  double lo = 0;
  double hi = 1;
  while (hi < 1e6 && QuantizedEntropy(shifted, hi, &bits) > target_nats) {
    lo = hi;
    hi *= 2;
  }
  for (int i = 0; i < 50; ++i) {
    const double mid = 0.5 * (lo + hi);
    if (QuantizedEntropy(shifted, mid, &bits) > target_nats) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  const double h_lo = QuantizedEntropy(shifted, lo, &bits);
  const double h_hi = QuantizedEntropy(shifted, hi, &bits);
  QuantizedEntropy(shifted, std::abs(h_lo - target_nats) < std::abs(h_hi - target_nats) ? lo : hi,
                   &bits);
  return bits;
}

ScenarioGenerator::ScenarioGenerator(SimulationOptions options) : options_(std::move(options)) {}

std::vector<std::vector<float>> ScenarioGenerator::HeadEntropies(int64_t step) const {
  std::mt19937_64 rng = Rng(options_.seed, step, 0, kHeadNoise);
  std::normal_distribution<double> noise(0.0, 0.04);
  std::vector<std::vector<float>> heads(options_.layers);
  for (int layer = 0; layer < options_.layers; ++layer) {
    // Deeper layers attend more sharply; heads differ by a fixed offset.
    const double layer_mean = 3.2 - 0.35 * layer;
    for (int head = 0; head < options_.heads; ++head) {
      const double offset = 0.3 * std::sin(1.7 * head + layer);
      heads[layer].push_back(static_cast<float>(std::max(0.05, layer_mean + offset + noise(rng))));
    }
  }
  return heads;
}

StepSignals ScenarioGenerator::Signals(int64_t step) const {
  std::mt19937_64 rng = Rng(options_.seed, step, 0, kStepNoise);
  std::normal_distribution<double> normal(0.0, 1.0);
  const double progress = static_cast<double>(step) / std::max<int64_t>(1, options_.steps);
  const double log_vocab = std::log(static_cast<double>(options_.vocab));

  StepSignals s;
  const double healthy_entropy = 2.6 - 0.3 * progress + 0.03 * normal(rng);
  const double healthy_grad = std::exp(0.08 * normal(rng));
  const double healthy_loss =
      2.0 + 1.2 * std::exp(-static_cast<double>(step) / 200.0) + 0.02 * normal(rng);
  s.entropy_mean = healthy_entropy;
  s.grad_norm = healthy_grad;
  s.loss = healthy_loss;
  s.learning_rate = 3e-4 * std::min(1.0, static_cast<double>(step) / 10.0);
  s.head_entropy = HeadEntropies(step);

  const int64_t since = step - options_.onset_step;
  if (since < 0) {
    return s;
  }
  // Pathologies ramp in over a few steps, as they do in real runs.
  const double ramp = std::min(1.0, static_cast<double>(since + 1) / 5.0);
  const double t = static_cast<double>(since);
  switch (options_.scenario) {
    case Scenario::kHealthy:
      break;
    case Scenario::kEntropyCollapse:
      s.entropy_mean = std::max(0.02, healthy_entropy * std::exp(-t / 6.0));
      break;
    case Scenario::kPanic:
      s.entropy_mean = healthy_entropy + 2.2 * ramp;
      s.grad_norm = healthy_grad * (1.0 + 7.0 * ramp);
      s.loss = healthy_loss + 1.5 * ramp;
      break;
    case Scenario::kStagnation:
      s.entropy_mean = healthy_entropy + 2.0 * ramp;
      s.grad_norm = healthy_grad * (1.0 - 0.95 * ramp);
      s.loss = 2.0 + 1.2 * std::exp(-static_cast<double>(options_.onset_step) / 200.0) +
               0.02 * normal(rng);
      break;
    case Scenario::kPathologicalConfidence:
      s.entropy_mean = healthy_entropy * (1.0 - 0.85 * ramp);
      s.grad_norm = healthy_grad * (1.0 + 7.0 * ramp);
      break;
    case Scenario::kComfortZone:
      s.entropy_mean = healthy_entropy * (1.0 - 0.85 * ramp);
      s.grad_norm = healthy_grad * (1.0 - 0.9 * ramp);
      s.loss = 0.05 + (healthy_loss - 0.05) * std::exp(-t / 10.0);
      break;
    case Scenario::kOverload:
      s.entropy_mean = healthy_entropy + ramp * (0.97 * log_vocab - healthy_entropy);
      break;
    case Scenario::kAttentionLocking:
      s.head_entropy[options_.layers / 2] = HeadEntropies(options_.onset_step)[options_.layers / 2];
      break;
    case Scenario::kDrift:
      s.entropy_mean = healthy_entropy + 0.015 * t;
      break;
  }
  s.entropy_mean = std::clamp(s.entropy_mean, 0.0, log_vocab);
  return s;
}

v1::Report ScenarioGenerator::MakeReport(int64_t step, uint32_t rank) const {
  const StepSignals s = Signals(step);
  const double log_vocab = std::log(static_cast<double>(options_.vocab));
  // Token entropies spread around the step mean, narrower near the bounds.
  const double spread = 0.3 * std::min(s.entropy_mean, log_vocab - s.entropy_mean) + 0.005;
  std::mt19937_64 rng = Rng(options_.seed, step, rank, kTokens);
  std::normal_distribution<double> token(s.entropy_mean, spread);
  auto sample_entropy = [&] { return std::clamp(token(rng), 0.0, log_vocab * 0.999); };

  v1::Report report;
  report.set_run_id(options_.run_id);
  report.set_rank(rank);
  report.set_world_size(options_.ranks);
  report.set_step(static_cast<uint64_t>(step));
  report.set_phase(v1::TRAIN);
  v1::TokenEntropies* entropies = report.add_token_entropies();
  entropies->set_vocab_size(options_.vocab);
  for (int i = 0; i < options_.tokens_per_rank; ++i) {
    entropies->add_values(static_cast<float>(sample_entropy()));
  }
  if (options_.logits_every > 0 && step % options_.logits_every == 0) {
    std::mt19937_64 logits_rng = Rng(options_.seed, step, rank, kLogits);
    std::normal_distribution<double> base_logit(0.0, 1.0);
    v1::LogitsBlock* block = report.add_logits();
    v1::Tensor* tensor = block->mutable_logits();
    tensor->set_dtype(v1::BFLOAT16);
    tensor->add_shape(static_cast<uint64_t>(options_.logits_rows));
    tensor->add_shape(options_.vocab);
    std::string data;
    data.reserve(static_cast<size_t>(options_.logits_rows) * options_.vocab * 2);
    std::vector<double> base(options_.vocab);
    for (int row = 0; row < options_.logits_rows; ++row) {
      for (double& z : base) {
        z = base_logit(logits_rng);
      }
      for (uint16_t bits : BFloat16RowWithEntropy(base, sample_entropy())) {
        data.push_back(static_cast<char>(bits & 0xff));
        data.push_back(static_cast<char>(bits >> 8));
      }
    }
    tensor->set_data(std::move(data));
  }
  for (int layer = 0; layer < options_.layers; ++layer) {
    v1::AttentionEntropies* attention = report.add_attention_entropies();
    attention->set_layer(static_cast<uint32_t>(layer));
    for (float h : s.head_entropy[layer]) {
      attention->add_head_entropy(h);
    }
  }
  report.mutable_grad()->set_global_norm(s.grad_norm);
  report.mutable_scalars()->set_loss(s.loss);
  report.mutable_scalars()->set_learning_rate(s.learning_rate);
  return report;
}

}  // namespace entrowatch::cli
