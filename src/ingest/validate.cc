#include "ingest/validate.h"

#include <cmath>
#include <limits>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
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
