#pragma once

// The one place a wire Report becomes engine inputs and the contribution it
// makes to its step. proto3 sends zero for a field that was not set; these
// are the rules that give those zeros their meaning:
//   LogitsBlock.valid_vocab 0       every column is valid
//   LogitsBlock.temperature 0       1
//   SamplingParams.top_p 0          1 (off); top_k 0 is off as it stands
//   AttentionBlock.scale 0          1/sqrt(head_dim) (the engines' own rule)
//   Report.phase PHASE_UNSPECIFIED  TRAIN
//   Report.world_size 0             1 (EffectiveWorldSize, validate.h)
//
// AttentionBlock.query_kinds is validated (none, or one per query) but not
// aggregated: a step's attention entropy is the mean over every query of a
// layer, prompt and generated alike. Splitting it by kind would take new
// StepSummary fields; until then the field is accepted so that clients that
// send it stay valid, and it changes nothing.
//
// Every function expects a report that passed ValidateReport (validate.h).
// Thread-safe (no state).

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "analysis/step_aggregator.h"
#include "compute/entropy_engine.h"
#include "entrowatch/v1/entrowatch.pb.h"

namespace entrowatch::ingest {

// The engine input of a validated block. It points into `block`, which must
// outlive it.
compute::LogitsInput LogitsInputOf(const entrowatch::v1::LogitsBlock& block);
compute::AttentionInput AttentionInputOf(const entrowatch::v1::AttentionBlock& block);

// The report's phase, TRAIN when unset.
entrowatch::v1::Phase PhaseOf(const entrowatch::v1::Report& report);

struct ContributionOptions {
  // A logits row with NaN/+Inf, or with no finite value, is left out (and
  // counted in ComputeCost::skipped_rows) instead of refusing the report.
  bool skip_nonfinite_rows = false;
};

// What computing one report took, for the daemon's statistics.
struct ComputeCost {
  struct EngineCall {
    absl::string_view kind;  // "token" or "attention"
    double seconds = 0;
  };
  std::vector<EngineCall> engine_calls;  // one per block computed, in order
  int64_t skipped_rows = 0;
};

// Computes the entropies of a validated report with `engine` and folds what
// the report carries (entropies, attention, grad norm, scalars, rank, step,
// phase, world size) into the contribution to its step. Errors name the
// block: InvalidArgument for values the engines refuse ("logits[0].logits row
// 3 contains NaN or +Inf", "attention[1].q ..."), the engine's own code
// prefixed with the block ("logits[1]: ...") otherwise. `cost` (may be null)
// is filled on error too, with what ran before the error.
absl::StatusOr<analysis::ReportContribution> ComputeContribution(
    const entrowatch::v1::Report& report, compute::EntropyEngine& engine,
    const ContributionOptions& options, ComputeCost* cost);

}  // namespace entrowatch::ingest
