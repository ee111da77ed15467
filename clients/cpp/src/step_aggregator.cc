#include "entrowatch/client/step_aggregator.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"

namespace entrowatch::client {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();
// Steps travel as doubles in the all-gather: exact below 2^53.
constexpr uint64_t kMaxStep = uint64_t{1} << 53;

// The all-gather: each rank's slot.
enum GatherIndex : size_t {
  kValid,
  kStep,
  kPhase,
  kVocab,
  kLayers,
  kHeads,
  kThreshold,
  kTokens,
  kEntropySum,
  kHasGrad,
  kGradNorm,
  kHasLoss,
  kLoss,
  kGatherEnd,
};
static_assert(kGatherEnd == StepAggregator::kGatherWidth);

// The sum all-reduce: these, then the histogram, then per layer the head
// sums and the head counts.
enum SumIndex : size_t {
  kCount,
  kSum,
  kSumSquares,
  kHighCount,
  kGeneratedCount,
  kGeneratedSum,
  kHistogram,
};

// The max all-reduce: these, then one max attention logit per layer.
enum MaxIndex : size_t {
  kMaxEntropy,
  kNegMinEntropy,
  kLearningRate,
  kMaxLogits,
};

}  // namespace

absl::StatusOr<std::unique_ptr<StepAggregator>> StepAggregator::Create(
    Collective* collective, StepAggregatorOptions options, StreamClient* client) {
  if (collective == nullptr) {
    return absl::InvalidArgumentError("StepAggregator: collective is null");
  }
  if (options.vocab_size < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("StepAggregator: vocab_size must be >= 2, got ", options.vocab_size));
  }
  if (!(options.high_entropy_threshold >= 0 && options.high_entropy_threshold <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("StepAggregator: high_entropy_threshold must be in [0, 1], got ",
                     options.high_entropy_threshold));
  }
  if ((options.attention_layers == 0) != (options.attention_heads == 0)) {
    return absl::InvalidArgumentError(
        "StepAggregator: attention_layers and attention_heads must both be 0 or both > 0");
  }
  if (collective->rank() == 0 && client == nullptr) {
    return absl::InvalidArgumentError("StepAggregator: rank 0 needs a StreamClient");
  }
  return std::unique_ptr<StepAggregator>(
      new StepAggregator(collective, std::move(options), client));
}

StepAggregator::StepAggregator(Collective* collective, StepAggregatorOptions options,
                               StreamClient* client)
    : collective_(collective),
      options_(std::move(options)),
      client_(client),
      log_vocab_(std::log(static_cast<double>(options_.vocab_size))) {}

size_t StepAggregator::ReducedWidth() const {
  return kHistogram + kEntropyHistogramBins +
         2 * size_t{options_.attention_layers} * options_.attention_heads;
}

absl::Status StepAggregator::CheckInput(const RankStepInput& input) const {
  if (input.step >= kMaxStep) {
    return absl::InvalidArgumentError(absl::StrCat("step ", input.step, " is >= 2^53"));
  }
  // The daemon's own bound: float32 rounding above ln V is tolerated.
  const double max_h = log_vocab_ + 1e-5 * std::max(1.0, log_vocab_);
  for (size_t i = 0; i < input.token_entropies.size(); ++i) {
    const float h = input.token_entropies[i];
    if (!std::isfinite(h) || h < 0 || h > max_h) {
      return absl::InvalidArgumentError(absl::StrCat("token_entropies[", i, "] = ", h,
                                                     " outside [0, ln(vocab_size ",
                                                     options_.vocab_size, ") = ", log_vocab_, "]"));
    }
  }
  if (!input.generated.empty() && input.generated.size() != input.token_entropies.size()) {
    return absl::InvalidArgumentError(absl::StrCat("generated has ", input.generated.size(),
                                                   " flags for ", input.token_entropies.size(),
                                                   " token entropies (want 0 or one each)"));
  }
  std::vector<bool> seen(options_.attention_layers, false);
  for (size_t b = 0; b < input.attention.size(); ++b) {
    const LayerAttentionInput& layer = input.attention[b];
    if (layer.layer >= options_.attention_layers) {
      return absl::InvalidArgumentError(
          absl::StrCat("attention[", b, "].layer = ", layer.layer,
                       " is not below attention_layers = ", options_.attention_layers));
    }
    if (seen[layer.layer]) {
      return absl::InvalidArgumentError(
          absl::StrCat("attention[", b, "]: layer ", layer.layer, " appears twice"));
    }
    seen[layer.layer] = true;
    if (layer.head_entropy.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("attention[", b, "] has no heads"));
    }
    if (layer.head_entropy.size() > options_.attention_heads) {
      return absl::InvalidArgumentError(
          absl::StrCat("attention[", b, "] has ", layer.head_entropy.size(),
                       " heads, more than attention_heads = ", options_.attention_heads));
    }
    for (size_t h = 0; h < layer.head_entropy.size(); ++h) {
      if (!std::isfinite(layer.head_entropy[h]) || layer.head_entropy[h] < 0) {
        return absl::InvalidArgumentError(absl::StrCat("attention[", b, "].head_entropy[", h,
                                                       "] = ", layer.head_entropy[h],
                                                       " is not a finite entropy >= 0"));
      }
    }
    if (layer.max_logit.has_value() && !std::isfinite(*layer.max_logit)) {
      return absl::InvalidArgumentError(
          absl::StrCat("attention[", b, "].max_logit = ", *layer.max_logit, " is not finite"));
    }
  }
  if (input.learning_rate.has_value() && !std::isfinite(*input.learning_rate)) {
    return absl::InvalidArgumentError(
        absl::StrCat("learning_rate = ", *input.learning_rate, " is not finite"));
  }
  return absl::OkStatus();
}

