#pragma once

// The expectations of tests/data/NAME.meta.json and the check of a verdict
// timeline against them, shared by the in-process trace test and the replay
// through the real daemon.

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace entrowatch::analysis::testing {

// What the analysis said after one step.
struct Observed {
  uint64_t step = 0;
  std::string state;               // HealthState name
  std::set<std::string> patterns;  // active Pattern names
  // Severity name of each active pattern (the highest of its subjects).
  std::map<std::string, std::string> severities;
  // "PATTERN subject" of each active anomaly, when known (in-process only:
  // --print-verdicts does not print subjects).
  std::set<std::string> subjects;

  void Raise(const std::string& pattern, const std::string& severity);
};

// Names of the traces in ENTROWATCH_TEST_DATA_DIR (NAME for each NAME.meta.json), sorted.
std::vector<std::string> TraceNames();

// Path of NAME.jsonl.
std::string TracePath(const std::string& name);

// Records a gtest failure for every expectation of NAME.meta.json the
// timeline misses. Healthy traces: NORMAL after WARMUP and no anomaly but
// short INFO events (an isolated outlier batch). Others: the same before
// the onset step, every expected state and pattern seen within
// max_delay_steps of it, and, with max_first_alarm_step, a first anomaly at
// or before that step. With bad_rank (and subjects known), RANK_OUTLIER
// names that rank and no other.
void ExpectMeetsMeta(const std::string& name, const std::vector<Observed>& timeline);

}  // namespace entrowatch::analysis::testing
