#include "aggregation_inputs.h"

#include <algorithm>
#include <cmath>
#include <random>

namespace entrowatch::testing {

client::RankStepInput RankData::Input(uint64_t step) const {
  client::RankStepInput in;
  in.step = step;
  in.token_entropies = entropies;
  in.generated = generated;
  for (const auto& [layer, values] : heads) {
    client::LayerAttentionInput a;
    a.layer = layer;
    a.head_entropy = values;
    if (auto it = max_logits.find(layer); it != max_logits.end()) {
      a.max_logit = it->second;
    }
    in.attention.push_back(a);
  }
  in.grad_norm = grad_norm;
  in.loss = loss;
  in.learning_rate = learning_rate;
  return in;
}

v1::Report RankData::RawReport(const std::string& run_id, uint32_t rank, uint64_t step) const {
  v1::Report report;
  report.set_run_id(run_id);
  report.set_rank(rank);
  report.set_world_size(kAggregationRanks);
  report.set_step(step);
  // Unique per (run, rank) and distinct across ranks, so Acks pair exactly.
  report.set_seq(step * kAggregationRanks + rank + 1);
  if (!entropies.empty()) {
    v1::TokenEntropies* block = report.add_token_entropies();
    block->set_vocab_size(kAggregationVocab);
    block->mutable_values()->Add(entropies.begin(), entropies.end());
    for (uint8_t g : generated) {
      block->add_token_kinds(g != 0 ? v1::GENERATED : v1::PROMPT);
    }
  }
  for (const auto& [layer, values] : heads) {
    v1::AttentionEntropies* block = report.add_attention_entropies();
    block->set_layer(layer);
    block->mutable_head_entropy()->Add(values.begin(), values.end());
    if (auto it = max_logits.find(layer); it != max_logits.end()) {
      block->set_max_logit(it->second);
    }
  }
  if (grad_norm) {
    report.mutable_grad()->set_global_norm(*grad_norm);
  }
  if (loss) {
    report.mutable_scalars()->set_loss(*loss);
  }
  if (learning_rate) {
    report.mutable_scalars()->set_learning_rate(*learning_rate);
  }
  return report;
}

std::vector<RankData> MakeStep(uint64_t seed) {
  std::mt19937_64 rng(seed);
  const double log_v = std::log(static_cast<double>(kAggregationVocab));
  const double bin = log_v / client::kEntropyHistogramBins;
  std::uniform_real_distribution<double> uniform(0, log_v);
  std::normal_distribution<double> cluster(0.8 * log_v, 0.3);
  std::vector<RankData> ranks(kAggregationRanks);
  for (int r = 0; r < kAggregationRanks; ++r) {
    RankData& d = ranks[r];
    const int tokens = r == 2 ? 0 : 200 + 150 * r + static_cast<int>(rng() % 50);
    for (int i = 0; i < tokens; ++i) {
      double h = 0;
      switch (i % 6) {
        case 0:
          h = uniform(rng);
          break;
        case 1:
          h = std::clamp(cluster(rng), 0.0, log_v);
          break;
        case 2:
          h = bin * static_cast<double>(rng() % client::kEntropyHistogramBins);
          break;
        case 3:
          h = i % 12 == 3 ? 0.0 : log_v;
          break;
        default:
          h = kAggregationThreshold * log_v + (uniform(rng) - 0.5 * log_v) * 1e-6;
      }
      d.entropies.push_back(static_cast<float>(h));
      d.generated.push_back(static_cast<uint8_t>(rng() % 3 == 0));
    }
    if (r == 1) {
      d.generated.clear();
    }
    for (uint32_t layer = 0; layer < kAggregationLayers; ++layer) {
      if (r == 1 && layer == 2) {
        continue;
      }
      const uint32_t heads = (r == 3 && layer == 0) ? kAggregationHeads - 1 : kAggregationHeads;
      for (uint32_t h = 0; h < heads; ++h) {
        d.heads[layer].push_back(static_cast<float>(uniform(rng) * 0.5));
      }
      if ((r + layer) % 2 == 0) {
        d.max_logits[layer] = static_cast<float>(uniform(rng) * 10 - 20);
      }
    }
    d.grad_norm = 1.5 + 0.001 * static_cast<double>(seed % 7);
    if (r != 3) {
      d.loss = 2.0 + 0.1 * r + 0.01 * static_cast<double>(seed % 5);
    }
    if (r == 0) {
      d.learning_rate = 3e-4;
    }
  }
  return ranks;
}

client::StepAggregatorOptions AggregationOptions(const std::string& run_id) {
  client::StepAggregatorOptions options;
  options.run_id = run_id;
  options.vocab_size = kAggregationVocab;
  options.high_entropy_threshold = kAggregationThreshold;
  options.attention_layers = kAggregationLayers;
  options.attention_heads = kAggregationHeads;
  return options;
}

}  // namespace entrowatch::testing