void StepAggregator::Accumulate(const RankStepInput& input, std::vector<double>* sums,
                                std::vector<double>* maxima) const {
  std::vector<double>& s = *sums;
  std::vector<double>& m = *maxima;
  double* const histogram = s.data() + kHistogram;
  const float threshold = options_.high_entropy_threshold;
  for (size_t i = 0; i < input.token_entropies.size(); ++i) {
    const double h = input.token_entropies[i];
    s[kSum] += h;
    s[kSumSquares] += h * h;
    // As the daemon normalizes a token entropy: float32 of min(1, h / ln V).
    const float normalized = static_cast<float>(std::min(1.0, h / log_vocab_));
    if (threshold > 0 && normalized >= threshold) {
      s[kHighCount] += 1;
    }
    if (!input.generated.empty() && input.generated[i] != 0) {
      s[kGeneratedCount] += 1;
      s[kGeneratedSum] += h;
    }
    const double bin = std::floor(h / log_vocab_ * kEntropyHistogramBins);
    histogram[static_cast<size_t>(std::min<double>(kEntropyHistogramBins - 1, bin))] += 1;
    m[kMaxEntropy] = std::max(m[kMaxEntropy], h);
    m[kNegMinEntropy] = std::max(m[kNegMinEntropy], -h);
  }
  s[kCount] += static_cast<double>(input.token_entropies.size());
  const size_t heads = options_.attention_heads;
  for (const LayerAttentionInput& layer : input.attention) {
    double* const head_sums = histogram + kEntropyHistogramBins + 2 * heads * layer.layer;
    double* const head_counts = head_sums + heads;
    for (size_t h = 0; h < layer.head_entropy.size(); ++h) {
      head_sums[h] += layer.head_entropy[h];
      head_counts[h] += 1;
    }
    if (layer.max_logit.has_value()) {
      double& max_logit = m[kMaxLogits + layer.layer];
      max_logit = std::max<double>(max_logit, *layer.max_logit);
    }
  }
  if (input.learning_rate.has_value()) {
    m[kLearningRate] = *input.learning_rate;
  }
}

absl::StatusOr<v1::Report> StepAggregator::Aggregate(const RankStepInput& input) {
  const int world_size = collective_->world_size();
  const absl::Status local = CheckInput(input);

  double own[kGatherWidth] = {};
  own[kValid] = local.ok() ? 1 : 0;
  own[kStep] = static_cast<double>(std::min(input.step, kMaxStep));
  own[kPhase] = static_cast<double>(input.phase);
  own[kVocab] = options_.vocab_size;
  own[kLayers] = options_.attention_layers;
  own[kHeads] = options_.attention_heads;
  own[kThreshold] = options_.high_entropy_threshold;
  own[kTokens] = static_cast<double>(input.token_entropies.size());
  double entropy_sum = 0;
  for (float h : input.token_entropies) {
    entropy_sum += h;
  }
  own[kEntropySum] = entropy_sum;
  own[kHasGrad] = input.grad_norm.has_value() ? 1 : 0;
  own[kGradNorm] = input.grad_norm.value_or(0);
  own[kHasLoss] = input.loss.has_value() ? 1 : 0;
  own[kLoss] = input.loss.value_or(0);
  std::vector<double> gathered(kGatherWidth * static_cast<size_t>(world_size));
  if (absl::Status s = collective_->AllGather(own, absl::MakeSpan(gathered)); !s.ok()) {
    return s;
  }

  // Every rank sees the same gathered figures, so every rank takes the same
  // branch below and the later collectives stay matched.
  if (!local.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", collective_->rank(), " step ", input.step, ": ", local.message()));
  }
  for (int r = 0; r < world_size; ++r) {
    const double* other = gathered.data() + kGatherWidth * static_cast<size_t>(r);
    if (other[kValid] == 0) {
      return absl::InvalidArgumentError(absl::StrCat("rank ", r, "'s input for step ", other[kStep],
                                                     " was invalid; the step is not reported"));
    }
    if (other[kStep] != own[kStep]) {
      return absl::InvalidArgumentError(absl::StrCat("ranks disagree on the step: rank ",
                                                     collective_->rank(), " has ", input.step,
                                                     ", rank ", r, " has ", other[kStep]));
    }
    for (size_t i : {kVocab, kLayers, kHeads, kThreshold}) {
      if (other[i] != own[i]) {
        return absl::InvalidArgumentError(absl::StrCat(
            "ranks disagree on the StepAggregatorOptions (vocab_size, attention_layers, "
            "attention_heads, high_entropy_threshold): rank ",
            collective_->rank(), " and rank ", r, " differ"));
      }
    }
  }

  std::vector<double> sums(ReducedWidth(), 0.0);
  std::vector<double> maxima(kMaxLogits + options_.attention_layers, kNegInf);
  Accumulate(input, &sums, &maxima);
  if (absl::Status s = collective_->AllReduceSum(absl::MakeSpan(sums)); !s.ok()) {
    return s;
  }
  if (absl::Status s = collective_->AllReduceMax(absl::MakeSpan(maxima)); !s.ok()) {
    return s;
  }
  return BuildReport(input.step, static_cast<v1::Phase>(static_cast<int>(gathered[kPhase])),
                     gathered, sums, maxima);
}

