#include "analysis/step_aggregator.h"

#include <algorithm>
#include <cmath>

namespace entrowatch::analysis {
namespace {

// Bounds the named scalars one step keeps (each report is validated to at
// most ingest's limit; many ranks with different names could add up).
constexpr size_t kMaxScalarsPerStep = 256;

}  // namespace

double Quantile(std::vector<float>& values, double q) {
  if (values.empty()) {
    return 0;
  }
  std::sort(values.begin(), values.end());
  const double pos = q * static_cast<double>(values.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, values.size() - 1);
  const double frac = pos - static_cast<double>(lo);
  return values[lo] + (values[hi] - values[lo]) * frac;
}

bool StepAggregator::Add(ReportContribution c, absl::Duration now) {
  auto it = pending_.find(c.step);
  if (it == pending_.end()) {
    if (has_finalized_ && c.step <= max_finalized_) {
      return false;
    }
    it = pending_.emplace(c.step, PendingStep{}).first;
    it->second.first_seen = now;
    it->second.sum.phase = c.phase;
  }
  PendingStep& p = it->second;
  p.ranks.insert(c.rank);
  p.world_size = std::max(p.world_size, c.world_size);
  ReportContribution& s = p.sum;
  s.entropies.insert(s.entropies.end(), c.entropies.begin(), c.entropies.end());
  s.normalized.insert(s.normalized.end(), c.normalized.begin(), c.normalized.end());
  s.generated.insert(s.generated.end(), c.generated.begin(), c.generated.end());
  s.top1_sum += c.top1_sum;
  s.top1_count += c.top1_count;
  s.surprisal_sum += c.surprisal_sum;
  s.surprisal_count += c.surprisal_count;
  for (auto& [layer, heads] : c.layers) {
    auto& acc = s.layers[layer];
    if (acc.size() < heads.size()) {
      acc.resize(heads.size());
    }
    for (size_t h = 0; h < heads.size(); ++h) {
      acc[h].sum += heads[h].sum;
      acc[h].count += heads[h].count;
    }
  }
  PendingStep::RankAccum& rank = p.per_rank[c.rank];
  rank.tokens += static_cast<int64_t>(c.entropies.size());
  for (float e : c.entropies) {
    rank.entropy_sum += e;
  }
  if (c.has_grad) {
    p.grad_norms.push_back(c.grad_norm);
    rank.has_grad = true;
    rank.grad_norm = c.grad_norm;
  }
  if (c.has_loss) {
    s.loss += c.loss;
    ++p.loss_count;
    rank.loss_sum += c.loss;
    ++rank.loss_count;
  }
  for (const auto& [name, value] : c.scalars) {
    auto it = p.scalar_sums.find(name);
    if (it == p.scalar_sums.end()) {
      if (p.scalar_sums.size() >= kMaxScalarsPerStep) {
        continue;
      }
      it = p.scalar_sums.emplace(name, std::make_pair(0.0, int64_t{0})).first;
    }
    it->second.first += value;
    ++it->second.second;
  }
  for (const auto& [layer, value] : c.max_logits) {
    s.AddMaxLogit(layer, value);
  }
  s.learning_rate = std::max(s.learning_rate, c.learning_rate);

  if (p.ranks.size() >= p.world_size) {
    FinalizeThrough(c.step);
  }
  return true;
}

void StepAggregator::FinalizeThrough(uint64_t step) {
  while (!pending_.empty() && pending_.begin()->first <= step) {
    const uint64_t s = pending_.begin()->first;
    const PendingStep& p = pending_.begin()->second;
    Finalize(s, p.ranks.size() >= p.world_size);
  }
}

void StepAggregator::Sweep(absl::Duration now) {
  uint64_t through = 0;
  bool any = false;
  for (const auto& [step, p] : pending_) {
    if (now - p.first_seen >= options_.step_timeout) {
      through = step;
      any = true;
    }
  }
  if (any) {
    FinalizeThrough(through);
  }
}

void StepAggregator::FinalizeAll() {
  while (!pending_.empty()) {
    const PendingStep& p = pending_.begin()->second;
    Finalize(pending_.begin()->first, p.ranks.size() >= p.world_size);
  }
}

void StepAggregator::Finalize(uint64_t step, bool complete) {
  auto node = pending_.extract(step);
  PendingStep& p = node.mapped();
  ReportContribution& s = p.sum;
  entrowatch::v1::StepSummary out;
  out.set_step(step);
  out.set_phase(s.phase);
  out.set_ranks_reported(static_cast<uint32_t>(p.ranks.size()));
  out.set_world_size(p.world_size);
  out.set_complete(complete);
  const size_t n = s.entropies.size();
  out.set_token_count(n);
  if (n > 0) {
    double sum = 0;
    double norm_sum = 0;
    int64_t high = 0;
    double gen_sum = 0;
    int64_t gen_count = 0;
    for (size_t i = 0; i < n; ++i) {
      sum += s.entropies[i];
      norm_sum += s.normalized[i];
      high += s.normalized[i] >= options_.high_entropy_threshold ? 1 : 0;
      if (s.generated[i]) {
        gen_sum += s.entropies[i];
        ++gen_count;
      }
    }
    out.set_entropy_mean(sum / n);
    out.set_normalized_entropy_mean(norm_sum / n);
    out.set_high_entropy_ratio(static_cast<double>(high) / n);
    if (gen_count > 0) {
      out.set_generated_entropy_mean(gen_sum / gen_count);
      out.set_generated_token_count(gen_count);
    }
    out.set_entropy_p10(Quantile(s.entropies, 0.10));
    out.set_entropy_p50(Quantile(s.entropies, 0.50));
    out.set_entropy_p90(Quantile(s.entropies, 0.90));
  }
  if (s.top1_count > 0) {
    out.set_top1_prob_mean(s.top1_sum / s.top1_count);
  }
  if (s.surprisal_count > 0) {
    out.set_surprisal_mean(s.surprisal_sum / s.surprisal_count);
    out.set_surprisal_count(s.surprisal_count);
  }
  if (!p.grad_norms.empty()) {
    // After all-reduce every rank holds the same global norm: take the
    // maximum and count ranks that disagree beyond float rounding.
    // A non-finite norm on any rank is the step's norm (NON_FINITE evidence).
    double max_norm = *std::max_element(p.grad_norms.begin(), p.grad_norms.end());
    for (double g : p.grad_norms) {
      if (!std::isfinite(g)) {
        max_norm = g;
      }
    }
    uint32_t disagreements = 0;
    for (double g : p.grad_norms) {
      if (std::isfinite(max_norm) && max_norm - g > 1e-6 * std::max(1.0, max_norm)) {
        ++disagreements;
      }
    }
    grad_disagreements_ += disagreements;
    out.set_has_grad_norm(true);
    out.set_grad_norm(max_norm);
    out.set_grad_norm_disagreements(disagreements);
  }
  if (p.loss_count > 0) {
    out.set_has_loss(true);
    out.set_loss(s.loss / p.loss_count);
  }
  out.set_learning_rate(s.learning_rate);
  for (const auto& [name, sum] : p.scalar_sums) {
    (*out.mutable_scalars())[name] = sum.first / static_cast<double>(sum.second);
  }
  if (p.per_rank.size() >= 2) {
    for (const auto& [rank, acc] : p.per_rank) {
      auto* r = out.add_ranks();
      r->set_rank(rank);
      r->set_token_count(static_cast<uint64_t>(acc.tokens));
      if (acc.tokens > 0) {
        r->set_entropy_mean(acc.entropy_sum / static_cast<double>(acc.tokens));
      }
      r->set_has_grad_norm(acc.has_grad);
      r->set_grad_norm(acc.grad_norm);
      if (acc.loss_count > 0) {
        r->set_has_loss(true);
        r->set_loss(acc.loss_sum / static_cast<double>(acc.loss_count));
      }
    }
  }
  for (const auto& [layer, heads] : s.layers) {
    auto* ls = out.add_layers();
    ls->set_layer(layer);
    double mean_sum = 0;
    int counted = 0;
    for (const HeadAccum& h : heads) {
      const double mean = h.count > 0 ? h.sum / h.count : 0;
      ls->add_head_mean_entropy(mean);
      if (h.count > 0) {
        mean_sum += mean;
        ++counted;
      }
    }
    const double layer_mean = counted > 0 ? mean_sum / counted : 0;
    double var = 0;
    for (size_t h = 0; h < heads.size(); ++h) {
      if (heads[h].count > 0) {
        const double d = ls->head_mean_entropy(static_cast<int>(h)) - layer_mean;
        var += d * d;
      }
    }
    ls->set_mean_entropy(layer_mean);
    if (auto it = s.max_logits.find(layer); it != s.max_logits.end()) {
      ls->set_max_logit(it->second);
    }
    ls->set_head_variance(counted > 0 ? var / counted : 0);
  }
  finalized_.push_back(std::move(out));
  if (!has_finalized_ || step > max_finalized_) {
    max_finalized_ = step;
  }
  has_finalized_ = true;
}

void StepAggregator::Reset() {
  pending_.clear();
  finalized_.clear();
  has_finalized_ = false;
  max_finalized_ = 0;
  grad_disagreements_ = 0;
}

std::vector<entrowatch::v1::StepSummary> StepAggregator::TakeFinalized() {
  std::vector<entrowatch::v1::StepSummary> out;
  out.swap(finalized_);
  return out;
}

}  // namespace entrowatch::analysis
