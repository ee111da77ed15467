#pragma once

// The expectations of tests/data/NAME.meta.json and the check of a verdict
// timeline against them, shared by the in-process trace test and the replay
// through the real daemon.

#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace entrowatch::analysis::testing {

// What the analysis said after one step.
struct Observed {
  uint64_t step = 0;
  std::string state;               // HealthState name
  std::set<std::string> patterns;  // active Pattern names
};

// Names of the traces in ENTROWATCH_TEST_DATA_DIR (NAME for each NAME.meta.json), sorted.
std::vector<std::string> TraceNames();

// Path of NAME.jsonl.
std::string TracePath(const std::string& name);

// Records a gtest failure for every expectation of NAME.meta.json the
// timeline misses. Healthy traces: NORMAL and no anomaly after WARMUP.
// Others: no anomaly and WARMUP/NORMAL before the onset step, and every
// expected state and pattern seen within max_delay_steps of it.
void ExpectMeetsMeta(const std::string& name, const std::vector<Observed>& timeline);

}  // namespace entrowatch::analysis::testing
