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

inline std::vector<ValidationCase> ValidationCases() {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  return {
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
}

}  // namespace entrowatch::testing
