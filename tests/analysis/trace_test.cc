// Replays every trace in tests/data through RunAnalyzer with the shipped
// config/entrowatch.yaml and checks the expectations of its NAME.meta.json.

#include <dirent.h>

#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "analysis/health/run_analyzer.h"
#include "config/config.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "trace_summary.h"

namespace entrowatch::analysis {
namespace {

namespace v1 = ::entrowatch::v1;
using google::protobuf::Struct;
using google::protobuf::Value;

constexpr absl::string_view kMetaSuffix = ".meta.json";

std::vector<std::string> TraceNames() {
  std::vector<std::string> names;
  DIR* dir = opendir(ENTROWATCH_TEST_DATA_DIR);
  if (dir == nullptr) {
    return names;
  }
  while (dirent* e = readdir(dir)) {
    const std::string file = e->d_name;
    if (absl::EndsWith(file, kMetaSuffix)) {
      names.push_back(file.substr(0, file.size() - kMetaSuffix.size()));
    }
  }
  closedir(dir);
  std::sort(names.begin(), names.end());
  return names;
}

Struct LoadMeta(const std::string& name) {
  std::ifstream in(absl::StrCat(ENTROWATCH_TEST_DATA_DIR, "/", name, kMetaSuffix));
  std::stringstream text;
  text << in.rdbuf();
  Struct meta;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(text.str(), &meta).ok()) << name;
  return meta;
}

std::set<std::string> StringList(const Struct& meta, const std::string& key) {
  std::set<std::string> out;
  auto it = meta.fields().find(key);
  if (it != meta.fields().end()) {
    for (const Value& v : it->second.list_value().values()) {
      out.insert(v.string_value());
    }
  }
  return out;
}

double Number(const Struct& meta, const std::string& key, double fallback) {
  auto it = meta.fields().find(key);
  return it == meta.fields().end() ? fallback : it->second.number_value();
}

// What the analyzer said after one step.
struct Observed {
  uint64_t step = 0;
  v1::HealthState state = v1::HEALTH_STATE_UNSPECIFIED;
  std::set<std::string> patterns;
};

class TraceTest : public ::testing::TestWithParam<std::string> {};

TEST_P(TraceTest, MeetsMetaExpectations) {
  const std::string name = GetParam();
  const Struct meta = LoadMeta(name);
  auto config = config::LoadConfigFile(ENTROWATCH_CONFIG_FILE);
  ASSERT_TRUE(config.ok()) << config.status();
  auto reports = testing::ReadTrace(absl::StrCat(ENTROWATCH_TEST_DATA_DIR, "/", name, ".jsonl"));
  ASSERT_TRUE(reports.ok()) << reports.status();
  ASSERT_FALSE(reports->empty());
  const auto steps = testing::SummarizeSteps(*reports, config->aggregation.high_entropy_threshold);

  RunAnalyzer analyzer(ResolveThresholds(config->analysis, reports->front().run_id()));
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
    o.state = analyzer.verdict().state();
    for (const auto& a : analyzer.ActiveAnomalies()) {
      o.patterns.insert(v1::Pattern_Name(a.pattern()));
    }
    if (verbose) {
      absl::StrAppend(&log, "step ", o.step, ": ", v1::HealthState_Name(o.state), ": ",
                      analyzer.verdict().reason(), "\n");
    } else if (o.state != previous) {
      absl::StrAppend(&log, "step ", o.step, ": ", v1::HealthState_Name(o.state), " since ",
                      analyzer.verdict().since_step(), ": ", analyzer.verdict().reason(), "\n");
    }
    for (const auto& a : analyzer.NewlyFired()) {
      absl::StrAppend(&log, "step ", o.step, ": + ", v1::Pattern_Name(a.pattern()), " [",
                      a.subject(), "] since ", a.since_step(), ": ", a.reason(), "\n");
    }
    for (const auto& p : previous_patterns) {
      if (o.patterns.count(p) == 0) {
        absl::StrAppend(&log, "step ", o.step, ": - ", p, "\n");
      }
    }
    previous = o.state;
    previous_patterns = o.patterns;
    timeline.push_back(std::move(o));
  }
  std::cout << name << " (" << steps.size() << " steps)\n" << log;

  const auto healthy = meta.fields().find("healthy");
  if (healthy != meta.fields().end() && healthy->second.bool_value()) {
    int judged = 0;
    for (const auto& o : timeline) {
      if (o.state == v1::WARMUP) {
        continue;
      }
      ++judged;
      EXPECT_EQ(o.state, v1::NORMAL) << name << " step " << o.step;
      EXPECT_TRUE(o.patterns.empty()) << name << " step " << o.step << ": " << *o.patterns.begin();
    }
    EXPECT_GT(judged, 0) << name << " never left WARMUP";
    return;
  }

  const uint64_t onset = static_cast<uint64_t>(Number(meta, "onset_step", -1));
  const uint64_t delay = static_cast<uint64_t>(Number(meta, "max_delay_steps", -1));
  ASSERT_GE(Number(meta, "onset_step", -1), 0) << name << ": meta needs onset_step";
  ASSERT_GE(Number(meta, "max_delay_steps", -1), 0) << name << ": meta needs max_delay_steps";
  const std::set<std::string> states = StringList(meta, "expected_states");
  const std::set<std::string> patterns = StringList(meta, "expected_patterns");
  ASSERT_FALSE(states.empty() && patterns.empty()) << name << ": meta expects nothing";

  std::set<std::string> seen_states;
  std::set<std::string> seen_patterns;
  for (const auto& o : timeline) {
    if (o.step < onset) {
      EXPECT_TRUE(o.state == v1::WARMUP || o.state == v1::NORMAL)
          << name << " step " << o.step << " before onset: " << v1::HealthState_Name(o.state);
      EXPECT_TRUE(o.patterns.empty())
          << name << " step " << o.step << " before onset: " << *o.patterns.begin();
    } else if (o.step <= onset + delay) {
      seen_states.insert(v1::HealthState_Name(o.state));
      seen_patterns.insert(o.patterns.begin(), o.patterns.end());
    }
  }
  for (const auto& s : states) {
    EXPECT_TRUE(seen_states.count(s))
        << name << ": " << s << " not reached within " << delay << " steps of onset " << onset;
  }
  for (const auto& p : patterns) {
    EXPECT_TRUE(seen_patterns.count(p))
        << name << ": " << p << " not detected within " << delay << " steps of onset " << onset;
  }
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
  for (const auto& n : names) {
    recorded += absl::StartsWith(n, "real-") ? 1 : 0;
  }
  EXPECT_GE(recorded, 3);
}

}  // namespace
}  // namespace entrowatch::analysis
