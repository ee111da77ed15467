// libFuzzer target over the daemon's request path: bytes are decoded as a
// Report, validated with the ingest limits, and a valid report goes through
// the daemon's own adapter (ingest/report_adapter.h) into the float64
// reference engine and the vectorized CPU engine (what the daemon runs on a
// host without a GPU). Besides the sanitizers' findings it aborts when a
// contract is broken:
//   - a refused report gets InvalidArgument with a message naming the field;
//   - a validated block meets each engine's preconditions (no InvalidArgument);
//   - every row an engine reports as finite has statistics within their
//     documented bounds (never NaN);
//   - the whole report folds into a contribution with one entropy, one
//     normalized value and one kind per token, or fails naming its block.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "compute/engine_factory.h"
#include "compute/input_checks.h"
#include "entrowatch/v1/entrowatch.pb.h"
#include "google/protobuf/stubs/logging.h"
#include "ingest/report_adapter.h"
#include "ingest/validate.h"

namespace {

using entrowatch::compute::EntropyEngine;
using entrowatch::v1::Report;

struct EngineUnderTest {
  EntropyEngine* engine;
  // Relative slack at the bounds: float64 rounding for the reference,
  // float32 accumulation for the vectorized engine.
  double tolerance;
};

[[noreturn]] void Fail(absl::string_view what, const absl::Status& status) {
  std::fprintf(stderr, "report_fuzzer: %.*s: %s\n", static_cast<int>(what.size()), what.data(),
               status.ToString().c_str());
  std::abort();
}

[[noreturn]] void Fail(const EngineUnderTest& e, absl::string_view what) {
  std::fprintf(stderr, "report_fuzzer: %.*s engine: %.*s\n",
               static_cast<int>(e.engine->name().size()), e.engine->name().data(),
               static_cast<int>(what.size()), what.data());
  std::abort();
}

// Engines live until exit, when their destructors stop their threads (a
// released engine would be reported as a leak).
EntropyEngine* CreateEngine(const entrowatch::compute::EngineOptions& options) {
  static std::vector<std::unique_ptr<EntropyEngine>> owners;
  auto selection = entrowatch::compute::CreateEngine(options);
  if (!selection.ok()) {
    Fail("cannot create an engine", selection.status());
  }
  owners.push_back(std::move(selection->engine));
  return owners.back().get();
}

const std::vector<EngineUnderTest>& Engines() {
  // One CPU thread: the fuzzer runs one input at a time.
  static const std::vector<EngineUnderTest> engines = {
      {CreateEngine({.backend = "cpu-reference"}), 1e-9},
      {CreateEngine({.backend = "cpu", .threads = 1}), 1e-4},
  };
  return engines;
}

bool Within(double v, double lo, double hi, double slack) {
  return v >= lo - slack && v <= hi + slack;
}

void CheckRows(const EngineUnderTest& e, const entrowatch::compute::LogitsInput& in,
               absl::Span<const entrowatch::compute::RowEntropy> rows) {
  const double max_h = std::log(static_cast<double>(in.valid_vocab));
  const double slack = e.tolerance * std::max(1.0, max_h);
  for (const auto& row : rows) {
    if (row.status != entrowatch::compute::RowStatus::kOk) {
      continue;
    }
    if (!Within(row.entropy, 0, max_h, slack) || !Within(row.normalized, 0, 1, e.tolerance) ||
        !Within(row.top1_prob, 0, 1, e.tolerance) || !(row.top1_prob > 0)) {
      Fail(e, "row statistics outside [0, log V] / [0, 1], or NaN");
    }
    if (!in.target_ids.empty() && !(row.surprisal >= -slack)) {
      Fail(e, "negative or NaN surprisal");
    }
    if (in.sampling() &&
        (!Within(row.final_entropy, 0, max_h, slack) || row.effective_vocab < 1 ||
         row.effective_vocab > in.valid_vocab || !Within(row.final_top1_prob, 0, 1, e.tolerance))) {
      Fail(e, "sampling view outside its bounds, or NaN");
    }
  }
}

// The engine input the daemon makes of a validated logits block.
void ComputeLogits(const entrowatch::v1::LogitsBlock& block) {
  const entrowatch::compute::LogitsInput in = entrowatch::ingest::LogitsInputOf(block);
  for (const EngineUnderTest& e : Engines()) {
    std::vector<entrowatch::compute::RowEntropy> rows(static_cast<size_t>(in.logits.rows));
    const absl::Status status = e.engine->TokenEntropy(in, absl::MakeSpan(rows));
    if (absl::IsInvalidArgument(status)) {
      Fail("validated logits block refused by an engine", status);
    }
    if (status.ok()) {
      CheckRows(e, in, rows);
    }
  }
}

// The engine input the daemon makes of a validated attention block (the
// daemon refuses non-finite Q/K, or Q/K whose scores could overflow, before
// computing).
void ComputeAttention(const entrowatch::v1::AttentionBlock& block) {
  const entrowatch::compute::AttentionInput in = entrowatch::ingest::AttentionInputOf(block);
  const absl::Status values = entrowatch::compute::CheckAttentionValues(in);
  if (!values.ok()) {
    if (!absl::IsInvalidArgument(values)) {
      Fail("attention values check", values);
    }
    return;
  }
  const size_t expected = static_cast<size_t>(in.heads * in.nq);
  const double max_h = std::log(static_cast<double>(in.nk));
  for (const EngineUnderTest& e : Engines()) {
    entrowatch::compute::AttentionOutput out;
    const absl::Status status = e.engine->AttentionEntropy(in, &out);
    if (absl::IsInvalidArgument(status)) {
      Fail("validated attention block refused by an engine", status);
    }
    if (!status.ok()) {
      continue;
    }
    if (out.shannon.size() != expected || out.renyi2.size() != expected) {
      Fail(e, "attention output has the wrong size");
    }
    // Both engines return float: allow its rounding at the bounds.
    const double slack = std::max(1e-5, e.tolerance) * std::max(1.0, max_h);
    for (size_t i = 0; i < expected; ++i) {
      if (!Within(out.shannon[i], 0, max_h, slack) ||
          !Within(out.renyi2[i], 0, out.shannon[i], slack)) {
        Fail(e, "attention entropy outside [0, log nk], Renyi-2 above Shannon, or NaN");
      }
    }
  }
}

// As the daemon computes a whole report (rows with NaN skipped, as with
// ingest.skip_nonfinite_rows).
void ComputeReport(const Report& report) {
  for (const EngineUnderTest& e : Engines()) {
    const absl::StatusOr<entrowatch::analysis::ReportContribution> c =
        entrowatch::ingest::ComputeContribution(report, *e.engine, {.skip_nonfinite_rows = true},
                                                nullptr);
    if (!c.ok()) {
      if (c.status().message().find('[') == absl::string_view::npos) {
        Fail("a report that cannot be computed must name its block", c.status());
      }
      continue;
    }
    if (c->normalized.size() != c->entropies.size() || c->generated.size() != c->entropies.size()) {
      Fail(e, "contribution with mismatched per-token vectors");
    }
  }
}

// Protobuf logs every string field with invalid UTF-8 it refuses to parse;
// for random bytes that is most inputs, and the refusal is what is tested.
void DropProtobufLog(google::protobuf::LogLevel, const char*, int, const std::string&) {}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(&DropProtobufLog);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Report report;
  if (!report.ParseFromArray(data, static_cast<int>(size))) {
    return 0;
  }
  const absl::Status status = entrowatch::ingest::ValidateReport(report, {});
  if (!status.ok()) {
    if (!absl::IsInvalidArgument(status) || status.message().find(':') == absl::string_view::npos) {
      Fail("a refusal must be InvalidArgument naming the field", status);
    }
    return 0;
  }
  for (const auto& block : report.logits()) {
    ComputeLogits(block);
  }
  for (const auto& block : report.attention()) {
    ComputeAttention(block);
  }
  ComputeReport(report);
  return 0;
}
