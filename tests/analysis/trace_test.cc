// Replays every trace in tests/data through RunAnalyzer with the shipped
// config/entrowatch.yaml and checks the expectations of its NAME.meta.json.

#include <cstdlib>
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "analysis/health/run_analyzer.h"
#include "config/config.h"
#include "gtest/gtest.h"
#include "trace_expectations.h"
#include "trace_summary.h"

namespace entrowatch::analysis {
namespace {

namespace v1 = ::entrowatch::v1;
using testing::Observed;
using testing::TraceNames;

class TraceTest : public ::testing::TestWithParam<std::string> {};

TEST_P(TraceTest, MeetsMetaExpectations) {
  const std::string name = GetParam();
  auto config = config::LoadConfigFile(ENTROWATCH_CONFIG_FILE);
  ASSERT_TRUE(config.ok()) << config.status();
  auto reports = testing::ReadTrace(testing::TracePath(name));
  ASSERT_TRUE(reports.ok()) << reports.status();
  ASSERT_FALSE(reports->empty());
  const auto steps = testing::SummarizeSteps(*reports, config->aggregation.high_entropy_threshold);

  RunAnalyzer analyzer(ResolveThresholds(config->analysis, reports->front().run_id()),
                       config->analysis.rules);
  std::vector<Observed> timeline;
  std::string log;
  v1::HealthState previous = analyzer.verdict().state();
  std::set<std::string> previous_patterns;
  // ENTROWATCH_TRACE_VERBOSE=1 prints the verdict after every step, not only
  // the changes.
  const bool verbose = getenv("ENTROWATCH_TRACE_VERBOSE") != nullptr;
  for (const auto& step : steps) {
    analyzer.Observe(step);
    Observed o;
    o.step = step.step();
    o.state = v1::HealthState_Name(analyzer.verdict().state());
    for (const auto& a : analyzer.ActiveAnomalies()) {
      o.patterns.insert(v1::Pattern_Name(a.pattern()));
      o.Raise(v1::Pattern_Name(a.pattern()), v1::Severity_Name(a.severity()));
      o.subjects.insert(absl::StrCat(v1::Pattern_Name(a.pattern()), " ", a.subject()));
    }
    if (verbose) {
      absl::StrAppend(&log, "step ", o.step, ": ", o.state, ": ", analyzer.verdict().reason(),
                      "\n");
    } else if (analyzer.verdict().state() != previous) {
      absl::StrAppend(&log, "step ", o.step, ": ", o.state, " since ",
                      analyzer.verdict().since_step(), ": ", analyzer.verdict().reason(), "\n");
    }
    for (const auto& a : analyzer.NewlyFired()) {
      absl::StrAppend(&log, "step ", o.step, ": + ", v1::Pattern_Name(a.pattern()), " ",
                      v1::Severity_Name(a.severity()), " [", a.subject(), "] since ",
                      a.since_step(), ": ", a.reason(), "\n");
    }
    for (const auto& p : previous_patterns) {
      if (o.patterns.count(p) == 0) {
        absl::StrAppend(&log, "step ", o.step, ": - ", p, "\n");
      }
    }
    previous = analyzer.verdict().state();
    previous_patterns = o.patterns;
    timeline.push_back(std::move(o));
  }
  std::cout << name << " (" << steps.size() << " steps)\n" << log;

  testing::ExpectMeetsMeta(name, timeline);
}

INSTANTIATE_TEST_SUITE_P(Traces, TraceTest, ::testing::ValuesIn(TraceNames()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string id = info.param;
                           for (char& c : id) {
                             if (!isalnum(static_cast<unsigned char>(c))) {
                               c = '_';
                             }
                           }
                           return id;
                         });

TEST(TraceSet, HasRecordedAndSyntheticTraces) {
  const auto names = TraceNames();
  int recorded = 0;
  int synthetic = 0;
  for (const auto& n : names) {
    recorded += absl::StartsWith(n, "real-") ? 1 : 0;
    synthetic += absl::StartsWith(n, "synth-") ? 1 : 0;
  }
  EXPECT_GE(recorded, 3);
  EXPECT_GE(synthetic, 1);
}

}  // namespace
}  // namespace entrowatch::analysis
