#pragma once

// One case per ingest validation rule: a mutation of a valid report and the
// text its INVALID_ARGUMENT must contain. Shared by the unit test and the
// integration test that sends every case to the real daemon. The limits the
// cases assume: max_rows_per_report 8, max_elements_per_report 1<<20.

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "analysis/step_aggregator.h"
#include "daemon/report_builder.h"

namespace entrowatch::testing {

struct ValidationCase {
  std::string name;
  std::function<void(v1::Report*)> mutate;
  std::string expected;
};

inline constexpr int64_t kCaseMaxRows = 8;
inline constexpr int64_t kCaseMaxElements = 1 << 20;

// A report that passes every rule.
inline v1::Report ValidBaseReport(const std::string& run = "valid-run") {
  v1::Report r = MakeReport(run, 3, 4, 1, 2);
  r.set_phase(v1::TRAIN);
  v1::LogitsBlock* logits = AddLogits(&r, 2, 4, {1, 2, 3, 4, 4, 3, 2, 1});
  logits->set_valid_vocab(4);
  logits->add_target_ids(0);
  logits->add_target_ids(3);
  AddEntropies(&r, {0.5f, 1.0f}, 16);
  v1::AttentionBlock* att = r.add_attention();
  att->set_layer(0);
  att->set_causal(true);
  SetTensor(att->mutable_q(), v1::FLOAT32, {2, 2, 4}, std::vector<float>(16, 0.1f));
  SetTensor(att->mutable_k(), v1::FLOAT32, {1, 3, 4}, std::vector<float>(12, 0.2f));
  v1::AttentionEntropies* ae = r.add_attention_entropies();
  ae->set_layer(1);
  ae->add_head_entropy(1.0f);
  r.mutable_grad()->set_global_norm(0.5);
  (*r.mutable_grad()->mutable_layer_norms())["h.0"] = 0.1;
  r.mutable_scalars()->set_loss(2.0);
  r.mutable_scalars()->set_learning_rate(1e-3);
  return r;
}

// Adds a valid summary: entropies {0.5, 1.5, 2.0} of vocabulary 16 (2.0
// generated; 2 at or above the normalized threshold 0.5) and layer 2's two
// heads, each a sum over two entropies.
inline void AddValidSummary(v1::Report* r) {
  v1::EntropySummary* e = r->mutable_summary()->add_entropy();
  e->set_vocab_size(16);
  e->mutable_histogram()->Resize(analysis::kEntropyHistogramBins, 0);
  for (double h : {0.5, 1.5, 2.0}) {
    e->set_histogram(analysis::EntropyBin(h, std::log(16.0)),
                     e->histogram(analysis::EntropyBin(h, std::log(16.0))) + 1);
  }
  e->set_count(3);
  e->set_sum(4.0);
  e->set_sum_squares(6.5);
  e->set_min(0.5f);
  e->set_max(2.0f);
  e->set_high_entropy_threshold(0.5f);
  e->set_high_entropy_count(2);
  e->set_generated_count(1);
  e->set_generated_sum(2.0);
  v1::AttentionSummary* a = r->mutable_summary()->add_attention();
  a->set_layer(2);
  a->add_head_entropy_sum(3.0);
  a->add_head_entropy_sum(2.0);
  a->add_head_count(2);
  a->add_head_count(2);
}

// Turns the report into a job-level aggregate of ranks 0 and 1 (world size 2)
// carrying its 7 tokens: 2 logits rows, 2 raw entropies, 3 summarized.
inline void AddValidRankList(v1::Report* r) {
  AddValidSummary(r);
  r->clear_grad();
  r->mutable_scalars()->clear_loss();
  for (uint32_t rank : {0u, 1u}) {
    v1::RankSummary* s = r->mutable_summary()->add_ranks();
    s->set_rank(rank);
    s->set_token_count(rank == 0 ? 4 : 3);
    s->set_entropy_mean(1.0);
    s->set_has_grad_norm(true);
    s->set_grad_norm(0.5);
    s->set_has_loss(true);
    s->set_loss(std::nan(""));
  }
}

// Rules of Report.summary.
inline std::vector<ValidationCase> SummaryValidationCases() {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  auto entropy = [](v1::Report* r) {
    AddValidSummary(r);
    return r->mutable_summary()->mutable_entropy(0);
  };
  auto attention = [](v1::Report* r) {
    AddValidSummary(r);
    return r->mutable_summary()->mutable_attention(0);
  };
  auto ranks = [](v1::Report* r) {
    AddValidRankList(r);
    return r->mutable_summary()->mutable_ranks();
  };
  return {
      {"SummaryVocabMissing", [=](v1::Report* r) { entropy(r)->set_vocab_size(1); },
       "summary.entropy[0].vocab_size: required (>= 2)"},
      {"SummaryHistogramSize",
       [=](v1::Report* r) { entropy(r)->mutable_histogram()->Truncate(10); },
       "summary.entropy[0].histogram: has 10 bins, expected 2048 (or none when count is 0)"},
      {"SummaryHistogramSum", [=](v1::Report* r) { entropy(r)->set_count(4); },
       "summary.entropy[0].histogram: bins sum to 3, but count is 4"},
      {"SummaryHistogramOutsideMinMax",
       [=](v1::Report* r) {
         v1::EntropySummary* e = entropy(r);
         e->set_histogram(analysis::EntropyBin(0.5, std::log(16.0)), 0);
         e->set_histogram(0, 1);
       },
       "summary.entropy[0].histogram: non-empty bins 0..1477 do not match min 0.5 (bin 369)"},
      {"SummaryMinAboveMax", [=](v1::Report* r) { entropy(r)->set_min(3.0f); },
       "summary.entropy[0].min: min 3 and max 2 must satisfy 0 <= min <= max"},
      {"SummaryMaxAboveLogVocab", [=](v1::Report* r) { entropy(r)->set_max(2.9f); },
       "log(vocab_size 16)"},
      {"SummaryNanSum", [=](v1::Report* r) { entropy(r)->set_sum(nan); },
       "summary.entropy[0].sum: nan is not within count x [min, max] = [1.5, 6]"},
      {"SummarySumOutOfRange", [=](v1::Report* r) { entropy(r)->set_sum(100); },
       "summary.entropy[0].sum: 100 is not within"},
      {"SummarySquaresMissing", [=](v1::Report* r) { entropy(r)->set_sum_squares(0); },
       "summary.entropy[0].sum_squares: 0 is not within [sum^2 / count, count x max^2]"},
      {"SummaryThresholdAboveOne",
       [=](v1::Report* r) { entropy(r)->set_high_entropy_threshold(1.5f); },
       "summary.entropy[0].high_entropy_threshold: must be in [0, 1] (0 = not counted), got 1.5"},
      {"SummaryHighCountAboveCount", [=](v1::Report* r) { entropy(r)->set_high_entropy_count(4); },
       "summary.entropy[0].high_entropy_count: 4 must be at most count 3"},
      {"SummaryHighCountWithoutThreshold",
       [=](v1::Report* r) { entropy(r)->set_high_entropy_threshold(0); },
       "summary.entropy[0].high_entropy_count: 2 must be at most count 3, and 0 when"},
      {"SummaryGeneratedAboveCount", [=](v1::Report* r) { entropy(r)->set_generated_count(5); },
       "summary.entropy[0].generated_count: 5 exceeds count 3"},
      {"SummaryGeneratedSum", [=](v1::Report* r) { entropy(r)->set_generated_sum(-1); },
       "summary.entropy[0].generated_sum: -1 is not within"},
      {"SummaryTop1AboveOne",
       [=](v1::Report* r) {
         entropy(r)->set_top1_count(1);
         r->mutable_summary()->mutable_entropy(0)->set_top1_prob_sum(2);
       },
       "summary.entropy[0].top1_prob_sum: 2 is not within [0, top1_count]"},
      {"SummaryNegativeSurprisal", [=](v1::Report* r) { entropy(r)->set_surprisal_sum(-2); },
       "summary.entropy[0].surprisal_sum: must be finite and >= 0, got -2"},
      {"SummaryEmptyWithSums",
       [=](v1::Report* r) {
         v1::EntropySummary* e = entropy(r);
         e->clear_histogram();
         e->set_count(0);
       },
       "summary.entropy[0]: count is 0, but sums, min, max or other counts are not"},
      {"SummaryVocabTwice",
       [=](v1::Report* r) {
         const v1::EntropySummary copy = *entropy(r);
         *r->mutable_summary()->add_entropy() = copy;
       },
       "summary.entropy[1].vocab_size: 16 is already summarized in summary.entropy[0]"},
      {"TooManyEntropySummaries",
       [](v1::Report* r) {
         for (uint32_t v = 2; v < 19; ++v) {
           r->mutable_summary()->add_entropy()->set_vocab_size(v);
         }
       },
       "summary.entropy: 17 summaries, at most 16"},
      {"AttentionSummaryCountsMismatch",
       [=](v1::Report* r) { attention(r)->mutable_head_count()->RemoveLast(); },
       "summary.attention[0].head_count: has 1 entries, expected one per head (2)"},
      {"AttentionSummaryNegative",
       [=](v1::Report* r) { attention(r)->set_head_entropy_sum(1, -1); },
       "summary.attention[0].head_entropy_sum[1]: sum -1 over 2 entropies must be finite"},
      {"AttentionSummarySumWithoutCount",
       [=](v1::Report* r) { attention(r)->set_head_count(0, 0); },
       "summary.attention[0].head_entropy_sum[0]"},
      {"AttentionSummaryNoHeads",
       [=](v1::Report* r) {
         attention(r)->clear_head_entropy_sum();
         r->mutable_summary()->mutable_attention(0)->clear_head_count();
       },
       "summary.attention[0].head_entropy_sum: has 0 heads, expected 1 to 4096"},
      {"AttentionSummaryLayerTwice",
       [=](v1::Report* r) {
         const v1::AttentionSummary copy = *attention(r);
         *r->mutable_summary()->add_attention() = copy;
       },
       "summary.attention: layer 2 is summarized twice"},
      {"AttentionSummaryInfiniteMaxLogit",
       [=](v1::Report* r) { attention(r)->set_max_logit(std::numeric_limits<float>::infinity()); },
       "summary.attention[0].max_logit: must be finite, got inf"},
      {"RankListWithOwnGradNorm",
       [=](v1::Report* r) {
         ranks(r);
         r->mutable_grad()->set_global_norm(1);
       },
       "grad: a report with summary.ranks carries each rank's grad norm there"},
      {"RankListWithOwnLoss",
       [=](v1::Report* r) {
         ranks(r);
         r->mutable_scalars()->set_loss(1);
       },
       "scalars.loss: a report with summary.ranks carries each rank's loss there"},
      {"RankListRankTooHigh", [=](v1::Report* r) { ranks(r)->Mutable(1)->set_rank(2); },
       "summary.ranks[1].rank: 2 must be below world_size 2"},
      {"RankListedTwice", [=](v1::Report* r) { ranks(r)->Mutable(1)->set_rank(0); },
       "summary.ranks: rank 0 is listed twice"},
      {"RankListTokenCounts", [=](v1::Report* r) { ranks(r)->Mutable(1)->set_token_count(4); },
       "summary.ranks: token counts sum to 8, but the report carries 7 tokens"},
      {"RankListNegativeMean", [=](v1::Report* r) { ranks(r)->Mutable(0)->set_entropy_mean(-1); },
       "summary.ranks[0].entropy_mean: must be finite and >= 0, got -1"},
      {"RankListNegativeGradNorm", [=](v1::Report* r) { ranks(r)->Mutable(0)->set_grad_norm(-3); },
       "summary.ranks[0].grad_norm: must be >= 0 (or NaN/+Inf), got -3"},
  };
}

inline std::vector<ValidationCase> ValidationCases() {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<ValidationCase> cases = {
      {"EmptyRunId", [](v1::Report* r) { r->set_run_id(""); }, "run_id: must be 1-128"},
      {"LongRunId", [](v1::Report* r) { r->set_run_id(std::string(129, 'a')); },
       "run_id: must be 1-128 characters, got 129"},
      {"RunIdCharacters", [](v1::Report* r) { r->set_run_id("my run/1"); },
       "run_id: may only contain"},
      {"RankNotBelowWorldSize", [](v1::Report* r) { r->set_rank(2); },
       "rank: rank 2 must be below world_size 2"},
      {"RankWithDefaultWorldSize", [](v1::Report* r) { r->set_world_size(0); },
       "must be below world_size 1"},
      {"UnknownPhase", [](v1::Report* r) { r->set_phase(static_cast<v1::Phase>(9)); },
       "phase: unknown phase 9"},
      {"BadTimestamp", [](v1::Report* r) { r->mutable_time()->set_nanos(-1); }, "time.nanos"},
      {"LogitsTensorMissing", [](v1::Report* r) { r->mutable_logits(0)->clear_logits(); },
       "logits[0].logits: missing tensor"},
      {"UnknownDtype",
       [](v1::Report* r) {
         r->mutable_logits(0)->mutable_logits()->set_dtype(static_cast<v1::DType>(7));
       },
       "logits[0].logits.dtype: unknown dtype 7"},
      {"UnspecifiedDtype",
       [](v1::Report* r) {
         r->mutable_logits(0)->mutable_logits()->set_dtype(v1::DTYPE_UNSPECIFIED);
       },
       "unknown dtype 0"},
      {"LogitsNot2D", [](v1::Report* r) { r->mutable_logits(0)->mutable_logits()->add_shape(1); },
       "logits[0].logits.shape: expected 2 dimensions, got 3"},
      {"ZeroDimension",
       [](v1::Report* r) { r->mutable_logits(0)->mutable_logits()->set_shape(1, 0); },
       "logits[0].logits.shape[1]: dimension is zero"},
      {"OverflowingDimensions",
       [](v1::Report* r) {
         r->mutable_logits(0)->mutable_logits()->set_shape(0, uint64_t{1} << 40);
         r->mutable_logits(0)->mutable_logits()->set_shape(1, uint64_t{1} << 40);
       },
       "elements (ingest.max_elements_per_report)"},
      {"DataLengthMismatch",
       [](v1::Report* r) { r->mutable_logits(0)->mutable_logits()->mutable_data()->resize(28); },
       "logits[0].logits.data: length 28 bytes, but shape x FLOAT32 needs 32"},
      {"ValidVocabAboveVocab", [](v1::Report* r) { r->mutable_logits(0)->set_valid_vocab(5); },
       "logits[0].valid_vocab: 5 exceeds the vocabulary 4"},
      {"NegativeTemperature", [](v1::Report* r) { r->mutable_logits(0)->set_temperature(-1.0f); },
       "logits[0].temperature: must be finite and >= 1e-06 (0 = 1.0), got -1"},
      {"TinyTemperature", [](v1::Report* r) { r->mutable_logits(0)->set_temperature(1e-30f); },
       "logits[0].temperature: must be finite and >= 1e-06"},
      {"NanTemperature", [nan](v1::Report* r) { r->mutable_logits(0)->set_temperature(nan); },
       "logits[0].temperature"},
      {"TopPAboveOne",
       [](v1::Report* r) { r->mutable_logits(0)->mutable_sampling()->set_top_p(1.5f); },
       "logits[0].sampling.top_p: must be in [0, 1]"},
      {"TargetCountMismatch",
       [](v1::Report* r) { r->mutable_logits(0)->mutable_target_ids()->RemoveLast(); },
       "logits[0].target_ids: has 1 entries, expected 0 or 2 (one per row)"},
      {"TargetOutOfRange", [](v1::Report* r) { r->mutable_logits(0)->set_target_ids(1, 4); },
       "logits[0].target_ids[1]: target id 4 out of range [0, 4)"},
      {"TargetBeyondValidVocab", [](v1::Report* r) { r->mutable_logits(0)->set_valid_vocab(3); },
       "target id 3 out of range [0, 3)"},
      {"NegativeTarget", [](v1::Report* r) { r->mutable_logits(0)->set_target_ids(0, -1); },
       "target id -1 out of range"},
      {"TokenKindsCountMismatch",
       [](v1::Report* r) { r->mutable_logits(0)->add_token_kinds(v1::PROMPT); },
       "logits[0].token_kinds: has 1 entries, expected 0 or 2 (one per row)"},
      {"UnknownTokenKind",
       [](v1::Report* r) {
         r->mutable_token_entropies(0)->add_token_kinds(v1::PROMPT);
         r->mutable_token_entropies(0)->add_token_kinds(static_cast<v1::TokenKind>(5));
       },
       "token_entropies[0].token_kinds[1]: unknown token kind 5"},
      {"EntropyVocabMissing",
       [](v1::Report* r) { r->mutable_token_entropies(0)->set_vocab_size(0); },
       "token_entropies[0].vocab_size: required"},
      {"EntropyAboveLogVocab",
       [](v1::Report* r) { r->mutable_token_entropies(0)->set_values(1, 2.8f); },
       "token_entropies[0].values[1]: entropy 2.8 outside [0, log(vocab_size 16)"},
      {"NegativeEntropy",
       [](v1::Report* r) { r->mutable_token_entropies(0)->set_values(0, -0.1f); },
       "token_entropies[0].values[0]"},
      {"NanEntropy", [nan](v1::Report* r) { r->mutable_token_entropies(0)->set_values(0, nan); },
       "token_entropies[0].values[0]: entropy nan"},
      {"AttentionKMissing", [](v1::Report* r) { r->mutable_attention(0)->clear_k(); },
       "attention[0]: needs both q"},
      {"AttentionNot3D",
       [](v1::Report* r) { r->mutable_attention(0)->mutable_q()->mutable_shape()->RemoveLast(); },
       "attention[0].q.shape: expected 3 dimensions, got 2"},
      {"AttentionHeadDimMismatch",
       [](v1::Report* r) {
         SetTensor(r->mutable_attention(0)->mutable_k(), v1::FLOAT32, {1, 4, 3},
                   std::vector<float>(12, 0.2f));
       },
       "attention[0].k.shape[2]: head dim 3 differs from q's 4"},
      {"AttentionGqaMismatch",
       [](v1::Report* r) {
         SetTensor(r->mutable_attention(0)->mutable_q(), v1::FLOAT32, {3, 1, 4},
                   std::vector<float>(12, 0.1f));
         SetTensor(r->mutable_attention(0)->mutable_k(), v1::FLOAT32, {2, 3, 2},
                   std::vector<float>(12, 0.2f));
         SetTensor(r->mutable_attention(0)->mutable_k(), v1::FLOAT32, {2, 1, 4},
                   std::vector<float>(8, 0.2f));
       },
       "attention[0].k.shape[0]: 3 query heads are not a multiple of 2 kv heads"},
      {"CausalMoreQueriesThanKeys",
       [](v1::Report* r) {
         SetTensor(r->mutable_attention(0)->mutable_q(), v1::FLOAT32, {2, 4, 4},
                   std::vector<float>(32, 0.1f));
       },
       "attention[0].q.shape[1]: causal attention with 4 queries but only 3 keys"},
      {"AttentionDtypeMismatch",
       [](v1::Report* r) {
         SetTensor(r->mutable_attention(0)->mutable_k(), v1::BFLOAT16, {1, 3, 4},
                   std::vector<float>(12, 0.2f));
       },
       "attention[0].k.dtype: must equal q.dtype"},
      {"AttentionNegativeScale", [](v1::Report* r) { r->mutable_attention(0)->set_scale(-1); },
       "attention[0].scale"},
      {"QueryKindsCountMismatch",
       [](v1::Report* r) { r->mutable_attention(0)->add_query_kinds(v1::GENERATED); },
       "attention[0].query_kinds: has 1 entries, expected 0 or 2 (one per query)"},
      {"AttentionEntropiesEmpty",
       [](v1::Report* r) { r->mutable_attention_entropies(0)->clear_head_entropy(); },
       "attention_entropies[0].head_entropy: empty"},
      {"AttentionEntropyNegative",
       [](v1::Report* r) { r->mutable_attention_entropies(0)->set_head_entropy(0, -1.0f); },
       "attention_entropies[0].head_entropy[0]: entropy must be finite and >= 0"},
      {"AttentionEntropyInfinite",
       [inf](v1::Report* r) { r->mutable_attention_entropies(0)->set_head_entropy(0, inf); },
       "attention_entropies[0].head_entropy[0]"},
      {"NegativeGradNorm", [](v1::Report* r) { r->mutable_grad()->set_global_norm(-1); },
       "grad.global_norm: must be >= 0 (or NaN/+Inf), got -1"},
      {"NegativeInfiniteGradNorm",
       [inf](v1::Report* r) { r->mutable_grad()->set_global_norm(-inf); },
       "grad.global_norm: must be >= 0 (or NaN/+Inf), got -inf"},
      {"NegativeLayerNorm",
       [](v1::Report* r) { (*r->mutable_grad()->mutable_layer_norms())["h.0"] = -2; },
       "grad.layer_norms[h.0]: must be finite and >= 0"},
      {"EmptyLayerName", [](v1::Report* r) { (*r->mutable_grad()->mutable_layer_norms())[""] = 1; },
       "grad.layer_norms: empty layer name"},
      {"BadScalarName",
       [](v1::Report* r) { (*r->mutable_scalars()->mutable_values())["re ward"] = 1; },
       "scalars.values: name 're ward' must be 1-128 characters from A-Z a-z 0-9 _ . / : -"},
      {"NanNamedScalar",
       [nan](v1::Report* r) { (*r->mutable_scalars()->mutable_values())["kl"] = nan; },
       "scalars.values[kl]: must be finite, got nan"},
      {"TooManyNamedScalars",
       [](v1::Report* r) {
         for (int i = 0; i < 65; ++i) {
           (*r->mutable_scalars()->mutable_values())[absl::StrCat("s", i)] = i;
         }
       },
       "scalars.values: 65 named scalars, at most 64"},
      {"InfiniteMaxLogit",
       [inf](v1::Report* r) { r->mutable_attention_entropies(0)->set_max_logit(inf); },
       "attention_entropies[0].max_logit: must be finite, got inf"},
      {"NegativeLearningRate", [](v1::Report* r) { r->mutable_scalars()->set_learning_rate(-0.1); },
       "scalars.learning_rate"},
      {"TooManyRows", [](v1::Report* r) { AddEntropies(r, std::vector<float>(7, 0.5f), 16); },
       "11 token rows exceed ingest.max_rows_per_report 8"},
  };
  const std::vector<ValidationCase> summary = SummaryValidationCases();
  cases.insert(cases.end(), summary.begin(), summary.end());
  return cases;
}

}  // namespace entrowatch::testing
