#include "ingest/report_adapter.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/tensor_view.h"
#include "compute/input_checks.h"
#include "ingest/validate.h"
#include "ingest/wire_dtype.h"

namespace entrowatch::ingest {
namespace {

using analysis::ReportContribution;
using entrowatch::v1::Report;

int64_t Dim(const entrowatch::v1::Tensor& t, int i) { return static_cast<int64_t>(t.shape(i)); }

bool IsGenerated(const google::protobuf::RepeatedField<int>& kinds, int i) {
  return !kinds.empty() && kinds.Get(i) == entrowatch::v1::GENERATED;
}

// Runs one engine call and records how long it took.
template <typename Call>
absl::Status Timed(absl::string_view kind, ComputeCost& cost, Call call) {
  const auto start = std::chrono::steady_clock::now();
  absl::Status status = call();
  cost.engine_calls.push_back(
      {kind, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()});
  return status;
}

absl::Status AddLogitsBlock(int b, const entrowatch::v1::LogitsBlock& block,
                            compute::EntropyEngine& engine, const ContributionOptions& options,
                            ComputeCost& cost, ReportContribution& out) {
  const compute::LogitsInput in = LogitsInputOf(block);
  std::vector<compute::RowEntropy> rows(static_cast<size_t>(in.logits.rows));
  const absl::Status status =
      Timed("token", cost, [&] { return engine.TokenEntropy(in, absl::MakeSpan(rows)); });
  if (!status.ok()) {
    return absl::Status(status.code(), absl::StrCat("logits[", b, "]: ", status.message()));
  }
  for (size_t r = 0; r < rows.size(); ++r) {
    const compute::RowEntropy& row = rows[r];
    if (row.status != compute::RowStatus::kOk) {
      if (!options.skip_nonfinite_rows) {
        return absl::InvalidArgumentError(absl::StrCat("logits[", b, "].logits row ", r, " ",
                                                       row.status == compute::RowStatus::kNonFinite
                                                           ? "contains NaN or +Inf"
                                                           : "has no finite value (all -inf)"));
      }
      ++cost.skipped_rows;
      continue;
    }
    out.entropies.push_back(static_cast<float>(row.entropy));
    out.normalized.push_back(static_cast<float>(row.normalized));
    out.generated.push_back(IsGenerated(block.token_kinds(), static_cast<int>(r)));
    out.top1_sum += row.top1_prob;
    ++out.top1_count;
    // A target whose logit is -inf has infinite surprisal: not averaged in.
    if (!in.target_ids.empty() && std::isfinite(row.surprisal)) {
      out.surprisal_sum += row.surprisal;
      ++out.surprisal_count;
    }
  }
  return absl::OkStatus();
}

void AddTokenEntropies(const entrowatch::v1::TokenEntropies& block, ReportContribution& out) {
  const double log_v = std::log(static_cast<double>(block.vocab_size()));
  for (int i = 0; i < block.values_size(); ++i) {
    const float h = block.values(i);
    out.entropies.push_back(h);
    out.normalized.push_back(log_v > 0 ? static_cast<float>(std::min(1.0, h / log_v)) : 0.0f);
    out.generated.push_back(IsGenerated(block.token_kinds(), i));
  }
}

std::vector<analysis::HeadAccum>& LayerHeads(uint32_t layer, size_t heads,
                                             ReportContribution& out) {
  std::vector<analysis::HeadAccum>& accums = out.layers[layer];
  accums.resize(std::max(accums.size(), heads));
  return accums;
}

absl::Status AddAttentionBlock(int b, const entrowatch::v1::AttentionBlock& block,
                               compute::EntropyEngine& engine, ComputeCost& cost,
                               ReportContribution& out) {
  const std::string field = absl::StrCat("attention[", b, "]");
  const compute::AttentionInput in = AttentionInputOf(block);
  if (absl::Status values = compute::CheckAttentionValues(in); !values.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".", values.message()));
  }
  compute::AttentionOutput result;
  const absl::Status status =
      Timed("attention", cost, [&] { return engine.AttentionEntropy(in, &result); });
  if (!status.ok()) {
    return absl::Status(status.code(), absl::StrCat(field, ": ", status.message()));
  }
  auto& heads = LayerHeads(block.layer(), static_cast<size_t>(in.heads), out);
  // Engines that compute it report the max attention logit per head.
  for (float m : result.max_logit) {
    out.AddMaxLogit(block.layer(), m);
  }
  for (int64_t h = 0; h < in.heads; ++h) {
    for (int64_t q = 0; q < in.nq; ++q) {
      heads[h].sum += result.shannon[h * in.nq + q];
      heads[h].count += 1;
    }
  }
  return absl::OkStatus();
}

