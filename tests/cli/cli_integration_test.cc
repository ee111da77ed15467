#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli/commands.h"
#include "cli/trace.h"
#include "fake_monitor.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

namespace entrowatch::cli {
namespace {

using ::entrowatch::testing::FakeMonitor;
using ::entrowatch::testing::FakeMonitorOptions;
using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

struct Result {
  int code;
  std::string out;
  std::string err;
};

Result RunCommand(std::vector<std::string> args) {
  std::ostringstream out;
  std::ostringstream err;
  const int code = RunCli(args, out, err);
  return {code, out.str(), err.str()};
}

std::string WriteFile(const std::string& name, const std::string& text) {
  const std::string path = absl::StrCat(::testing::TempDir(), "/", name);
  std::ofstream(path) << text;
  return path;
}

// Rejects a negative grad norm as the daemon does, and reports a state.
v1::Ack Answer(const v1::Report& report) {
  v1::Ack ack;
  ack.set_seq(report.seq());
  ack.set_step(report.step());
  if (report.grad().global_norm() < 0) {
    ack.set_code(3);
    ack.set_message("grad.global_norm: must be finite and >= 0, got -1");
    return ack;
  }
  // The simulated panic run "turns" at step 8.
  const bool panic = report.run_id() == "sim-x" && report.step() >= 8;
  ack.mutable_verdict()->set_state(panic ? v1::PANIC_ZONE : v1::NORMAL);
  ack.mutable_verdict()->set_step(report.step());
  if (panic && report.step() >= 9) {
    ack.add_anomalies()->set_pattern(v1::ENTROPY_DRIFT);
  }
  ack.mutable_latest_step()->set_step(report.step());
  ack.mutable_latest_step()->set_token_count(1);
  ack.mutable_latest_step()->set_entropy_mean(2.5);
  return ack;
}

std::string Line(uint64_t step, double grad_norm) {
  return absl::StrCat(R"({"runId": "trace-run", "rank": 0, "step": ")", step,
                      R"(", "grad": {"globalNorm": )", grad_norm, "}}");
}

class CliIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    FakeMonitorOptions options;
    options.answer = Answer;
    v1::RunStatus run;
    run.set_run_id("alpha");
    run.set_last_step(42);
    run.mutable_verdict()->set_state(v1::COMFORT_ZONE);
    run.mutable_latest()->set_step(42);
    run.mutable_latest()->set_token_count(100);
    run.mutable_latest()->set_entropy_mean(0.25);
    run.add_history()->set_step(41);
    options.runs.push_back(run);
    run.set_run_id("beta");
    run.mutable_verdict()->set_state(v1::PANIC_ZONE);
    options.runs.push_back(run);
    server_ = FakeMonitor::Start(options);
    ASSERT_NE(server_, nullptr);
  }

  std::unique_ptr<FakeMonitor> server_;
};

TEST_F(CliIntegrationTest, ReplayPrintsRejectedAndUnparsableLinesAndExitsNonZero) {
  const std::string path = WriteFile(
      "mixed.jsonl", absl::StrCat(Line(1, 0.5), "\n", "{broken\n", Line(2, -1), "\n", "\n",
                                  Line(3, 0.7), "\n", Line(4, -1), "\n", Line(5, 0.9), "\n"));
  const Result r = RunCommand({"replay", path, "--addr", server_->address()});
  EXPECT_EQ(r.code, kExitError);
  EXPECT_THAT(r.err, HasSubstr("line 2: "));
  EXPECT_THAT(r.err, HasSubstr("line 3: rejected: INVALID_ARGUMENT: grad.global_norm: must be "
                               "finite and >= 0, got -1"));
  EXPECT_THAT(r.err, HasSubstr("line 6: rejected: INVALID_ARGUMENT"));
  for (int ok_line : {1, 4, 5, 7}) {
    EXPECT_THAT(r.err, Not(HasSubstr(absl::StrCat("line ", ok_line, ":"))));
  }
  // One line per problem.
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 3);
  EXPECT_THAT(r.out, HasSubstr("5 reports sent, 5 acknowledged (0 duplicate, 0 late), 2 "
                               "rejected, 1 unparsable, 0 not sent"));
  // Every parsable line went out (the stream went on after each error).
  EXPECT_EQ(server_->received().size(), 5u);
}

