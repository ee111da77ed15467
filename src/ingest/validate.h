#pragma once

// Structural validation of a Report, cheap enough for the gRPC thread: every
// field is checked except the finiteness of raw logits and Q/K tensors, which
// the compute step checks while it reads them anyway.

#include <cstdint>

#include "absl/status/status.h"
#include "entrowatch/v1/entrowatch.pb.h"

namespace entrowatch::ingest {

struct ValidationLimits {
  int64_t max_rows_per_report = 65536;
  int64_t max_elements_per_report = int64_t{1} << 30;
};

// OK, or InvalidArgument whose message names the field (with its index, e.g.
// "logits[1].target_ids[3]") and the problem.
absl::Status ValidateReport(const entrowatch::v1::Report& report, const ValidationLimits& limits);

// run_id: 1-128 characters of [A-Za-z0-9_.:-].
absl::Status ValidateRunId(const std::string& run_id);

// world_size with proto3's 0 = 1.
inline uint32_t EffectiveWorldSize(const entrowatch::v1::Report& r) {
  return r.world_size() == 0 ? 1 : r.world_size();
}

// Bytes a queued report accounts for (its serialized size).
int64_t ReportBytes(const entrowatch::v1::Report& report);

}  // namespace entrowatch::ingest
