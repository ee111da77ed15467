#pragma once

// Human-readable renderings of daemon answers for the `entrowatch` tool.
// Pure functions: the current time is a parameter so tests are exact.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "entrowatch/v1/entrowatch.pb.h"

namespace entrowatch::cli {

// Rows of left-aligned columns separated by two spaces, one line each.
std::string FormatTable(const std::vector<std::vector<std::string>>& rows);

// "4s", "2m05s", "3h12m", "5d3h".
std::string FormatAge(absl::Duration age);

// One row per run: run, last step, state, entropy mean, grad norm,
// anomalies, last report age ("finished" for finished runs).
std::string FormatRunsTable(const v1::ListRunsResponse& runs, absl::Time now);

// One run in detail: counters, verdict with evidence and action, the latest
// step summary, its layer profile and the active anomalies.
std::string FormatRunDetails(const v1::RunStatus& run, absl::Time now);

// One line per acknowledged report, for --print-verdicts: where it came
// from (`origin`, e.g. "line 12"; may be empty), the report's run, rank and
// step, the run's state, the latest finalized step's entropy mean and grad
// norm, and the active anomalies.
std::string FormatAckLine(absl::string_view origin, const v1::Report& report, const v1::Ack& ack);

// "ENTROPY_COLLAPSE,ATTENTION_LOCKING" or "none".
std::string FormatAnomalyNames(const google::protobuf::RepeatedPtrField<v1::Anomaly>& anomalies);

// PATTERN:SEVERITY names joined by commas ("none" when empty), as
// --print-verdicts prints them.
std::string FormatAnomaliesWithSeverity(
    const google::protobuf::RepeatedPtrField<entrowatch::v1::Anomaly>& anomalies);

// "INVALID_ARGUMENT" for 3, and so on (google.rpc.Code names).
std::string CodeName(int code);

// Protobuf JSON mapping, indented, every field printed, for --json.
absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message);

}  // namespace entrowatch::cli
