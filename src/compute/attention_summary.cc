#include "compute/attention_summary.h"

#include "absl/strings/str_cat.h"

namespace entrowatch::compute {

absl::StatusOr<AttentionSummary> SummarizeAttention(
    absl::Span<const float> entropies, int64_t heads, int64_t nq,
    absl::Span<const entrowatch::v1::TokenKind> query_kinds) {
  if (heads < 1 || nq < 1 || static_cast<int64_t>(entropies.size()) != heads * nq) {
    return absl::InvalidArgumentError(absl::StrCat("attention summary: ", entropies.size(),
                                                   " entropies for ", heads, " heads x ", nq,
                                                   " queries"));
  }
  if (!query_kinds.empty() && static_cast<int64_t>(query_kinds.size()) != nq) {
    return absl::InvalidArgumentError(absl::StrCat("attention summary: ", query_kinds.size(),
                                                   " query kinds for ", nq, " queries"));
  }
  AttentionSummary out;
  out.head_mean.assign(heads, 0.0);
  double prompt_sum = 0;
  double generated_sum = 0;
  for (int64_t h = 0; h < heads; ++h) {
    double sum = 0;
    for (int64_t i = 0; i < nq; ++i) {
      const double value = entropies[h * nq + i];
      sum += value;
      if (query_kinds.empty()) {
        continue;
      }
      if (query_kinds[i] == entrowatch::v1::PROMPT) {
        prompt_sum += value;
        ++out.prompt_queries;
      } else if (query_kinds[i] == entrowatch::v1::GENERATED) {
        generated_sum += value;
        ++out.generated_queries;
      }
    }
    out.head_mean[h] = sum / static_cast<double>(nq);
    out.layer_mean += out.head_mean[h];
  }
  out.layer_mean /= static_cast<double>(heads);
  for (double mean : out.head_mean) {
    out.head_variance += (mean - out.layer_mean) * (mean - out.layer_mean);
  }
  out.head_variance /= static_cast<double>(heads);
  if (out.prompt_queries > 0) {
    out.prompt_mean = prompt_sum / static_cast<double>(out.prompt_queries);
  }
  if (out.generated_queries > 0) {
    out.generated_mean = generated_sum / static_cast<double>(out.generated_queries);
  }
  return out;
}

}  // namespace entrowatch::compute