TEST_F(CliIntegrationTest, CleanReplayExitsZeroAndPrintsVerdicts) {
  std::string text;
  for (uint64_t step = 1; step <= 20; ++step) {
    absl::StrAppend(&text, Line(step, 0.5), "\n");
  }
  const std::string path = WriteFile("clean.jsonl", text);
  const Result r = RunCommand({"--addr", server_->address(), "replay", path, "--print-verdicts"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.err, IsEmpty());
  EXPECT_THAT(r.out, HasSubstr("line 20: run trace-run rank 0 step 20: state NORMAL | step 20 "
                               "entropy_mean 2.5000"));
  const std::vector<std::string> lines = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  EXPECT_EQ(lines.size(), 21u);  // 20 verdicts and the summary
  std::vector<uint64_t> seqs;
  for (const v1::Report& report : server_->received()) {
    seqs.push_back(report.seq());
  }
  ASSERT_EQ(seqs.size(), 20u);
  EXPECT_EQ(seqs.front(), 1u);
  EXPECT_EQ(seqs.back(), 20u);
}

TEST_F(CliIntegrationTest, ReplayReadsStdinAndNamesAMissingFile) {
  std::istringstream input(absl::StrCat(Line(1, 0.5), "\n", Line(2, -1), "\n"));
  std::streambuf* const saved = std::cin.rdbuf(input.rdbuf());
  const Result r = RunCommand({"replay", "-", "--addr", server_->address()});
  std::cin.rdbuf(saved);
  EXPECT_EQ(r.code, kExitError);
  EXPECT_THAT(r.err, HasSubstr("line 2: rejected: INVALID_ARGUMENT"));
  EXPECT_EQ(server_->received().size(), 2u);

  const Result missing =
      RunCommand({"replay", "/nonexistent/trace.jsonl", "--addr", server_->address()});
  EXPECT_EQ(missing.code, kExitError);
  EXPECT_THAT(missing.err,
              HasSubstr("cannot open /nonexistent/trace.jsonl: No such file or directory"));
}

TEST_F(CliIntegrationTest, ReplayRateLimits) {
  std::string text;
  for (uint64_t step = 1; step <= 6; ++step) {
    absl::StrAppend(&text, Line(step, 0.5), "\n");
  }
  const std::string path = WriteFile("rate.jsonl", text);
  const absl::Time start = absl::Now();
  const Result r = RunCommand({"replay", path, "--rate", "20", "--addr", server_->address()});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  // Six reports at 20/s: the last one is due 250 ms after the first.
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(250));
}

TEST_F(CliIntegrationTest, StatusTableRunsAndJson) {
  Result r = RunCommand({"status", "--addr", server_->address()});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("RUN    LAST STEP  STATE"));
  EXPECT_THAT(r.out, ContainsRegex("alpha +42 +COMFORT_ZONE +0.250"));
  EXPECT_THAT(r.out, ContainsRegex("beta +42 +PANIC_ZONE"));

  r = RunCommand({"runs", "--addr", server_->address()});
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_EQ(r.out, "alpha\nbeta\n");

  r = RunCommand({"status", "--json", "--addr", server_->address()});
  EXPECT_EQ(r.code, kExitOk);
  v1::ListRunsResponse list;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &list).ok()) << r.out;
  ASSERT_EQ(list.runs_size(), 2);
  EXPECT_EQ(list.runs(1).verdict().state(), v1::PANIC_ZONE);

  r = RunCommand({"status", "--run", "alpha", "--json", "--addr", server_->address()});
  EXPECT_EQ(r.code, kExitOk);
  v1::RunStatus run;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &run).ok()) << r.out;
  EXPECT_EQ(run.history_size(), 1);

  r = RunCommand({"status", "--run", "alpha", "--addr", server_->address()});
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_THAT(r.out, HasSubstr("state        COMFORT_ZONE"));

  r = RunCommand({"status", "--run", "nope", "--addr", server_->address()});
  EXPECT_EQ(r.code, kExitError);
  EXPECT_THAT(r.err, HasSubstr("NOT_FOUND: run_id: unknown run \"nope\""));
}

