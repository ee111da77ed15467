// Replays every trace of tests/data through the real entrowatchd with
// `entrowatch replay --print-verdicts` and checks the per-step verdicts the
// daemon acknowledged, and the final `entrowatch status --json`, against the
// trace's NAME.meta.json.

#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "entrowatch/v1/entrowatch.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "testing/daemon_process.h"
#include "trace_expectations.h"

namespace entrowatch::analysis {
namespace {

namespace v1 = ::entrowatch::v1;
using entrowatch::testing::DaemonProcess;

class ReplayTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ReplayTest, DaemonVerdictsMeetMetaExpectations) {
  const std::string name = GetParam();
  auto daemon = DaemonProcess::Start();
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  const std::string cli =
      absl::StrCat(ENTROWATCH_CLI_PATH, " --addr ", (*daemon)->grpc_address(), " ");

  const auto replay = entrowatch::testing::RunCommand(
      absl::StrCat(cli, "replay '", testing::TracePath(name), "' --print-verdicts --timeout 120"));
  ASSERT_EQ(replay.exit_code, 0) << replay.output << (*daemon)->Log();

  // One line per acknowledged report; world_size 1 finalizes its step.
  const std::regex line_re(
      R"(run (\S+) rank \d+ step (\d+)[^:]*: state ([A-Z_-]+) \|.*\| anomalies (\S+)\s*$)");
  std::vector<testing::Observed> timeline;
  std::string run_id;
  for (const auto& line : absl::StrSplit(replay.output, '\n')) {
    std::smatch m;
    const std::string text(line);
    if (!std::regex_search(text, m, line_re)) {
      continue;
    }
    run_id = m[1];
    testing::Observed o;
    o.step = std::stoull(m[2]);
    o.state = m[3];
    if (m[4] != "none") {
      // PATTERN:SEVERITY, as --print-verdicts prints them.
      for (const auto& p : absl::StrSplit(std::string(m[4]), ',')) {
        const std::vector<std::string> parts = absl::StrSplit(p, ':');
        o.patterns.insert(parts[0]);
        EXPECT_EQ(parts.size(), 2u) << text;
        if (parts.size() == 2) {
          o.Raise(parts[0], parts[1]);
        }
      }
    }
    timeline.push_back(std::move(o));
  }
  ASSERT_FALSE(timeline.empty()) << replay.output;
  testing::ExpectMeetsMeta(name, timeline);

  const auto status =
      entrowatch::testing::RunCommand(absl::StrCat(cli, "status --run '", run_id, "' --json"));
  ASSERT_EQ(status.exit_code, 0) << status.output;
  v1::RunStatus run;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(status.output, &run).ok())
      << status.output;
  EXPECT_EQ(run.run_id(), run_id);
  EXPECT_TRUE(run.finished());
  EXPECT_EQ(run.last_step(), timeline.back().step);
  EXPECT_EQ(v1::HealthState_Name(run.verdict().state()), timeline.back().state);
  EXPECT_FALSE(run.verdict().reason().empty());
}

INSTANTIATE_TEST_SUITE_P(Traces, ReplayTest, ::testing::ValuesIn(testing::TraceNames()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string id = info.param;
                           for (char& c : id) {
                             if (!isalnum(static_cast<unsigned char>(c))) {
                               c = '_';
                             }
                           }
                           return id;
                         });

}  // namespace
}  // namespace entrowatch::analysis
