#pragma once

// The trace format: one Report per line in the protobuf JSON mapping (JSONL).

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "entrowatch/v1/entrowatch.pb.h"

namespace entrowatch::cli {

// Parses one trace line. InvalidArgument whose message starts with
// "line N: " and carries the JSON parser's reason.
absl::StatusOr<v1::Report> ParseReportLine(absl::string_view line, int64_t line_number);

// True for lines a trace may contain besides reports: empty or whitespace.
bool IsBlankLine(absl::string_view line);

}  // namespace entrowatch::cli
