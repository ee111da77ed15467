#pragma once

// The escalation rule of the single-step spike detectors (GRAD_NORM_SPIKE,
// LOSS_SPIKE): a finding at the first offending step as info, with the
// configured severity once the spike persisted escalate_steps consecutive
// steps of its phase. Offending findings are extreme evidence.

#include "analysis/health/detector.h"
#include "config/analysis_config.h"

namespace entrowatch::analysis::detectors {

class SpikeStreak {
 public:
  // Counts this step of `phase` in or out of the streak and sets f's outcome
  // (and, when offending, extreme and severity). Returns the streak length,
  // 0 when the step does not offend.
  int Judge(int phase, bool offending, int escalate_steps, config::AnomalySeverity severity,
            Finding* f) {
    int& streak = streak_[phase];
    if (!offending) {
      streak = 0;
      f->outcome = Outcome::kFalse;
      return 0;
    }
    ++streak;
    f->outcome = Outcome::kTrue;
    f->extreme = true;
    f->severity = streak >= escalate_steps ? severity : config::AnomalySeverity::kInfo;
    return streak;
  }

  void Reset() { streak_[0] = streak_[1] = streak_[2] = 0; }

 private:
  int streak_[3] = {0, 0, 0};
};

}  // namespace entrowatch::analysis::detectors