void AddAttentionEntropies(const entrowatch::v1::AttentionEntropies& block,
                           ReportContribution& out) {
  if (block.has_max_logit()) {
    out.AddMaxLogit(block.layer(), block.max_logit());
  }
  auto& heads = LayerHeads(block.layer(), static_cast<size_t>(block.head_entropy_size()), out);
  for (int h = 0; h < block.head_entropy_size(); ++h) {
    heads[h].sum += block.head_entropy(h);
    heads[h].count += 1;
  }
}

void AddSentFigures(const Report& report, ReportContribution& out) {
  out.summary = report.summary();
  if (report.has_grad()) {
    out.has_grad = true;
    out.grad_norm = report.grad().global_norm();
  }
  if (report.has_scalars()) {
    out.has_loss = report.scalars().has_loss();
    out.loss = report.scalars().loss();
    out.learning_rate = report.scalars().learning_rate();
    out.scalars.insert(report.scalars().values().begin(), report.scalars().values().end());
  }
}

}  // namespace

compute::LogitsInput LogitsInputOf(const entrowatch::v1::LogitsBlock& block) {
  compute::LogitsInput in;
  in.logits.dtype = *DTypeFromProto(block.logits().dtype());
  in.logits.rows = Dim(block.logits(), 0);
  in.logits.cols = Dim(block.logits(), 1);
  in.logits.data = block.logits().data().data();
  in.valid_vocab = block.valid_vocab() == 0 ? in.logits.cols : block.valid_vocab();
  in.temperature = block.temperature() == 0 ? 1.0f : block.temperature();
  in.target_ids = absl::MakeConstSpan(block.target_ids().data(), block.target_ids_size());
  in.top_k = block.sampling().top_k();
  in.top_p = block.sampling().top_p() == 0 ? 1.0f : block.sampling().top_p();
  return in;
}

compute::AttentionInput AttentionInputOf(const entrowatch::v1::AttentionBlock& block) {
  compute::AttentionInput in;
  in.dtype = *DTypeFromProto(block.q().dtype());
  in.q = block.q().data().data();
  in.k = block.k().data().data();
  in.heads = Dim(block.q(), 0);
  in.nq = Dim(block.q(), 1);
  in.head_dim = Dim(block.q(), 2);
  in.kv_heads = Dim(block.k(), 0);
  in.nk = Dim(block.k(), 1);
  in.causal = block.causal();
  in.scale = block.scale();
  return in;
}

entrowatch::v1::Phase PhaseOf(const Report& report) {
  return report.phase() == entrowatch::v1::PHASE_UNSPECIFIED ? entrowatch::v1::TRAIN
                                                             : report.phase();
}

absl::StatusOr<ReportContribution> ComputeContribution(const Report& report,
                                                       compute::EntropyEngine& engine,
                                                       const ContributionOptions& options,
                                                       ComputeCost* cost) {
  ComputeCost ignored;
  ComputeCost& spent = cost != nullptr ? *cost : ignored;
  ReportContribution out;
  for (int b = 0; b < report.logits_size(); ++b) {
    RETURN_IF_ERROR(AddLogitsBlock(b, report.logits(b), engine, options, spent, out));
  }
  for (const auto& block : report.token_entropies()) {
    AddTokenEntropies(block, out);
  }
  for (int b = 0; b < report.attention_size(); ++b) {
    RETURN_IF_ERROR(AddAttentionBlock(b, report.attention(b), engine, spent, out));
  }
  for (const auto& block : report.attention_entropies()) {
    AddAttentionEntropies(block, out);
  }
  AddSentFigures(report, out);
  out.rank = report.rank();
  out.world_size = EffectiveWorldSize(report);
  out.step = report.step();
  out.phase = PhaseOf(report);
  return out;
}

}  // namespace entrowatch::ingest