TEST_F(CliIntegrationTest, SimulateStreamsEveryRankAndFinishesTheRun) {
  const Result r =
      RunCommand({"simulate", "--scenario", "panic", "--steps", "10", "--ranks", "3", "--onset",
                  "5", "--run", "sim-x", "--vocab", "512", "--addr", server_->address()});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("simulated run sim-x (scenario panic, onset step 5): 10 steps x 3 "
                               "ranks, 30 reports sent, 30 acknowledged, 0 rejected, run marked "
                               "finished; last ack: step 10 state PANIC_ZONE, anomalies "
                               "ENTROPY_DRIFT; detected: PANIC_ZONE at step 8, ENTROPY_DRIFT at "
                               "step 9\n"));
  const std::vector<v1::Report> received = server_->received();
  ASSERT_EQ(received.size(), 30u);
  int finals = 0;
  int logits_blocks = 0;
  for (size_t i = 0; i < received.size(); ++i) {
    const v1::Report& report = received[i];
    EXPECT_EQ(report.run_id(), "sim-x");
    EXPECT_EQ(report.world_size(), 3u);
    EXPECT_EQ(report.step(), i / 3 + 1);
    EXPECT_EQ(report.rank(), i % 3);
    EXPECT_EQ(report.seq(), i + 1);
    finals += report.final() ? 1 : 0;
    logits_blocks += report.logits_size();
  }
  EXPECT_EQ(finals, 1);
  EXPECT_TRUE(received.back().final());
  EXPECT_EQ(logits_blocks, 6);  // steps 5 and 10, three ranks each
}

TEST_F(CliIntegrationTest, SimulateNoFinish) {
  const Result r = RunCommand({"simulate", "--steps", "3", "--no-finish", "--logits-every", "0",
                               "--addr", server_->address()});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  for (const v1::Report& report : server_->received()) {
    EXPECT_FALSE(report.final());
    EXPECT_EQ(report.logits_size(), 0);
  }
  EXPECT_THAT(r.out, Not(HasSubstr("finished")));
}

TEST(CliTest, UnreachableDaemonIsAClearError) {
  const std::string addr = absl::StrCat("127.0.0.1:", ::entrowatch::testing::UnusedPort());
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"status", "--addr", addr},
           {"runs", "--addr", addr},
           {"simulate", "--connect-timeout", "0.2", "--addr", addr}}) {
    const Result r = RunCommand(args);
    EXPECT_EQ(r.code, kExitError) << args[0];
    EXPECT_THAT(r.err, HasSubstr(absl::StrCat("cannot reach entrowatchd at ", addr, ": ")));
  }
  const std::string path = WriteFile("one.jsonl", Line(1, 0.5) + "\n");
  const Result r = RunCommand({"replay", path, "--connect-timeout", "0.2", "--addr", addr});
  EXPECT_EQ(r.code, kExitError);
  EXPECT_THAT(r.err, HasSubstr(absl::StrCat("cannot reach entrowatchd at ", addr, ": ")));
}

TEST(CliTest, AddressComesFromEntrowatchAddressAndTheOldNameStillWorks) {
  const std::string addr = absl::StrCat("127.0.0.1:", ::entrowatch::testing::UnusedPort());
  const std::string other = absl::StrCat("127.0.0.1:", ::entrowatch::testing::UnusedPort());
  unsetenv("ENTROWATCH_ADDRESS");
  setenv("ENTROWATCH_ADDR", addr.c_str(), 1);
  Result r = RunCommand({"runs"});
  EXPECT_EQ(r.code, kExitError);
  EXPECT_THAT(r.err, HasSubstr("ENTROWATCH_ADDR is deprecated; set ENTROWATCH_ADDRESS"));
  EXPECT_THAT(r.err, HasSubstr(absl::StrCat("cannot reach entrowatchd at ", addr, ": ")));

  setenv("ENTROWATCH_ADDRESS", other.c_str(), 1);  // the new name wins, silently
  r = RunCommand({"runs"});
  EXPECT_THAT(r.err, HasSubstr(absl::StrCat("cannot reach entrowatchd at ", other, ": ")));
  EXPECT_THAT(r.err, Not(HasSubstr("deprecated")));
  unsetenv("ENTROWATCH_ADDR");
  unsetenv("ENTROWATCH_ADDRESS");
}

