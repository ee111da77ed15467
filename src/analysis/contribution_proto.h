#pragma once

// ReportContribution <-> store::v1::Contribution, the record the state
// database keeps for a report of a step still pending. The two carry the same
// fields; a field added to ReportContribution is added to the message
// (store/store.proto) and to both functions here.

#include "analysis/step_aggregator.h"
#include "store/store.pb.h"

namespace entrowatch::analysis {

store::v1::Contribution ToProto(const ReportContribution& c);

// `c` has per-token arrays of equal length, as DurableStore hands them out.
ReportContribution FromProto(const store::v1::Contribution& c);

}  // namespace entrowatch::analysis
