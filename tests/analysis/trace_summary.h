#pragma once

// Test helpers: read a JSONL trace (one Report per line, protobuf JSON
// mapping) and pool each step's reports into the StepSummary the daemon's
// aggregator would hand to the analysis.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "entrowatch/v1/entrowatch.pb.h"

namespace entrowatch::analysis::testing {

// Parses every non-empty line of the file at `path` as a Report.
absl::StatusOr<std::vector<entrowatch::v1::Report>> ReadTrace(const std::string& path);

// Groups reports by step (in order of first appearance) and pools token
// entropies, grad norm, scalars and attention entropies of each step.
// high_entropy_threshold is the normalized entropy counted as high.
std::vector<entrowatch::v1::StepSummary> SummarizeSteps(
    const std::vector<entrowatch::v1::Report>& reports, double high_entropy_threshold);

}  // namespace entrowatch::analysis::testing
