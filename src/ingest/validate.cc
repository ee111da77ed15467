#include "ingest/validate.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "analysis/step_aggregator.h"
#include "common/status_macros.h"
#include "compute/input_checks.h"
#include "config/analysis_config.h"
#include "ingest/wire_dtype.h"

namespace entrowatch::ingest {
namespace {

using entrowatch::v1::Report;
using entrowatch::v1::Tensor;

// Named scalars one report may carry.
constexpr int kMaxNamedScalars = 64;

absl::Status Invalid(const std::string& field, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", problem));
}

std::string Indexed(absl::string_view name, int i) { return absl::StrCat(name, "[", i, "]"); }

// Checks dtype, rank, non-zero dimensions without overflow, and that the data
// length equals prod(shape) * dtype size. Returns the element count.
absl::Status CheckTensor(const Tensor& t, const std::string& field, int rank,
                         const ValidationLimits& limits, int64_t* elements) {
  auto dtype = DTypeFromProto(t.dtype());
  if (!dtype.ok()) {
    return Invalid(field + ".dtype", dtype.status().message());
  }
  if (t.shape_size() != rank) {
    return Invalid(field + ".shape",
                   absl::StrCat("expected ", rank, " dimensions, got ", t.shape_size()));
  }
  uint64_t count = 1;
  for (int i = 0; i < rank; ++i) {
    const uint64_t dim = t.shape(i);
    if (dim == 0) {
      return Invalid(absl::StrCat(field, ".shape[", i, "]"), "dimension is zero");
    }
    if (dim > static_cast<uint64_t>(limits.max_elements_per_report) ||
        count > static_cast<uint64_t>(limits.max_elements_per_report) / dim) {
      return Invalid(field + ".shape", absl::StrCat("more than ", limits.max_elements_per_report,
                                                    " elements (ingest.max_elements_per_report)"));
    }
    count *= dim;
  }
  const uint64_t expected = count * common::DTypeSize(*dtype);
  if (t.data().size() != expected) {
    return Invalid(field + ".data", absl::StrCat("length ", t.data().size(), " bytes, but shape x ",
                                                 common::DTypeName(*dtype), " needs ", expected));
  }
  *elements = static_cast<int64_t>(count);
  return absl::OkStatus();
}

template <typename Kinds>
absl::Status CheckKinds(const Kinds& kinds, int64_t expected, const std::string& field,
                        absl::string_view per) {
  if (!kinds.empty() && static_cast<int64_t>(kinds.size()) != expected) {
    return Invalid(field, absl::StrCat("has ", kinds.size(), " entries, expected 0 or ", expected,
                                       " (one per ", per, ")"));
  }
  for (int i = 0; i < kinds.size(); ++i) {
    if (!entrowatch::v1::TokenKind_IsValid(kinds[i])) {
      return Invalid(Indexed(field, i), absl::StrCat("unknown token kind ", kinds[i]));
    }
  }
  return absl::OkStatus();
}

bool FiniteNonNegative(double v) { return std::isfinite(v) && v >= 0; }

absl::Status CheckLogits(const Report& r, const ValidationLimits& limits, int64_t* rows_total,
                         int64_t* elements_total) {
  for (int b = 0; b < r.logits_size(); ++b) {
    const auto& block = r.logits(b);
    const std::string field = Indexed("logits", b);
    if (!block.has_logits()) {
      return Invalid(field + ".logits", "missing tensor");
    }
    int64_t elements = 0;
    RETURN_IF_ERROR(CheckTensor(block.logits(), field + ".logits", 2, limits, &elements));
    const int64_t rows = static_cast<int64_t>(block.logits().shape(0));
    const int64_t vocab = static_cast<int64_t>(block.logits().shape(1));
    *rows_total += rows;
    *elements_total += elements;
    if (block.valid_vocab() > vocab) {
      return Invalid(field + ".valid_vocab",
                     absl::StrCat(block.valid_vocab(), " exceeds the vocabulary ", vocab));
    }
    const int64_t valid = block.valid_vocab() == 0 ? vocab : block.valid_vocab();
    if (!std::isfinite(block.temperature()) || block.temperature() < 0 ||
        (block.temperature() > 0 && block.temperature() < compute::kMinTemperature)) {
      return Invalid(field + ".temperature",
                     absl::StrCat("must be finite and >= ", compute::kMinTemperature,
                                  " (0 = 1.0), got ", block.temperature()));
    }
    const float top_p = block.sampling().top_p();
    if (!std::isfinite(top_p) || top_p < 0 || top_p > 1) {
      return Invalid(field + ".sampling.top_p", absl::StrCat("must be in [0, 1], got ", top_p));
    }
    if (block.target_ids_size() != 0 && block.target_ids_size() != rows) {
      return Invalid(field + ".target_ids",
                     absl::StrCat("has ", block.target_ids_size(), " entries, expected 0 or ", rows,
                                  " (one per row)"));
    }
    for (int i = 0; i < block.target_ids_size(); ++i) {
      const int32_t id = block.target_ids(i);
      if (id < 0 || id >= valid) {
        return Invalid(Indexed(field + ".target_ids", i),
                       absl::StrCat("target id ", id, " out of range [0, ", valid, ")"));
      }
    }
    RETURN_IF_ERROR(CheckKinds(block.token_kinds(), rows, field + ".token_kinds", "row"));
  }
  return absl::OkStatus();
}

absl::Status CheckTokenEntropies(const Report& r, int64_t* rows_total) {
  for (int b = 0; b < r.token_entropies_size(); ++b) {
    const auto& block = r.token_entropies(b);
    const std::string field = Indexed("token_entropies", b);
    if (block.vocab_size() == 0) {
      return Invalid(field + ".vocab_size", "required (>= 1) to bound and normalize entropies");
    }
    const double max_h = std::log(static_cast<double>(block.vocab_size()));
    // Clients compute in float32: allow its rounding at the upper bound.
    const double tolerance = 1e-5 * std::max(1.0, max_h);
    for (int i = 0; i < block.values_size(); ++i) {
      const float v = block.values(i);
      if (!std::isfinite(v) || v < 0 || v > max_h + tolerance) {
        return Invalid(Indexed(field + ".values", i),
                       absl::StrCat("entropy ", v, " outside [0, log(vocab_size ",
                                    block.vocab_size(), ") = ", max_h, "]"));
      }
    }
    *rows_total += block.values_size();
    RETURN_IF_ERROR(
        CheckKinds(block.token_kinds(), block.values_size(), field + ".token_kinds", "value"));
  }
  return absl::OkStatus();
}

absl::Status CheckAttention(const Report& r, const ValidationLimits& limits,
                            int64_t* elements_total) {
  for (int b = 0; b < r.attention_size(); ++b) {
    const auto& block = r.attention(b);
    const std::string field = Indexed("attention", b);
    if (!block.has_q() || !block.has_k()) {
      return Invalid(field, "needs both q [heads, nq, d] and k [kv_heads, nk, d]");
    }
    int64_t qe = 0;
    int64_t ke = 0;
    RETURN_IF_ERROR(CheckTensor(block.q(), field + ".q", 3, limits, &qe));
    RETURN_IF_ERROR(CheckTensor(block.k(), field + ".k", 3, limits, &ke));
    *elements_total += qe + ke;
    if (block.q().dtype() != block.k().dtype()) {
      return Invalid(field + ".k.dtype", "must equal q.dtype");
    }
    const uint64_t heads = block.q().shape(0);
    const uint64_t nq = block.q().shape(1);
    const uint64_t kv_heads = block.k().shape(0);
    const uint64_t nk = block.k().shape(1);
    if (block.q().shape(2) != block.k().shape(2)) {
      return Invalid(field + ".k.shape[2]", absl::StrCat("head dim ", block.k().shape(2),
                                                         " differs from q's ", block.q().shape(2)));
    }
    if (heads % kv_heads != 0) {
      return Invalid(
          field + ".k.shape[0]",
          absl::StrCat(heads, " query heads are not a multiple of ", kv_heads, " kv heads (GQA)"));
    }
    if (block.causal() && nq > nk) {
      return Invalid(field + ".q.shape[1]",
                     absl::StrCat("causal attention with ", nq, " queries but only ", nk,
                                  " keys (queries are the last nq positions)"));
    }
    if (!std::isfinite(block.scale()) || block.scale() < 0) {
      return Invalid(field + ".scale",
                     absl::StrCat("must be finite and >= 0 (0 = 1/sqrt(d)), got ", block.scale()));
    }
    RETURN_IF_ERROR(
        CheckKinds(block.query_kinds(), static_cast<int64_t>(nq), field + ".query_kinds", "query"));
  }
  for (int b = 0; b < r.attention_entropies_size(); ++b) {
    const auto& block = r.attention_entropies(b);
    const std::string field = Indexed("attention_entropies", b);
    if (block.head_entropy_size() == 0) {
      return Invalid(field + ".head_entropy", "empty (one value per head expected)");
    }
    for (int i = 0; i < block.head_entropy_size(); ++i) {
      if (!FiniteNonNegative(block.head_entropy(i))) {
        return Invalid(
            Indexed(field + ".head_entropy", i),
            absl::StrCat("entropy must be finite and >= 0, got ", block.head_entropy(i)));
      }
    }
    if (block.has_max_logit() && !std::isfinite(block.max_logit())) {
      return Invalid(field + ".max_logit", absl::StrCat("must be finite, got ", block.max_logit()));
    }
  }
  return absl::OkStatus();
}

// Bounds of a ReportSummary. A summarized count stays exact in a double.
constexpr int kMaxEntropySummaries = 16;
constexpr int kMaxAttentionSummaries = 4096;
constexpr int kMaxSummaryHeads = 4096;
constexpr uint64_t kMaxSummarizedTokens = uint64_t{1} << 53;

// Sums a client accumulated (possibly in float32) are checked against the
// bounds min and max imply, with this relative slack.
constexpr double kSumTolerance = 1e-3;

bool WithinSlack(double value, double lo, double hi) {
  const double slack = kSumTolerance * std::max({1.0, std::abs(lo), std::abs(hi)});
  return value >= lo - slack && value <= hi + slack;
}

absl::Status CheckEntropySummary(const entrowatch::v1::EntropySummary& e,
                                 const std::string& field) {
  if (e.vocab_size() < 2) {
    return Invalid(field + ".vocab_size", "required (>= 2): the histogram spans [0, ln V]");
  }
  if (e.count() > kMaxSummarizedTokens) {
    return Invalid(field + ".count",
                   absl::StrCat(e.count(), " tokens, at most ", kMaxSummarizedTokens));
  }
  const double count = static_cast<double>(e.count());
  const double max_h = std::log(static_cast<double>(e.vocab_size()));
  const double tolerance = 1e-5 * std::max(1.0, max_h);
  constexpr int kBins = analysis::kEntropyHistogramBins;
  if (e.histogram_size() != kBins && !(e.histogram_size() == 0 && e.count() == 0)) {
    return Invalid(field + ".histogram",
                   absl::StrCat("has ", e.histogram_size(), " bins, expected ", kBins,
                                " (or none when count is 0)"));
  }
  uint64_t binned = 0;
  int lowest = -1;
  int highest = -1;
  for (int i = 0; i < e.histogram_size(); ++i) {
    const uint64_t c = e.histogram(i);
    if (c > kMaxSummarizedTokens - binned) {
      return Invalid(Indexed(field + ".histogram", i),
                     absl::StrCat("bins sum to more than ", kMaxSummarizedTokens));
    }
    binned += c;
    if (c > 0) {
      lowest = lowest < 0 ? i : lowest;
      highest = i;
    }
  }
  if (binned != e.count()) {
    return Invalid(field + ".histogram",
                   absl::StrCat("bins sum to ", binned, ", but count is ", e.count()));
  }
  if (e.count() == 0) {
    if (e.sum() != 0 || e.sum_squares() != 0 || e.min() != 0 || e.max() != 0 ||
        e.high_entropy_count() != 0 || e.generated_count() != 0 || e.top1_count() != 0 ||
        e.surprisal_count() != 0) {
      return Invalid(field, "count is 0, but sums, min, max or other counts are not");
    }
    return absl::OkStatus();
  }
  const float lo = e.min();
  const float hi = e.max();
  if (!std::isfinite(lo) || !std::isfinite(hi) || lo < 0 || lo > hi || hi > max_h + tolerance) {
    return Invalid(field + ".min", absl::StrCat("min ", lo, " and max ", hi,
                                                " must satisfy 0 <= min <= max <= log(vocab_size ",
                                                e.vocab_size(), ") = ", max_h));
  }
  // Float rounding at a bin edge may move a value by one bin.
  const int lo_bin = analysis::EntropyBin(lo, max_h);
  const int hi_bin = analysis::EntropyBin(hi, max_h);
  if (std::abs(lowest - lo_bin) > 1 || std::abs(highest - hi_bin) > 1) {
    return Invalid(field + ".histogram",
                   absl::StrCat("non-empty bins ", lowest, "..", highest, " do not match min ", lo,
                                " (bin ", lo_bin, ") and max ", hi, " (bin ", hi_bin,
                                "); bin = floor(h / ln V * ", kBins, ")"));
  }
  if (!std::isfinite(e.sum()) || !WithinSlack(e.sum(), count * lo, count * hi)) {
    return Invalid(field + ".sum", absl::StrCat(e.sum(), " is not within count x [min, max] = [",
                                                count * lo, ", ", count * hi, "]"));
  }
  const double squares_lo = e.sum() * e.sum() / count;
  const double squares_hi = count * static_cast<double>(hi) * hi;
  if (!std::isfinite(e.sum_squares()) || !WithinSlack(e.sum_squares(), squares_lo, squares_hi)) {
    return Invalid(
        field + ".sum_squares",
        absl::StrCat(e.sum_squares(), " is not within [sum^2 / count, count x max^2] = [",
                     squares_lo, ", ", squares_hi, "]"));
  }
  const float threshold = e.high_entropy_threshold();
  if (!std::isfinite(threshold) || threshold < 0 || threshold > 1) {
    return Invalid(field + ".high_entropy_threshold",
                   absl::StrCat("must be in [0, 1] (0 = not counted), got ", threshold));
  }
  if (e.high_entropy_count() > e.count() || (threshold == 0 && e.high_entropy_count() != 0)) {
    return Invalid(field + ".high_entropy_count",
                   absl::StrCat(e.high_entropy_count(), " must be at most count ", e.count(),
                                ", and 0 when high_entropy_threshold is 0"));
  }
  const double generated = static_cast<double>(e.generated_count());
  if (e.generated_count() > e.count()) {
    return Invalid(field + ".generated_count",
                   absl::StrCat(e.generated_count(), " exceeds count ", e.count()));
  }
  if (!std::isfinite(e.generated_sum()) ||
      !WithinSlack(e.generated_sum(), generated * lo, generated * hi)) {
    return Invalid(field + ".generated_sum",
                   absl::StrCat(e.generated_sum(), " is not within generated_count x [min, max]"));
  }
  if (e.top1_count() > e.count() || e.surprisal_count() > e.count()) {
    return Invalid(field + ".top1_count",
                   absl::StrCat("top1_count ", e.top1_count(), " and surprisal_count ",
                                e.surprisal_count(), " must be at most count ", e.count()));
  }
  if (!std::isfinite(e.top1_prob_sum()) ||
      !WithinSlack(e.top1_prob_sum(), 0, static_cast<double>(e.top1_count()))) {
    return Invalid(field + ".top1_prob_sum",
                   absl::StrCat(e.top1_prob_sum(), " is not within [0, top1_count]"));
  }
  if (!FiniteNonNegative(e.surprisal_sum())) {
    return Invalid(field + ".surprisal_sum",
                   absl::StrCat("must be finite and >= 0, got ", e.surprisal_sum()));
  }
  return absl::OkStatus();
}

absl::Status CheckAttentionSummary(const entrowatch::v1::AttentionSummary& a,
                                   const std::string& field) {
  if (a.head_entropy_sum_size() == 0 || a.head_entropy_sum_size() > kMaxSummaryHeads) {
    return Invalid(field + ".head_entropy_sum",
                   absl::StrCat("has ", a.head_entropy_sum_size(), " heads, expected 1 to ",
                                kMaxSummaryHeads));
  }
  if (a.head_count_size() != a.head_entropy_sum_size()) {
    return Invalid(field + ".head_count",
                   absl::StrCat("has ", a.head_count_size(), " entries, expected one per head (",
                                a.head_entropy_sum_size(), ")"));
  }
  for (int h = 0; h < a.head_entropy_sum_size(); ++h) {
    const double sum = a.head_entropy_sum(h);
    if (!FiniteNonNegative(sum) || (a.head_count(h) == 0 && sum != 0) ||
        a.head_count(h) > kMaxSummarizedTokens) {
      return Invalid(Indexed(field + ".head_entropy_sum", h),
                     absl::StrCat("sum ", sum, " over ", a.head_count(h),
                                  " entropies must be finite, >= 0, and 0 when the count is 0"));
    }
  }
  if (a.has_max_logit() && !std::isfinite(a.max_logit())) {
    return Invalid(field + ".max_logit", absl::StrCat("must be finite, got ", a.max_logit()));
  }
  return absl::OkStatus();
}

// Rank figures of a job-level aggregate; `tokens` is what the report carries.
absl::Status CheckRankSummaries(const Report& r, uint64_t tokens) {
  const auto& ranks = r.summary().ranks();
  if (r.has_grad()) {
    return Invalid("grad", "a report with summary.ranks carries each rank's grad norm there");
  }
  if (r.scalars().has_loss()) {
    return Invalid("scalars.loss", "a report with summary.ranks carries each rank's loss there");
  }
  const uint32_t world = EffectiveWorldSize(r);
  std::vector<uint32_t> listed;
  listed.reserve(static_cast<size_t>(ranks.size()));
  uint64_t listed_tokens = 0;
  for (int i = 0; i < ranks.size(); ++i) {
    const auto& rank = ranks[i];
    const std::string field = Indexed("summary.ranks", i);
    if (rank.rank() >= world) {
      return Invalid(field + ".rank",
                     absl::StrCat(rank.rank(), " must be below world_size ", world));
    }
    listed.push_back(rank.rank());
    if (!FiniteNonNegative(rank.entropy_mean())) {
      return Invalid(field + ".entropy_mean",
                     absl::StrCat("must be finite and >= 0, got ", rank.entropy_mean()));
    }
    if (!(std::isnan(rank.grad_norm()) || rank.grad_norm() >= 0)) {
      return Invalid(field + ".grad_norm",
                     absl::StrCat("must be >= 0 (or NaN/+Inf), got ", rank.grad_norm()));
    }
    if (rank.token_count() > kMaxSummarizedTokens - listed_tokens) {
      return Invalid(field + ".token_count", absl::StrCat("sum exceeds ", kMaxSummarizedTokens));
    }
    listed_tokens += rank.token_count();
  }
  std::sort(listed.begin(), listed.end());
  if (auto dup = std::adjacent_find(listed.begin(), listed.end()); dup != listed.end()) {
    return Invalid("summary.ranks", absl::StrCat("rank ", *dup, " is listed twice"));
  }
  if (listed_tokens != tokens) {
    return Invalid("summary.ranks",
                   absl::StrCat("token counts sum to ", listed_tokens, ", but the report carries ",
                                tokens, " tokens (summaries and raw values)"));
  }
  return absl::OkStatus();
}

absl::Status CheckSummary(const Report& r, int64_t raw_rows) {
  const auto& summary = r.summary();
  if (summary.entropy_size() > kMaxEntropySummaries) {
    return Invalid("summary.entropy", absl::StrCat(summary.entropy_size(), " summaries, at most ",
                                                   kMaxEntropySummaries));
  }
  if (summary.attention_size() > kMaxAttentionSummaries) {
    return Invalid("summary.attention", absl::StrCat(summary.attention_size(), " layers, at most ",
                                                     kMaxAttentionSummaries));
  }
  uint64_t tokens = static_cast<uint64_t>(raw_rows);
  for (int i = 0; i < summary.entropy_size(); ++i) {
    const auto& e = summary.entropy(i);
    const std::string field = Indexed("summary.entropy", i);
    RETURN_IF_ERROR(CheckEntropySummary(e, field));
    for (int j = 0; j < i; ++j) {
      if (summary.entropy(j).vocab_size() == e.vocab_size()) {
        return Invalid(field + ".vocab_size",
                       absl::StrCat(e.vocab_size(), " is already summarized in summary.entropy[", j,
                                    "] (one summary per vocabulary)"));
      }
    }
    tokens += e.count();
  }
  std::vector<uint32_t> layers;
  for (int i = 0; i < summary.attention_size(); ++i) {
    RETURN_IF_ERROR(CheckAttentionSummary(summary.attention(i), Indexed("summary.attention", i)));
    layers.push_back(summary.attention(i).layer());
  }
  std::sort(layers.begin(), layers.end());
  if (auto dup = std::adjacent_find(layers.begin(), layers.end()); dup != layers.end()) {
    return Invalid("summary.attention", absl::StrCat("layer ", *dup, " is summarized twice"));
  }
  if (summary.ranks_size() > 0) {
    RETURN_IF_ERROR(CheckRankSummaries(r, tokens));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateRunId(const std::string& run_id) {
  if (run_id.empty() || run_id.size() > 128) {
    return Invalid("run_id", absl::StrCat("must be 1-128 characters, got ", run_id.size()));
  }
  for (char c : run_id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == ':' || c == '-';
    if (!ok) {
      return Invalid("run_id", "may only contain A-Z a-z 0-9 _ . : -");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateReport(const Report& r, const ValidationLimits& limits) {
  RETURN_IF_ERROR(ValidateRunId(r.run_id()));
  if (r.rank() >= EffectiveWorldSize(r)) {
    return Invalid("rank", absl::StrCat("rank ", r.rank(), " must be below world_size ",
                                        EffectiveWorldSize(r)));
  }
  if (!entrowatch::v1::Phase_IsValid(r.phase())) {
    return Invalid("phase", absl::StrCat("unknown phase ", r.phase()));
  }
  if (r.has_time() && (r.time().nanos() < 0 || r.time().nanos() > 999'999'999)) {
    return Invalid("time.nanos", "must be in [0, 999999999]");
  }
  int64_t rows = 0;
  int64_t elements = 0;
  RETURN_IF_ERROR(CheckLogits(r, limits, &rows, &elements));
  RETURN_IF_ERROR(CheckTokenEntropies(r, &rows));
  RETURN_IF_ERROR(CheckAttention(r, limits, &elements));
  if (rows > limits.max_rows_per_report) {
    return Invalid("logits", absl::StrCat(rows, " token rows exceed ingest.max_rows_per_report ",
                                          limits.max_rows_per_report));
  }
  if (elements > limits.max_elements_per_report) {
    return Invalid("logits",
                   absl::StrCat(elements, " tensor elements exceed ingest.max_elements_per_report ",
                                limits.max_elements_per_report));
  }
  // Summarized tokens are not rows: they cost the daemon one histogram.
  RETURN_IF_ERROR(CheckSummary(r, rows));
  if (r.has_grad()) {
    // NaN and +Inf are accepted: a diverged step is evidence (NON_FINITE),
    // not garbage.
    const double norm = r.grad().global_norm();
    if (!(std::isnan(norm) || norm >= 0)) {
      return Invalid("grad.global_norm", absl::StrCat("must be >= 0 (or NaN/+Inf), got ", norm));
    }
    for (const auto& [name, norm] : r.grad().layer_norms()) {
      if (name.empty()) {
        return Invalid("grad.layer_norms", "empty layer name");
      }
      if (!FiniteNonNegative(norm)) {
        return Invalid(absl::StrCat("grad.layer_norms[", name, "]"),
                       absl::StrCat("must be finite and >= 0, got ", norm));
      }
    }
  }
  if (r.has_scalars()) {
    // scalars.loss may be NaN or infinite: that is evidence (NON_FINITE).
    if (!FiniteNonNegative(r.scalars().learning_rate())) {
      return Invalid("scalars.learning_rate",
                     absl::StrCat("must be finite and >= 0, got ", r.scalars().learning_rate()));
    }
    if (r.scalars().values_size() > kMaxNamedScalars) {
      return Invalid("scalars.values", absl::StrCat(r.scalars().values_size(),
                                                    " named scalars, at most ", kMaxNamedScalars));
    }
    for (const auto& [name, value] : r.scalars().values()) {
      if (!config::ValidSignalName(name)) {
        return Invalid("scalars.values",
                       absl::StrCat("name '", absl::CHexEscape(name.substr(0, 160)),
                                    "' must be 1-128 characters from A-Z a-z 0-9 _ . / : -"));
      }
      if (!std::isfinite(value)) {
        return Invalid(absl::StrCat("scalars.values[", name, "]"),
                       absl::StrCat("must be finite, got ", value));
      }
    }
  }
  return absl::OkStatus();
}

int64_t ReportBytes(const Report& report) { return static_cast<int64_t>(report.ByteSizeLong()); }

}  // namespace entrowatch::ingest
