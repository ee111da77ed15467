#pragma once

// In-job aggregation: the ranks of a training job combine their figures for
// a step over the job's own communicator (collective.h), and rank 0 alone
// sends one Report whose ReportSummary stands for every rank. The daemon
// computes the same StepSummary from it as from per-rank reports (the
// entropy quantiles within the error stated in EntropySummary.histogram).
//
// Per step, each rank makes three collective calls:
//   1. AllGather of kGatherWidth doubles: the rank's own figures (token
//      count, entropy sum, grad norm, loss; plus step, layout and validity so
//      that every rank agrees whether to go on);
//   2. AllReduceSum of ReducedWidth() doubles: count, sum, sum of squares,
//      high-entropy and generated counts, the 2048-bin histogram over
//      [0, ln V], per-layer per-head entropy sums and counts;
//   3. AllReduceMax of 3 + attention_layers doubles: max and -min entropy,
//      learning rate, per-layer max attention logit.
// When any rank's input is invalid or the ranks disagree (step, layout),
// calls 2 and 3 are skipped on every rank and every rank gets the error.
//
//   StepAggregatorOptions options;
//   options.run_id = "gpt-small-7";
//   options.vocab_size = 152064;
//   options.attention_layers = 24;
//   options.attention_heads = 16;
//   auto collective = NcclCollective::Create(comm, stream).value();
//   auto aggregator = StepAggregator::Create(collective.get(), options,
//                                            rank == 0 ? client.get() : nullptr).value();
//   ...
//   RankStepInput in;
//   in.step = step;
//   in.token_entropies = entropies;  // this rank's, nats
//   in.grad_norm = grad_norm;
//   in.loss = loss;
//   absl::Status s = aggregator->ReportStep(in);  // every rank, every step

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "entrowatch/client/collective.h"
#include "entrowatch/client/stream_client.h"
#include "entrowatch/v1/entrowatch.pb.h"

namespace entrowatch::client {

// EntropySummary.histogram has exactly this many bins (protocol version 1).
inline constexpr int kEntropyHistogramBins = 2048;

// Identical on every rank (checked at each step).
struct StepAggregatorOptions {
  std::string run_id;
  // V: every token entropy lies in [0, ln V]. Required, >= 2.
  uint32_t vocab_size = 0;
  // The daemon's aggregation.high_entropy_threshold (normalized entropy);
  // with the same value the daemon's high_entropy_ratio is exact. 0 = not
  // counted (the daemon then estimates it from the histogram).
  float high_entropy_threshold = 0.8f;
  // Attention heads summarized: layers 0..attention_layers-1 with up to
  // attention_heads heads each. 0 = no attention figures.
  uint32_t attention_layers = 0;
  uint32_t attention_heads = 0;
};

// Attention entropies of one layer on this rank (as AttentionEntropies).
struct LayerAttentionInput {
  uint32_t layer = 0;
  absl::Span<const float> head_entropy;  // nats, one per head (1 to attention_heads)
  std::optional<float> max_logit;
};

// One rank's figures for one step. The spans must stay valid for the call.
struct RankStepInput {
  uint64_t step = 0;
  v1::Phase phase = v1::TRAIN;              // rank 0's is sent
  absl::Span<const float> token_entropies;  // nats, in [0, ln V]
  absl::Span<const uint8_t> generated;      // empty, or nonzero = GENERATED, one per entropy
  std::vector<LayerAttentionInput> attention;
  std::optional<double> grad_norm;  // may be NaN/Inf: evidence for NON_FINITE
  std::optional<double> loss;       // likewise
  std::optional<double> learning_rate;
};

// Not thread-safe: one thread per rank calls it, as it calls the collective.
class StepAggregator {
 public:
  // Doubles each rank contributes to the all-gather.
  static constexpr size_t kGatherWidth = 13;

  // `collective` must outlive the aggregator. `client` is used on rank 0
  // only (required there) and may be null on the other ranks.
  static absl::StatusOr<std::unique_ptr<StepAggregator>> Create(Collective* collective,
                                                                StepAggregatorOptions options,
                                                                StreamClient* client);

  StepAggregator(const StepAggregator&) = delete;
  StepAggregator& operator=(const StepAggregator&) = delete;

  // Collective: every rank calls it once per step, in step order. Returns the
  // job's Report for the step, identical on every rank: rank 0 of
  // world_size, the pooled EntropySummary (when any rank had tokens), one
  // AttentionSummary per layer that any rank reported, one RankSummary per
  // rank, and the largest learning rate. InvalidArgument when this rank's
  // input is invalid (naming the field) or another rank's was, or when the
  // ranks disagree on the step or the options; the collective's own error
  // when it fails.
  absl::StatusOr<v1::Report> Aggregate(const RankStepInput& input);

  // Aggregate(), then rank 0 enqueues the report. ResourceExhausted on rank 0
  // when the client's queue dropped it.
  absl::Status ReportStep(const RankStepInput& input);

  // Doubles of the sum all-reduce for these options.
  size_t ReducedWidth() const;

 private:
  StepAggregator(Collective* collective, StepAggregatorOptions options, StreamClient* client);

  absl::Status CheckInput(const RankStepInput& input) const;
  // Adds this rank's input to the sum and max vectors.
  void Accumulate(const RankStepInput& input, std::vector<double>* sums,
                  std::vector<double>* maxima) const;
  v1::Report BuildReport(uint64_t step, v1::Phase phase, absl::Span<const double> gathered,
                         absl::Span<const double> sums, absl::Span<const double> maxima) const;

  Collective* const collective_;
  const StepAggregatorOptions options_;
  StreamClient* const client_;
  const double log_vocab_;
};

}  // namespace entrowatch::client
