#include "analysis/step_aggregator.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace entrowatch::analysis {
namespace {

// Bounds the named scalars one step keeps (each report is validated to at
// most ingest's limit; many ranks with different names could add up).
constexpr size_t kMaxScalarsPerStep = 256;

// Bounds the vocabularies whose histograms one step keeps apart; summaries of
// further vocabularies are re-binned onto the largest one kept.
constexpr size_t kMaxVocabulariesPerStep = 8;

using entrowatch::v1::EntropySummary;

// Adds the counts of `histogram` (equal-width bins over [0, from_log_v]) into
// `into` (bins over [0, into_log_v]), each bin at its centre: a value moves by
// at most half a source bin.
void AddRebinned(absl::Span<const uint64_t> histogram, double from_log_v, double into_log_v,
                 std::vector<uint64_t>& into) {
  const double width = from_log_v / static_cast<double>(histogram.size());
  for (size_t i = 0; i < histogram.size(); ++i) {
    if (histogram[i] != 0) {
      into[EntropyBin((static_cast<double>(i) + 0.5) * width, into_log_v)] += histogram[i];
    }
  }
}

double LogVocab(uint32_t vocab_size) { return std::log(static_cast<double>(vocab_size)); }

}  // namespace

EntropySummary SummarizeEntropies(absl::Span<const float> values, uint32_t vocab_size,
                                  double high_entropy_threshold,
                                  const std::vector<bool>& generated) {
  EntropySummary s;
  s.set_vocab_size(vocab_size);
  s.set_high_entropy_threshold(static_cast<float>(high_entropy_threshold));
  if (values.empty()) {
    return s;
  }
  const double log_v = LogVocab(vocab_size);
  std::vector<uint64_t> histogram(kEntropyHistogramBins, 0);
  double sum = 0;
  double sum_squares = 0;
  double generated_sum = 0;
  uint64_t generated_count = 0;
  uint64_t high = 0;
  float lo = values[0];
  float hi = values[0];
  for (size_t i = 0; i < values.size(); ++i) {
    const double h = values[i];
    sum += h;
    sum_squares += h * h;
    lo = std::min(lo, values[i]);
    hi = std::max(hi, values[i]);
    ++histogram[EntropyBin(h, log_v)];
    if (high_entropy_threshold > 0 &&
        static_cast<float>(std::min(1.0, h / log_v)) >= high_entropy_threshold) {
      ++high;
    }
    if (!generated.empty() && generated[i]) {
      generated_sum += h;
      ++generated_count;
    }
  }
  s.set_count(values.size());
  s.set_sum(sum);
  s.set_sum_squares(sum_squares);
  s.set_min(lo);
  s.set_max(hi);
  s.mutable_histogram()->Assign(histogram.begin(), histogram.end());
  s.set_high_entropy_count(high);
  s.set_generated_count(generated_count);
  s.set_generated_sum(generated_sum);
  return s;
}

void MergeEntropySummary(const EntropySummary& from, EntropySummary* into) {
  if (into->vocab_size() == 0) {
    into->set_vocab_size(from.vocab_size());
  }
  if (from.count() == 0) {
    return;
  }
  if (into->count() == 0) {
    into->set_min(from.min());
    into->set_max(from.max());
    into->set_high_entropy_threshold(from.high_entropy_threshold());
    into->set_high_entropy_count(from.high_entropy_count());
  } else {
    into->set_min(std::min(into->min(), from.min()));
    into->set_max(std::max(into->max(), from.max()));
    if (into->high_entropy_threshold() == from.high_entropy_threshold()) {
      into->set_high_entropy_count(into->high_entropy_count() + from.high_entropy_count());
    } else {
      into->set_high_entropy_threshold(0);
      into->set_high_entropy_count(0);
    }
  }
  if (into->histogram_size() < from.histogram_size()) {
    into->mutable_histogram()->Resize(from.histogram_size(), 0);
  }
  uint64_t* bins = into->mutable_histogram()->mutable_data();
  for (int i = 0; i < from.histogram_size(); ++i) {
    bins[i] += from.histogram(i);
  }
  into->set_count(into->count() + from.count());
  into->set_sum(into->sum() + from.sum());
  into->set_sum_squares(into->sum_squares() + from.sum_squares());
  into->set_generated_count(into->generated_count() + from.generated_count());
  into->set_generated_sum(into->generated_sum() + from.generated_sum());
  into->set_top1_count(into->top1_count() + from.top1_count());
  into->set_top1_prob_sum(into->top1_prob_sum() + from.top1_prob_sum());
  into->set_surprisal_count(into->surprisal_count() + from.surprisal_count());
  into->set_surprisal_sum(into->surprisal_sum() + from.surprisal_sum());
}