TEST(CliTest, UsageErrorsExitTwoAndHelpWorksEverywhere) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{},
                                             {"frobnicate"},
                                             {"--bogus"},
                                             {"status", "--bogus"},
                                             {"status", "extra"},
                                             {"replay"},
                                             {"replay", "a", "--rate", "fast"},
                                             {"simulate", "--scenario", "meltdown"},
                                             {"simulate", "--steps", "0"},
                                             {"check-config"}}) {
    const Result r = RunCommand(args);
    EXPECT_EQ(r.code, kExitUsage) << absl::StrJoin(args, " ");
    EXPECT_THAT(r.err, Not(IsEmpty()));
  }
  for (const char* command : {"status", "runs", "replay", "simulate", "check-config"}) {
    const Result r = RunCommand({command, "--help"});
    EXPECT_EQ(r.code, kExitOk) << command;
    EXPECT_THAT(r.out, HasSubstr(absl::StrCat("usage: entrowatch ", command)));
  }
  const Result help = RunCommand({"simulate", "--help"});
  for (const char* scenario :
       {"healthy", "entropy_collapse", "panic", "stagnation", "pathological_confidence",
        "comfort_zone", "overload", "attention_locking", "drift"}) {
    EXPECT_THAT(help.out, HasSubstr(absl::StrCat("  ", scenario, " ")));
  }
  EXPECT_EQ(RunCommand({"--help"}).code, kExitOk);
  const Result version = RunCommand({"--version"});
  EXPECT_EQ(version.code, kExitOk);
  EXPECT_THAT(version.out, ContainsRegex("^entrowatch [0-9]+\\.[0-9]+\\.[0-9]+\n$"));
}

TEST(CliTest, BenchPrintsATableOrJson) {
  Result r = RunCommand({"bench", "entropy", "--rows", "4", "--vocab", "1000", "--dtype", "bf16",
                         "--min-seconds", "0"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("GB/S"));
  EXPECT_THAT(r.out, ContainsRegex("entropy +cpu +bf16 +4x1000 +[0-9]+ +[0-9.]+ +[0-9.]+"));

  r = RunCommand(
      {"bench", "entropy", "--rows", "4", "--vocab", "1000", "--min-seconds", "0", "--json"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, ContainsRegex("\"gb_per_s\": ?[0-9.e+]+"));
  EXPECT_THAT(r.out, ContainsRegex("\"ms\": ?[0-9.e+-]+"));
  EXPECT_THAT(r.out, ContainsRegex("\"dtype\": ?\"fp32\""));

  r = RunCommand({"bench", "attention", "--heads", "4", "--kv-heads", "2", "--seq", "32",
                  "--head-dim", "16", "--causal", "--min-seconds", "0", "--json"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, ContainsRegex("\"kind\": ?\"attention\""));
  EXPECT_THAT(r.out, HasSubstr("\"gb_per_s\""));

  EXPECT_EQ(RunCommand({"bench"}).code, kExitUsage);
  EXPECT_EQ(RunCommand({"bench", "matmul"}).code, kExitUsage);
  EXPECT_EQ(RunCommand({"bench", "entropy", "--dtype", "fp64"}).code, kExitUsage);
  EXPECT_EQ(RunCommand({"bench", "attention", "--heads", "4", "--kv-heads", "3"}).code, kExitUsage);
  EXPECT_EQ(RunCommand({"bench", "--help"}).code, kExitOk);
  r = RunCommand({"bench", "attention", "--help"});
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_THAT(r.out, HasSubstr("--kv-heads K"));
}

TEST(CliTest, CheckConfig) {
  const std::string good = WriteFile("good.yaml", "grpc:\n  listen: \"127.0.0.1:0\"\n");
  Result r = RunCommand({"check-config", good, "--addr", "127.0.0.1:1"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, "ok\n");
  const std::string bad = WriteFile("bad.yaml", "grpc:\n  listen: 5\n");
  r = RunCommand({"check-config", bad});
  EXPECT_EQ(r.code, kExitError);
  EXPECT_THAT(r.err, HasSubstr("grpc.listen"));
  EXPECT_THAT(r.out, IsEmpty());
  const std::string bad_store = WriteFile("bad-store.yaml", "store:\n  max_db_bytes: -1\n");
  r = RunCommand({"check-config", bad_store});
  EXPECT_EQ(r.code, kExitError);
  EXPECT_THAT(r.err, HasSubstr("store.max_db_bytes (line 2)"));
  r = RunCommand({"check-config", "/nonexistent/entrowatch.yaml"});
  EXPECT_EQ(r.code, kExitError);
  EXPECT_THAT(r.err, Not(IsEmpty()));
}

}  // namespace
}  // namespace entrowatch::cli
