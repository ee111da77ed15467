#include "analysis/aggregation/trace_ranks.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>

#include "analysis/step_aggregator.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

namespace entrowatch::testing {

std::vector<std::string> TraceNames() {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(ENTROWATCH_TEST_DATA_DIR)) {
    if (entry.path().extension() == ".jsonl") {
      names.push_back(entry.path().stem().string());
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<v1::Report> LoadTrace(const std::string& name) {
  std::ifstream in(std::string(ENTROWATCH_TEST_DATA_DIR) + "/" + name + ".jsonl");
  EXPECT_TRUE(in.good()) << name;
  std::vector<v1::Report> reports;
  std::string line;
  while (std::getline(in, line)) {
    v1::Report r;
    const auto status = google::protobuf::util::JsonStringToMessage(line, &r);
    EXPECT_TRUE(status.ok()) << name << ": " << status.message();
    reports.push_back(std::move(r));
  }
  return reports;
}

std::vector<std::vector<v1::Report>> GroupBySteps(const std::vector<v1::Report>& trace) {
  std::vector<std::vector<v1::Report>> steps;
  for (const v1::Report& r : trace) {
    if (steps.empty() || steps.back().front().step() != r.step()) {
      steps.emplace_back();
    }
    steps.back().push_back(r);
  }
  return steps;
}

std::vector<v1::Report> SplitIntoRanks(const std::vector<v1::Report>& step, uint32_t ranks) {
  std::vector<v1::Report> out(ranks);
  const v1::Report& first = step.front();
  for (uint32_t i = 0; i < ranks; ++i) {
    v1::Report& r = out[i];
    r.set_run_id(first.run_id());
    r.set_rank(i);
    r.set_world_size(ranks);
    r.set_step(first.step());
    r.set_seq(first.step() + 1);
    r.set_phase(first.phase());
    *r.mutable_attention_entropies() = first.attention_entropies();
    if (first.has_grad()) {
      *r.mutable_grad() = first.grad();
    }
    if (first.has_scalars()) {
      *r.mutable_scalars() = first.scalars();
    }
  }
  out.back().set_final(
      std::any_of(step.begin(), step.end(), [](const v1::Report& r) { return r.final(); }));
  uint64_t dealt = 0;
  for (const v1::Report& source : step) {
    for (const auto& block : source.token_entropies()) {
      std::vector<v1::TokenEntropies*> blocks(ranks);
      for (uint32_t i = 0; i < ranks; ++i) {
        blocks[i] = out[i].add_token_entropies();
        blocks[i]->set_vocab_size(block.vocab_size());
      }
      for (int v = 0; v < block.values_size(); ++v, ++dealt) {
        v1::TokenEntropies* to = blocks[dealt % ranks];
        to->add_values(block.values(v));
        if (block.token_kinds_size() > 0) {
          to->add_token_kinds(block.token_kinds(v));
        }
      }
    }
  }
  return out;
}

v1::Report AggregateRanks(const std::vector<v1::Report>& per_rank, double high_entropy_threshold) {
  const v1::Report& first = per_rank.front();
  v1::Report out;
  out.set_run_id(first.run_id());
  out.set_rank(first.rank());
  out.set_world_size(first.world_size());
  out.set_step(first.step());
  out.set_seq(first.seq());
  out.set_phase(first.phase());
  std::map<uint32_t, v1::EntropySummary> by_vocab;
  std::map<uint32_t, v1::AttentionSummary> by_layer;
  std::map<std::string, std::pair<double, int>> named;
  for (const v1::Report& r : per_rank) {
    out.set_final(out.final() || r.final());
    uint64_t tokens = 0;
    double entropy_sum = 0;
    for (const auto& block : r.token_entropies()) {
      std::vector<bool> generated;
      for (int v = 0; v < block.token_kinds_size(); ++v) {
        generated.push_back(block.token_kinds(v) == v1::GENERATED);
      }
      const v1::EntropySummary s = analysis::SummarizeEntropies(block.values(), block.vocab_size(),
                                                                high_entropy_threshold, generated);
      analysis::MergeEntropySummary(s, &by_vocab[block.vocab_size()]);
      tokens += s.count();
      entropy_sum += s.sum();
    }
    for (const auto& block : r.attention_entropies()) {
      v1::AttentionSummary& a = by_layer[block.layer()];
      a.set_layer(block.layer());
      a.mutable_head_entropy_sum()->Resize(
          std::max(a.head_entropy_sum_size(), block.head_entropy_size()), 0.0);
      a.mutable_head_count()->Resize(a.head_entropy_sum_size(), 0);
      for (int h = 0; h < block.head_entropy_size(); ++h) {
        a.set_head_entropy_sum(h, a.head_entropy_sum(h) + block.head_entropy(h));
        a.set_head_count(h, a.head_count(h) + 1);
      }
      if (block.has_max_logit()) {
        a.set_max_logit(a.has_max_logit() ? std::max(a.max_logit(), block.max_logit())
                                          : block.max_logit());
      }
    }
    v1::RankSummary* rank = out.mutable_summary()->add_ranks();
    rank->set_rank(r.rank());
    rank->set_token_count(tokens);
    rank->set_entropy_mean(tokens > 0 ? entropy_sum / static_cast<double>(tokens) : 0);
    if (r.has_grad()) {
      rank->set_has_grad_norm(true);
      rank->set_grad_norm(r.grad().global_norm());
    }
    if (r.scalars().has_loss()) {
      rank->set_has_loss(true);
      rank->set_loss(r.scalars().loss());
    }
    if (r.has_scalars()) {
      out.mutable_scalars()->set_learning_rate(
          std::max(out.scalars().learning_rate(), r.scalars().learning_rate()));
    }
    for (const auto& [name, value] : r.scalars().values()) {
      named[name].first += value;
      named[name].second += 1;
    }
  }
  for (auto& [vocab, s] : by_vocab) {
    *out.mutable_summary()->add_entropy() = std::move(s);
  }
  for (auto& [layer, a] : by_layer) {
    *out.mutable_summary()->add_attention() = std::move(a);
  }
  for (const auto& [name, sum] : named) {
    (*out.mutable_scalars()->mutable_values())[name] = sum.first / sum.second;
  }
  return out;
}

}  // namespace entrowatch::testing