double HighEntropyCount(const EntropySummary& s, double threshold) {
  if (s.count() == 0) {
    return 0;
  }
  if (s.high_entropy_threshold() > 0 &&
      s.high_entropy_threshold() == static_cast<float>(threshold)) {
    return static_cast<double>(s.high_entropy_count());
  }
  const double log_v = LogVocab(s.vocab_size());
  if (std::min(1.0, s.max() / log_v) < threshold) {
    return 0;
  }
  if (std::min(1.0, s.min() / log_v) >= threshold) {
    return static_cast<double>(s.count());
  }
  const double edge = threshold * s.histogram_size();
  const int straddling = static_cast<int>(std::floor(edge));
  double high = 0;
  for (int i = std::max(0, straddling); i < s.histogram_size(); ++i) {
    const double above = i == straddling ? (straddling + 1) - edge : 1.0;
    high += above * static_cast<double>(s.histogram(i));
  }
  return high;
}

double HistogramQuantile(absl::Span<const uint64_t> histogram, double log_v, double min, double max,
                         double q) {
  uint64_t total = 0;
  for (uint64_t c : histogram) {
    total += c;
  }
  if (total == 0) {
    return 0;
  }
  const double width = log_v / static_cast<double>(histogram.size());
  // The k-th smallest value (0-based), spread uniformly within its bin.
  auto order_statistic = [&](uint64_t k) {
    uint64_t before = 0;
    size_t b = 0;
    while (b + 1 < histogram.size() && before + histogram[b] <= k) {
      before += histogram[b];
      ++b;
    }
    const double within = (static_cast<double>(k - before) + 0.5) /
                          static_cast<double>(std::max<uint64_t>(1, histogram[b]));
    return std::clamp((static_cast<double>(b) + within) * width, min, max);
  };
  const double pos = q * static_cast<double>(total - 1);
  const uint64_t lo = static_cast<uint64_t>(std::floor(pos));
  const uint64_t hi = std::min(lo + 1, total - 1);
  const double a = order_statistic(lo);
  return a + (order_statistic(hi) - a) * (pos - static_cast<double>(lo));
}

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
  AddSummary(c.summary, p);

  // A report stands for its own rank, or for the ranks its summary lists
  // (a job that aggregated itself); each rank's figures pool alike.
  auto add_rank = [&p](uint32_t rank, int64_t tokens, double entropy_sum, bool has_grad,
                       double grad_norm, bool has_loss, double loss) {
    p.ranks.insert(rank);
    PendingStep::RankAccum& acc = p.per_rank[rank];
    acc.tokens += tokens;
    acc.entropy_sum += entropy_sum;
    if (has_grad) {
      p.grad_norms.push_back(grad_norm);
      acc.has_grad = true;
      acc.grad_norm = grad_norm;
    }
    if (has_loss) {
      p.sum.loss += loss;
      ++p.loss_count;
      acc.loss_sum += loss;
      ++acc.loss_count;
    }
  };
  const auto& listed = c.summary.ranks();
  if (listed.empty()) {
    int64_t tokens = static_cast<int64_t>(c.entropies.size());
    double entropy_sum = 0;
    for (float e : c.entropies) {
      entropy_sum += e;
    }
    for (const EntropySummary& e : c.summary.entropy()) {
      tokens += static_cast<int64_t>(e.count());
      entropy_sum += e.sum();
    }
    add_rank(c.rank, tokens, entropy_sum, c.has_grad, c.grad_norm, c.has_loss, c.loss);
  }
  for (const entrowatch::v1::RankSummary& r : listed) {
    const auto tokens = static_cast<int64_t>(r.token_count());
    add_rank(r.rank(), tokens, r.entropy_mean() * static_cast<double>(tokens), r.has_grad_norm(),
             r.grad_norm(), r.has_loss(), r.loss());
  }
  // An aggregate's named scalars are means over the ranks it lists.
  const int64_t weight = listed.empty() ? 1 : listed.size();
  for (const auto& [name, value] : c.scalars) {
    auto it = p.scalar_sums.find(name);
    if (it == p.scalar_sums.end()) {
      if (p.scalar_sums.size() >= kMaxScalarsPerStep) {
        continue;
      }
      it = p.scalar_sums.emplace(name, std::make_pair(0.0, int64_t{0})).first;
    }
    it->second.first += value * static_cast<double>(weight);
    it->second.second += weight;
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

void StepAggregator::AddSummary(const entrowatch::v1::ReportSummary& summary, PendingStep& p) {
  ReportContribution& s = p.sum;
  for (const EntropySummary& e : summary.entropy()) {
    p.summary_high += HighEntropyCount(e, options_.high_entropy_threshold);
    s.top1_sum += e.top1_prob_sum();
    s.top1_count += static_cast<int64_t>(e.top1_count());
    s.surprisal_sum += e.surprisal_sum();
    s.surprisal_count += static_cast<int64_t>(e.surprisal_count());
    auto it = p.summaries.find(e.vocab_size());
    if (it != p.summaries.end() || p.summaries.size() < kMaxVocabulariesPerStep) {
      MergeEntropySummary(e, &p.summaries[e.vocab_size()]);
      continue;
    }
    EntropySummary& largest = p.summaries.rbegin()->second;
    EntropySummary rebinned = e;
    rebinned.set_vocab_size(largest.vocab_size());
    std::vector<uint64_t> bins(kEntropyHistogramBins, 0);
    AddRebinned(e.histogram(), LogVocab(e.vocab_size()), LogVocab(largest.vocab_size()), bins);
    rebinned.mutable_histogram()->Assign(bins.begin(), bins.end());
    MergeEntropySummary(rebinned, &largest);
  }
  for (const entrowatch::v1::AttentionSummary& a : summary.attention()) {
    auto& heads = s.layers[a.layer()];
    const size_t n = static_cast<size_t>(std::min(a.head_entropy_sum_size(), a.head_count_size()));
    heads.resize(std::max(heads.size(), n));
    for (size_t h = 0; h < n; ++h) {
      heads[h].sum += a.head_entropy_sum(static_cast<int>(h));
      heads[h].count += static_cast<int64_t>(a.head_count(static_cast<int>(h)));
    }
    if (a.has_max_logit()) {
      s.AddMaxLogit(a.layer(), a.max_logit());
    }
  }
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
  FinalizeTokens(p, out);
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

void StepAggregator::FinalizeTokens(PendingStep& p, entrowatch::v1::StepSummary& out) const {
  ReportContribution& s = p.sum;
  const size_t raw = s.entropies.size();
  uint64_t summarized = 0;
  for (const auto& [vocab, e] : p.summaries) {
    summarized += e.count();
  }
  const uint64_t n = raw + summarized;
  out.set_token_count(n);
  if (n == 0) {
    return;
  }
  double sum = 0;
  double norm_sum = 0;
  double high = p.summary_high;
  double gen_sum = 0;
  uint64_t gen_count = 0;
  for (size_t i = 0; i < raw; ++i) {
    sum += s.entropies[i];
    norm_sum += s.normalized[i];
    high += s.normalized[i] >= options_.high_entropy_threshold ? 1 : 0;
    if (s.generated[i]) {
      gen_sum += s.entropies[i];
      ++gen_count;
    }
  }
  for (const auto& [vocab, e] : p.summaries) {
    sum += e.sum();
    // Each value's normalized entropy is capped at 1 (float rounding above ln V).
    norm_sum += std::min(e.sum() / LogVocab(vocab), static_cast<double>(e.count()));
    gen_sum += e.generated_sum();
    gen_count += e.generated_count();
  }
  const double count = static_cast<double>(n);
  out.set_entropy_mean(sum / count);
  out.set_normalized_entropy_mean(norm_sum / count);
  out.set_high_entropy_ratio(high / count);
  if (gen_count > 0) {
    out.set_generated_entropy_mean(gen_sum / static_cast<double>(gen_count));
    out.set_generated_token_count(gen_count);
  }
  if (summarized == 0) {
    out.set_entropy_p10(Quantile(s.entropies, 0.10));
    out.set_entropy_p50(Quantile(s.entropies, 0.50));
    out.set_entropy_p90(Quantile(s.entropies, 0.90));
    return;
  }
  // Raw values and summaries pool on the histogram grid of the largest
  // vocabulary; the quantiles are read from it within one bin width.
  const double log_v = LogVocab(p.summaries.rbegin()->first);
  std::vector<uint64_t> bins(kEntropyHistogramBins, 0);
  double lo = std::numeric_limits<double>::infinity();
  double hi = -std::numeric_limits<double>::infinity();
  for (const auto& [vocab, e] : p.summaries) {
    if (e.count() > 0) {
      AddRebinned(e.histogram(), LogVocab(vocab), log_v, bins);
      lo = std::min<double>(lo, e.min());
      hi = std::max<double>(hi, e.max());
    }
  }
  for (float h : s.entropies) {
    ++bins[EntropyBin(h, log_v)];
    lo = std::min<double>(lo, h);
    hi = std::max<double>(hi, h);
  }
  out.set_entropy_p10(HistogramQuantile(bins, log_v, lo, hi, 0.10));
  out.set_entropy_p50(HistogramQuantile(bins, log_v, lo, hi, 0.50));
  out.set_entropy_p90(HistogramQuantile(bins, log_v, lo, hi, 0.90));
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