v1::Report StepAggregator::BuildReport(uint64_t step, v1::Phase phase,
                                       absl::Span<const double> gathered,
                                       absl::Span<const double> sums,
                                       absl::Span<const double> maxima) const {
  const int world_size = collective_->world_size();
  v1::Report report;
  report.set_run_id(options_.run_id);
  report.set_rank(0);
  report.set_world_size(static_cast<uint32_t>(world_size));
  report.set_step(step);
  report.set_phase(phase);
  v1::ReportSummary* summary = report.mutable_summary();

  // Sums of whole numbers below 2^53 are exact in double.
  const auto count = static_cast<uint64_t>(sums[kCount]);
  if (count > 0) {
    v1::EntropySummary* entropy = summary->add_entropy();
    entropy->set_vocab_size(options_.vocab_size);
    entropy->set_count(count);
    entropy->set_sum(sums[kSum]);
    entropy->set_sum_squares(sums[kSumSquares]);
    entropy->set_min(static_cast<float>(-maxima[kNegMinEntropy]));
    entropy->set_max(static_cast<float>(maxima[kMaxEntropy]));
    for (int b = 0; b < kEntropyHistogramBins; ++b) {
      entropy->add_histogram(static_cast<uint64_t>(sums[kHistogram + b]));
    }
    entropy->set_high_entropy_threshold(options_.high_entropy_threshold);
    entropy->set_high_entropy_count(static_cast<uint64_t>(sums[kHighCount]));
    entropy->set_generated_count(static_cast<uint64_t>(sums[kGeneratedCount]));
    entropy->set_generated_sum(sums[kGeneratedSum]);
  }

  const size_t heads = options_.attention_heads;
  for (uint32_t layer = 0; layer < options_.attention_layers; ++layer) {
    const double* head_sums = sums.data() + kHistogram + kEntropyHistogramBins + 2 * heads * layer;
    const double* head_counts = head_sums + heads;
    // Heads beyond the last one any rank reported are not part of the layer.
    size_t used = heads;
    while (used > 0 && head_counts[used - 1] == 0) {
      --used;
    }
    // Every reported layer has a head (CheckInput), so this layer was not.
    if (used == 0) {
      continue;
    }
    v1::AttentionSummary* attention = summary->add_attention();
    attention->set_layer(layer);
    for (size_t h = 0; h < used; ++h) {
      attention->add_head_entropy_sum(head_sums[h]);
      attention->add_head_count(static_cast<uint64_t>(head_counts[h]));
    }
    if (maxima[kMaxLogits + layer] > kNegInf) {
      attention->set_max_logit(static_cast<float>(maxima[kMaxLogits + layer]));
    }
  }

  for (int r = 0; r < world_size; ++r) {
    const double* figures = gathered.data() + kGatherWidth * static_cast<size_t>(r);
    v1::RankSummary* rank = summary->add_ranks();
    rank->set_rank(static_cast<uint32_t>(r));
    const auto tokens = static_cast<uint64_t>(figures[kTokens]);
    rank->set_token_count(tokens);
    if (tokens > 0) {
      rank->set_entropy_mean(figures[kEntropySum] / static_cast<double>(tokens));
    }
    if (figures[kHasGrad] != 0) {
      rank->set_has_grad_norm(true);
      rank->set_grad_norm(figures[kGradNorm]);
    }
    if (figures[kHasLoss] != 0) {
      rank->set_has_loss(true);
      rank->set_loss(figures[kLoss]);
    }
  }
  if (maxima[kLearningRate] > kNegInf) {
    report.mutable_scalars()->set_learning_rate(maxima[kLearningRate]);
  }
  return report;
}

absl::Status StepAggregator::ReportStep(const RankStepInput& input) {
  absl::StatusOr<v1::Report> report = Aggregate(input);
  if (!report.ok()) {
    return report.status();
  }
  if (collective_->rank() != 0) {
    return absl::OkStatus();
  }
  if (!client_->Enqueue(*std::move(report))) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "step ", input.step, ": the client's queue is full or closed; the summary was dropped"));
  }
  return absl::OkStatus();
}

}  // namespace entrowatch::client
