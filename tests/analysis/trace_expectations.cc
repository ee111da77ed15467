#include "trace_expectations.h"

#include <dirent.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

namespace entrowatch::analysis::testing {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;

constexpr absl::string_view kMetaSuffix = ".meta.json";

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

double Number(const Struct& meta, const std::string& key) {
  auto it = meta.fields().find(key);
  return it == meta.fields().end() ? -1 : it->second.number_value();
}

// An INFO event longer than this many consecutive steps is not "short".
constexpr int kMaxInfoSteps = 6;

int Rank(const std::string& severity) {
  if (severity == "CRITICAL") {
    return 3;
  }
  if (severity == "WARNING") {
    return 2;
  }
  return severity == "INFO" ? 1 : 0;
}

// Checks a quiet stretch: NORMAL or WARMUP, no warning or critical anomaly,
// INFO events no longer than kMaxInfoSteps steps.
void ExpectQuiet(const std::string& name, const std::vector<Observed>& timeline, uint64_t before,
                 const char* where) {
  int info_run = 0;
  for (const auto& o : timeline) {
    if (o.step >= before) {
      break;
    }
    // "-": acknowledged before any step of the run was finalized (the first
    // rank of a multi-rank step).
    EXPECT_TRUE(o.state == "WARMUP" || o.state == "NORMAL" || o.state == "-")
        << name << " step " << o.step << where << ": " << o.state;
    bool info = false;
    for (const auto& p : o.patterns) {
      auto it = o.severities.find(p);
      const std::string severity = it == o.severities.end() ? "UNKNOWN" : it->second;
      EXPECT_EQ(severity, "INFO") << name << " step " << o.step << where << ": " << p;
      info = true;
    }
    info_run = info ? info_run + 1 : 0;
    EXPECT_LE(info_run, kMaxInfoSteps) << name << " step " << o.step << where
                                       << ": an INFO event lasting " << info_run << " steps";
  }
}

}  // namespace

void Observed::Raise(const std::string& pattern, const std::string& severity) {
  auto [it, inserted] = severities.emplace(pattern, severity);
  if (!inserted && Rank(severity) > Rank(it->second)) {
    it->second = severity;
  }
}

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

std::string TracePath(const std::string& name) {
  return absl::StrCat(ENTROWATCH_TEST_DATA_DIR, "/", name, ".jsonl");
}

void ExpectMeetsMeta(const std::string& name, const std::vector<Observed>& timeline) {
  std::ifstream in(absl::StrCat(ENTROWATCH_TEST_DATA_DIR, "/", name, kMetaSuffix));
  std::stringstream text;
  text << in.rdbuf();
  Struct meta;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(text.str(), &meta).ok()) << name;
  ASSERT_FALSE(timeline.empty()) << name;

  const auto healthy = meta.fields().find("healthy");
  if (healthy != meta.fields().end() && healthy->second.bool_value()) {
    int judged = 0;
    for (const auto& o : timeline) {
      judged += o.state == "WARMUP" ? 0 : 1;
    }
    EXPECT_GT(judged, 0) << name << " never left WARMUP";
    ExpectQuiet(name, timeline, UINT64_MAX, "");
    return;
  }

  ASSERT_GE(Number(meta, "onset_step"), 0) << name << ": meta needs onset_step";
  ASSERT_GE(Number(meta, "max_delay_steps"), 0) << name << ": meta needs max_delay_steps";
  const uint64_t onset = static_cast<uint64_t>(Number(meta, "onset_step"));
  const uint64_t delay = static_cast<uint64_t>(Number(meta, "max_delay_steps"));
  const std::set<std::string> states = StringList(meta, "expected_states");
  const std::set<std::string> patterns = StringList(meta, "expected_patterns");
  ASSERT_FALSE(states.empty() && patterns.empty()) << name << ": meta expects nothing";
  ExpectQuiet(name, timeline, onset, " before onset");

  // Optional: the first anomaly (any severity) at or before this step.
  if (Number(meta, "max_first_alarm_step") >= 0) {
    const uint64_t deadline = static_cast<uint64_t>(Number(meta, "max_first_alarm_step"));
    uint64_t first = UINT64_MAX;
    for (const auto& o : timeline) {
      if (o.step >= onset && !o.patterns.empty()) {
        first = o.step;
        break;
      }
    }
    EXPECT_LE(first, deadline) << name << ": first alarm after step " << deadline;
  }

  std::set<std::string> seen_states;
  std::set<std::string> seen_patterns;
  for (const auto& o : timeline) {
    if (o.step >= onset && o.step <= onset + delay) {
      seen_states.insert(o.state);
      seen_patterns.insert(o.patterns.begin(), o.patterns.end());
    }
  }
  // Optional: the rank a RANK_OUTLIER must name (and the only one).
  if (Number(meta, "bad_rank") >= 0) {
    const std::string named =
        absl::StrCat("RANK_OUTLIER rank ", static_cast<int>(Number(meta, "bad_rank")));
    bool any_subjects = false;
    bool named_seen = false;
    for (const auto& o : timeline) {
      for (const auto& subject : o.subjects) {
        any_subjects = true;
        if (absl::StartsWith(subject, "RANK_OUTLIER ")) {
          EXPECT_EQ(subject, named) << name << " step " << o.step;
          named_seen = named_seen || subject == named;
        }
      }
    }
    if (any_subjects) {
      EXPECT_TRUE(named_seen) << name << ": " << named << " never active";
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

}  // namespace entrowatch::analysis::testing
