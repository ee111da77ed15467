#pragma once

// Real traces of tests/data, split into pseudo-ranks, and the job-level
// aggregate of one step's per-rank reports: what a job that combines its
// ranks' figures itself sends instead of them.

#include <cstdint>
#include <string>
#include <vector>

#include "entrowatch/v1/entrowatch.pb.h"

namespace entrowatch::testing {

namespace v1 = ::entrowatch::v1;

// Names (without .jsonl) of the traces in tests/data, sorted.
std::vector<std::string> TraceNames();

// The reports of tests/data/NAME.jsonl, in file order; fails the test on a
// line that does not parse.
std::vector<v1::Report> LoadTrace(const std::string& name);

// The reports of a trace grouped by step, in order; each group holds every
// rank's report of that step.
std::vector<std::vector<v1::Report>> GroupBySteps(const std::vector<v1::Report>& trace);

// Splits one step's reports (of any world size) into `ranks` per-rank
// reports of world size `ranks`: the token entropies are dealt round-robin
// (their kinds with them), every rank gets the step's attention entropies,
// grad norm, loss and scalars, as ranks after an all-reduce have them; only
// the last carries `final`.
std::vector<v1::Report> SplitIntoRanks(const std::vector<v1::Report>& step, uint32_t ranks);

// The one report a job sends for a step instead of `per_rank`: entropy
// summaries merged over the ranks, attention summed per head, each rank's
// figures in summary.ranks, named scalars averaged. Sent by the first rank.
v1::Report AggregateRanks(const std::vector<v1::Report>& per_rank, double high_entropy_threshold);

}  // namespace entrowatch::testing
