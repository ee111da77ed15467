#include "trace_summary.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"

namespace entrowatch::analysis::testing {
namespace {

namespace v1 = ::entrowatch::v1;

// Linear interpolation between closest ranks of a sorted sample.
double Quantile(const std::vector<double>& sorted, double q) {
  const double position = q * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(position));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (position - static_cast<double>(lo)) * (sorted[hi] - sorted[lo]);
}

v1::StepSummary Summarize(const std::vector<const v1::Report*>& reports,
                          double high_entropy_threshold) {
  v1::StepSummary s;
  s.set_step(reports.front()->step());
  s.set_phase(reports.front()->phase() == v1::PHASE_UNSPECIFIED ? v1::TRAIN
                                                                : reports.front()->phase());
  s.set_ranks_reported(static_cast<uint32_t>(reports.size()));
  s.set_world_size(std::max<uint32_t>(1, reports.front()->world_size()));
  s.set_complete(s.ranks_reported() >= s.world_size());

  std::vector<double> entropies;
  double normalized_sum = 0;
  bool normalized_known = true;
  int high = 0;
  double generated_sum = 0;
  uint64_t generated = 0;
  double grad_sum = 0;
  int grads = 0;
  // layer -> per-head sums and counts
  std::map<uint32_t, std::pair<std::vector<double>, int>> heads;
  std::map<uint32_t, double> max_logits;
  std::map<std::string, std::pair<double, int>> scalar_sums;
  std::map<uint32_t, v1::RankSummary> ranks;
  double loss_sum = 0;
  int losses = 0;
  for (const v1::Report* r : reports) {
    for (const auto& block : r->token_entropies()) {
      const double log_v = block.vocab_size() > 1 ? std::log(block.vocab_size()) : 0;
      for (int i = 0; i < block.values_size(); ++i) {
        const double h = block.values(i);
        entropies.push_back(h);
        if (log_v > 0) {
          normalized_sum += h / log_v;
          high += h / log_v >= high_entropy_threshold ? 1 : 0;
        } else {
          normalized_known = false;
        }
        if (i < block.token_kinds_size() && block.token_kinds(i) == v1::GENERATED) {
          generated_sum += h;
          ++generated;
        }
      }
    }
    if (r->has_grad()) {
      grad_sum += r->grad().global_norm();
      ++grads;
    }
    if (r->has_scalars()) {
      if (r->scalars().has_loss()) {
        s.set_has_loss(true);
        loss_sum += r->scalars().loss();
        ++losses;
      }
      s.set_learning_rate(std::max(s.learning_rate(), r->scalars().learning_rate()));
      for (const auto& [name, value] : r->scalars().values()) {
        scalar_sums[name].first += value;
        ++scalar_sums[name].second;
      }
    }
    // Per-rank figures, as the step aggregator keeps them.
    v1::RankSummary rank;
    rank.set_rank(r->rank());
    double rank_sum = 0;
    for (const auto& block : r->token_entropies()) {
      for (float h : block.values()) {
        rank_sum += h;
      }
      rank.set_token_count(rank.token_count() + block.values_size());
    }
    if (rank.token_count() > 0) {
      rank.set_entropy_mean(rank_sum / static_cast<double>(rank.token_count()));
    }
    if (r->has_grad()) {
      rank.set_has_grad_norm(true);
      rank.set_grad_norm(r->grad().global_norm());
    }
    if (r->scalars().has_loss()) {
      rank.set_has_loss(true);
      rank.set_loss(r->scalars().loss());
    }
    ranks[r->rank()] = rank;
    for (const auto& a : r->attention_entropies()) {
      if (a.has_max_logit()) {
        auto [it, inserted] = max_logits.emplace(a.layer(), a.max_logit());
        if (!inserted) {
          it->second = std::max<double>(it->second, a.max_logit());
        }
      }
      auto& [sums, count] = heads[a.layer()];
      sums.resize(std::max<size_t>(sums.size(), a.head_entropy_size()), 0.0);
      for (int h = 0; h < a.head_entropy_size(); ++h) {
        sums[h] += a.head_entropy(h);
      }
      ++count;
    }
  }
  s.set_token_count(entropies.size());
  if (!entropies.empty()) {
    double sum = 0;
    for (double h : entropies) {
      sum += h;
    }
    const double n = static_cast<double>(entropies.size());
    s.set_entropy_mean(sum / n);
    std::sort(entropies.begin(), entropies.end());
    s.set_entropy_p10(Quantile(entropies, 0.1));
    s.set_entropy_p50(Quantile(entropies, 0.5));
    s.set_entropy_p90(Quantile(entropies, 0.9));
    if (normalized_known) {
      s.set_normalized_entropy_mean(normalized_sum / n);
      s.set_high_entropy_ratio(high / n);
    }
  }
  if (generated > 0) {
    s.set_generated_entropy_mean(generated_sum / static_cast<double>(generated));
    s.set_generated_token_count(generated);
  }
  if (grads > 0) {
    s.set_has_grad_norm(true);
    s.set_grad_norm(grad_sum / grads);
  }
  if (losses > 0) {
    s.set_loss(loss_sum / losses);
  }
  for (const auto& [name, sum] : scalar_sums) {
    (*s.mutable_scalars())[name] = sum.first / sum.second;
  }
  if (ranks.size() >= 2) {
    for (const auto& [r, rank] : ranks) {
      *s.add_ranks() = rank;
    }
  }
  for (const auto& [layer, entry] : heads) {
    const auto& [sums, count] = entry;
    v1::LayerSummary* l = s.add_layers();
    l->set_layer(layer);
    double mean = 0;
    for (double v : sums) {
      l->add_head_mean_entropy(v / count);
      mean += v / count;
    }
    mean /= static_cast<double>(sums.size());
    double variance = 0;
    for (double v : l->head_mean_entropy()) {
      variance += (v - mean) * (v - mean);
    }
    l->set_mean_entropy(mean);
    l->set_head_variance(variance / static_cast<double>(sums.size()));
    if (auto it = max_logits.find(layer); it != max_logits.end()) {
      l->set_max_logit(it->second);
    }
  }
  return s;
}

}  // namespace

absl::StatusOr<std::vector<v1::Report>> ReadTrace(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read ", path));
  }
  std::vector<v1::Report> reports;
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty()) {
      continue;
    }
    v1::Report r;
    const auto status = google::protobuf::util::JsonStringToMessage(line, &r);
    if (!status.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", number, ": ", status.ToString()));
    }
    reports.push_back(std::move(r));
  }
  return reports;
}

std::vector<v1::StepSummary> SummarizeSteps(const std::vector<v1::Report>& reports,
                                            double high_entropy_threshold) {
  std::vector<v1::StepSummary> out;
  std::vector<const v1::Report*> group;
  for (const auto& r : reports) {
    if (!group.empty() && group.front()->step() != r.step()) {
      out.push_back(Summarize(group, high_entropy_threshold));
      group.clear();
    }
    group.push_back(&r);
  }
  if (!group.empty()) {
    out.push_back(Summarize(group, high_entropy_threshold));
  }
  return out;
}

}  // namespace entrowatch::analysis::testing
