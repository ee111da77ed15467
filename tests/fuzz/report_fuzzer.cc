// libFuzzer target over the daemon's request path: bytes are decoded as a
// Report, validated with the ingest limits, and a valid report's logits and
// attention blocks are computed by the float64 reference engine the way
// src/daemon/processor.cc does. Besides the sanitizers' findings it aborts
// when a contract is broken:
//   - a refused report gets InvalidArgument with a message naming the field;
//   - a validated block meets the engine's preconditions (no InvalidArgument);
//   - every finite row's statistics lie within their documented bounds.

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/tensor_view.h"
#include "compute/engine_factory.h"
#include "entrowatch/v1/entrowatch.pb.h"
#include "google/protobuf/stubs/logging.h"
#include "ingest/validate.h"

namespace {

using entrowatch::compute::EntropyEngine;
using entrowatch::v1::Report;

// Slack for float64 rounding at the bounds of the statistics.
constexpr double kTolerance = 1e-9;

[[noreturn]] void Fail(absl::string_view what, const absl::Status& status) {
  std::fprintf(stderr, "report_fuzzer: %.*s: %s\n", static_cast<int>(what.size()), what.data(),
               status.ToString().c_str());
  std::abort();
}

[[noreturn]] void Fail(absl::string_view what) { Fail(what, absl::OkStatus()); }

EntropyEngine* Engine() {
  static EntropyEngine* engine = [] {
    auto selection = entrowatch::compute::CreateEngine({.backend = "cpu-reference"});
    if (!selection.ok()) {
      Fail("cannot create the cpu-reference engine", selection.status());
    }
    return selection->engine.release();
  }();
  return engine;
}

bool Within(double v, double lo, double hi) { return v >= lo - kTolerance && v <= hi + kTolerance; }

void CheckRows(const entrowatch::compute::LogitsInput& in,
               absl::Span<const entrowatch::compute::RowEntropy> rows) {
  const double max_h = std::log(static_cast<double>(in.valid_vocab));
  for (const auto& row : rows) {
    if (row.status != entrowatch::compute::RowStatus::kOk) {
      continue;
    }
    if (!Within(row.entropy, 0, max_h * (1 + kTolerance)) || !Within(row.normalized, 0, 1) ||
        !Within(row.top1_prob, 0, 1) || row.top1_prob <= 0) {
      Fail("row statistics outside [0, log V] / [0, 1]");
    }
    if (!in.target_ids.empty() && !(row.surprisal >= -kTolerance)) {
      Fail("negative or NaN surprisal");
    }
    if (in.sampling() &&
        (!Within(row.final_entropy, 0, max_h * (1 + kTolerance)) || row.effective_vocab < 1 ||
         row.effective_vocab > in.valid_vocab || !Within(row.final_top1_prob, 0, 1))) {
      Fail("sampling view outside its bounds");
    }
  }
}

// As ReportProcessor::Compute reads a validated logits block.
void ComputeLogits(const entrowatch::v1::LogitsBlock& block) {
  entrowatch::compute::LogitsInput in;
  in.logits.dtype = *entrowatch::common::DTypeFromProto(block.logits().dtype());
  in.logits.rows = static_cast<int64_t>(block.logits().shape(0));
  in.logits.cols = static_cast<int64_t>(block.logits().shape(1));
  in.logits.data = block.logits().data().data();
  in.valid_vocab = block.valid_vocab() == 0 ? in.logits.cols : block.valid_vocab();
  in.temperature = block.temperature() == 0 ? 1.0f : block.temperature();
  in.target_ids = absl::MakeConstSpan(block.target_ids().data(), block.target_ids_size());
  in.top_k = block.sampling().top_k();
  in.top_p = block.sampling().top_p() == 0 ? 1.0f : block.sampling().top_p();
  std::vector<entrowatch::compute::RowEntropy> rows(static_cast<size_t>(in.logits.rows));
  const absl::Status status = Engine()->TokenEntropy(in, absl::MakeSpan(rows));
  if (absl::IsInvalidArgument(status)) {
    Fail("validated logits block refused by the engine", status);
  }
  if (status.ok()) {
    CheckRows(in, rows);
  }
}

bool AllFinite(const entrowatch::v1::Tensor& t) {
  const auto dtype = *entrowatch::common::DTypeFromProto(t.dtype());
  const int64_t n = static_cast<int64_t>(t.data().size() / entrowatch::common::DTypeSize(dtype));
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(entrowatch::common::LoadAsFloat(dtype, t.data().data(), i))) {
      return false;
    }
  }
  return true;
}

// As ReportProcessor::Compute reads a validated attention block (the daemon
// refuses non-finite Q/K before computing).
void ComputeAttention(const entrowatch::v1::AttentionBlock& block) {
  if (!AllFinite(block.q()) || !AllFinite(block.k())) {
    return;
  }
  entrowatch::compute::AttentionInput in;
  in.dtype = *entrowatch::common::DTypeFromProto(block.q().dtype());
  in.q = block.q().data().data();
  in.k = block.k().data().data();
  in.heads = static_cast<int64_t>(block.q().shape(0));
  in.nq = static_cast<int64_t>(block.q().shape(1));
  in.head_dim = static_cast<int64_t>(block.q().shape(2));
  in.kv_heads = static_cast<int64_t>(block.k().shape(0));
  in.nk = static_cast<int64_t>(block.k().shape(1));
  in.causal = block.causal();
  in.scale = block.scale();
  entrowatch::compute::AttentionOutput out;
  const absl::Status status = Engine()->AttentionEntropy(in, &out);
  if (absl::IsInvalidArgument(status)) {
    Fail("validated attention block refused by the engine", status);
  }
  if (!status.ok()) {
    return;
  }
  const size_t expected = static_cast<size_t>(in.heads * in.nq);
  if (out.shannon.size() != expected || out.renyi2.size() != expected) {
    Fail("attention output has the wrong size");
  }
  const double max_h = std::log(static_cast<double>(in.nk));
  // The engine returns float: allow its rounding at the bounds.
  const double slack = 1e-5 * std::max(1.0, max_h);
  for (size_t i = 0; i < expected; ++i) {
    if (!(out.shannon[i] >= -slack && out.shannon[i] <= max_h + slack) ||
        !(out.renyi2[i] >= -slack && out.renyi2[i] <= out.shannon[i] + slack)) {
      Fail("attention entropy outside [0, log nk] or Renyi-2 above Shannon");
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
  return 0;
}
