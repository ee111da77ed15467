// Bounds on the durable state, against the real daemon: retention of step
// summaries and seqs, the store.max_db_bytes cap, and a file size limit from
// the OS (EFBIG). A refused write must reach the client as UNAVAILABLE, show
// in /metrics and the log, keep the daemon up, and lose nothing acknowledged.

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <fstream>
#include <future>
#include <limits>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "daemon/report_builder.h"
#include "entrowatch/v1/entrowatch.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/daemon_process.h"

namespace entrowatch::testing {
namespace {

using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

// Token entropies per report: about ten database pages of contribution.
constexpr int kTokens = 4096;

class StateDir {
 public:
  StateDir() {
    char path[] = "/tmp/entrowatch-state-XXXXXX";
    path_ = mkdtemp(path) != nullptr ? path : "";
  }
  ~StateDir() { RunCommand("rm -rf '" + path_ + "'"); }
  const std::string& path() const { return path_; }
  std::string db() const { return path_ + "/entrowatch.db"; }

 private:
  std::string path_;
};

std::unique_ptr<v1::Monitor::Stub> Stub(const DaemonProcess& daemon) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return v1::Monitor::NewStub(
      grpc::CreateCustomChannel(daemon.grpc_address(), grpc::InsecureChannelCredentials(), args));
}

grpc::Status Submit(const DaemonProcess& daemon, const v1::Report& r, v1::Ack* ack) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  return Stub(daemon)->Submit(&ctx, r, ack);
}

v1::RunStatus GetRun(const DaemonProcess& daemon, const std::string& run) {
  grpc::ClientContext ctx;
  v1::GetRunRequest req;
  req.set_run_id(run);
  req.set_history(100000);
  v1::RunStatus status;
  grpc::Status s = Stub(daemon)->GetRun(&ctx, req, &status);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return status;
}

std::vector<uint64_t> HistorySteps(const v1::RunStatus& run) {
  std::vector<uint64_t> steps;
  for (const auto& step : run.history()) {
    steps.push_back(step.step());
  }
  return steps;
}

std::vector<uint64_t> Range(uint64_t first, uint64_t end) {
  std::vector<uint64_t> out;
  for (uint64_t i = first; i < end; ++i) {
    out.push_back(i);
  }
  return out;
}

// grpc.health.v1.Health/Check answers SERVING.
bool Serving(const DaemonProcess& daemon) {
  grpc::GenericStub generic(
      grpc::CreateChannel(daemon.grpc_address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  grpc::Slice empty("");
  grpc::ByteBuffer request(&empty, 1);
  grpc::ByteBuffer response;
  std::promise<grpc::Status> done;
  generic.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                    [&](grpc::Status s) { done.set_value(s); });
  std::vector<grpc::Slice> slices;
  if (!done.get_future().get().ok() || !response.Dump(&slices).ok()) {
    return false;
  }
  std::string bytes;
  for (const auto& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return bytes == std::string("\x08\x01", 2);
}

double MetricValue(const DaemonProcess& daemon, const std::string& series) {
  auto scrape = daemon.Scrape();
  EXPECT_TRUE(scrape.ok()) << scrape.status();
  const std::string& m = *scrape;
  for (size_t pos = 0; (pos = m.find(series, pos)) != std::string::npos; pos += series.size()) {
    if (pos == 0 || m[pos - 1] == '\n') {
      const size_t space = m.find(' ', pos + series.size());
      return std::stod(m.substr(space + 1, m.find('\n', space) - space - 1));
    }
  }
  return std::numeric_limits<double>::quiet_NaN();
}

int Occurrences(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t pos = 0; (pos = text.find(needle, pos)) != std::string::npos; pos += needle.size()) {
    ++n;
  }
  return n;
}

// One integer column of a query on the daemon's database (read while it runs).
std::vector<uint64_t> Query(const std::string& db, const std::string& sql) {
  std::vector<uint64_t> out;
  sqlite3* conn = nullptr;
  EXPECT_EQ(sqlite3_open_v2(db.c_str(), &conn, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(conn, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK)
      << sqlite3_errmsg(conn);
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    out.push_back(static_cast<uint64_t>(sqlite3_column_int64(stmt, 0)));
  }
  EXPECT_EQ(rc, SQLITE_DONE) << sqlite3_errmsg(conn);
  sqlite3_finalize(stmt);
  sqlite3_close(conn);
  return out;
}

void StopAndRestart(DaemonProcess& daemon) {
  daemon.Signal(SIGTERM);
  ASSERT_TRUE(daemon.Wait(absl::Seconds(20)).ok());
  ASSERT_TRUE(daemon.Restart().ok()) << daemon.Log();
}

// Waits (bounded) until the daemon logged that it applied a reload.
void Reload(DaemonProcess& daemon, const std::string& from, const std::string& to) {
  std::stringstream config;
  config << std::ifstream(daemon.config_path()).rdbuf();
  ASSERT_THAT(config.str(), HasSubstr(from));
  std::ofstream(daemon.config_path(), std::ios::trunc)
      << absl::StrReplaceAll(config.str(), {{from, to}});
  const int before = Occurrences(daemon.Log(), "configuration reloaded");
  daemon.Signal(SIGHUP);
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (Occurrences(daemon.Log(), "configuration reloaded") == before && absl::Now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_GT(Occurrences(daemon.Log(), "configuration reloaded"), before) << daemon.Log();
}

v1::Report SmallReport(const std::string& run, uint64_t step) {
  v1::Report r = MakeReport(run, step, step + 1);
  AddEntropies(&r, {1.0f, 2.0f, 0.5f, 1.5f}, 1000);
  return r;
}

// One rank of a two-rank run, seq step + 1. Rank 0 alone leaves its steps
// pending, so each accepted report keeps kTokens entropies in the database.
v1::Report BigReport(const std::string& run, uint64_t step, uint32_t rank = 0) {
  v1::Report r = MakeReport(run, step, step + 1, rank, 2);
  std::vector<float> h(kTokens);
  for (int i = 0; i < kTokens; ++i) {
    h[i] = 1.0f + 0.001f * static_cast<float>((i + step) % 97);
  }
  AddEntropies(&r, h, 50000);
  return r;
}

struct Outcome {
  std::vector<uint64_t> acked;    // steps acknowledged OK
  std::vector<uint64_t> refused;  // steps refused
  grpc::Status refusal;           // the first refusal
};

// Rank-0 reports of steps 0, 1, ... until the store refuses one, then
// `extra` more (a full store stays full for reports of the same size).
Outcome SubmitUntilRefused(const DaemonProcess& daemon, const std::string& run, size_t extra) {
  Outcome out;
  for (uint64_t step = 0; step < 500 && out.refused.size() < extra + 1; ++step) {
    v1::Ack ack;
    grpc::Status s = Submit(daemon, BigReport(run, step), &ack);
    if (s.ok()) {
      EXPECT_TRUE(out.refused.empty()) << "step " << step << " accepted after a refusal";
      EXPECT_FALSE(ack.duplicate() || ack.late()) << step;
      out.acked.push_back(step);
    } else {
      if (out.refused.empty()) {
        out.refusal = s;
      }
      out.refused.push_back(step);
    }
  }
  return out;
}

// What the store holds of a run fed by SubmitUntilRefused: every acknowledged
// report (its seq is a duplicate, its step pending) and none refused.
void ExpectExactlyAcknowledged(const DaemonProcess& daemon, const std::string& run,
                               const Outcome& outcome) {
  EXPECT_EQ(GetRun(daemon, run).pending_steps(), outcome.acked.size());
  for (uint64_t step : outcome.acked) {
    v1::Ack ack;
    grpc::Status s = Submit(daemon, BigReport(run, step), &ack);
    EXPECT_TRUE(s.ok()) << step << ": " << s.error_message();
    EXPECT_TRUE(ack.duplicate()) << "acknowledged step " << step << " was lost";
  }
}

TEST(StoreLimitsTest, RetentionKeepsTheNewestStepsAndSeqsPerRun) {
  StateDir state;
  auto daemon =
      DaemonProcess::Start(absl::StrCat("state_dir: ", state.path(),
                                        "\nstore: {retention_steps: 10}\nruns: {dedup_window: 5}\n"
                                        "aggregation: {history_steps: 1000}\n"));
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  DaemonProcess& d = **daemon;
  for (uint64_t step = 0; step < 30; ++step) {
    v1::Ack ack;
    ASSERT_TRUE(Submit(d, SmallReport("long", step), &ack).ok());
  }
  for (uint64_t step = 0; step < 4; ++step) {
    v1::Ack ack;
    ASSERT_TRUE(Submit(d, SmallReport("short", step), &ack).ok());
  }
  // Memory keeps its own history window; the database keeps the newest 10
  // steps per run and dedup_window + 1 seqs per rank.
  EXPECT_EQ(GetRun(d, "long").history_size(), 30);
  const std::string steps_of = "SELECT step FROM steps WHERE run_id = ";
  EXPECT_THAT(Query(state.db(), steps_of + "'long' ORDER BY step"),
              ElementsAreArray(Range(20, 30)));
  EXPECT_THAT(Query(state.db(), steps_of + "'short' ORDER BY step"), ElementsAreArray(Range(0, 4)));
  EXPECT_THAT(Query(state.db(), "SELECT seq FROM seqs WHERE run_id = 'long' ORDER BY seq"),
              ElementsAreArray(Range(25, 31)));

  ASSERT_NO_FATAL_FAILURE(StopAndRestart(d));
  v1::RunStatus restored = GetRun(d, "long");
  EXPECT_THAT(HistorySteps(restored), ElementsAreArray(Range(20, 30)));
  EXPECT_EQ(restored.last_step(), 29u);
  EXPECT_THAT(HistorySteps(GetRun(d, "short")), ElementsAreArray(Range(0, 4)));
  // A resend of a kept seq, and of one older than the kept window, is a
  // duplicate; nothing is counted twice.
  for (uint64_t step : {29, 0}) {
    v1::Ack ack;
    ASSERT_TRUE(Submit(d, SmallReport("long", step), &ack).ok());
    EXPECT_TRUE(ack.duplicate()) << step;
  }
  // The run goes on, and retention with it.
  for (uint64_t step = 30; step < 35; ++step) {
    v1::Ack ack;
    ASSERT_TRUE(Submit(d, SmallReport("long", step), &ack).ok());
    EXPECT_FALSE(ack.duplicate() || ack.late()) << step;
  }
  EXPECT_THAT(HistorySteps(GetRun(d, "long")), ElementsAreArray(Range(20, 35)));
  EXPECT_THAT(Query(state.db(), steps_of + "'long' ORDER BY step"),
              ElementsAreArray(Range(25, 35)));
}

TEST(StoreLimitsTest, SizeCapRefusesWithUnavailableAndLosesNothingAcknowledged) {
  StateDir state;
  auto daemon = DaemonProcess::Start(absl::StrCat(
      "state_dir: ", state.path(),
      "\nstore:\n  max_db_bytes: 524288\naggregation: {step_timeout_seconds: 3600}\n"));
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  DaemonProcess& d = **daemon;
  const Outcome outcome = SubmitUntilRefused(d, "capped", 3);
  ASSERT_EQ(outcome.refused.size(), 4u);
  ASSERT_GE(outcome.acked.size(), 3u);
  EXPECT_EQ(outcome.refusal.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(outcome.refusal.error_message(), HasSubstr("'" + state.db() + "' is full"));
  EXPECT_THAT(outcome.refusal.error_message(), HasSubstr("store.max_db_bytes=524288"));
  EXPECT_LE(Query(state.db(), "PRAGMA page_count")[0] * Query(state.db(), "PRAGMA page_size")[0],
            524288u);

  // The daemon is up and says what happened: once in the log, per refused
  // report in the metric; memory holds only what was acknowledged.
  EXPECT_TRUE(Serving(d));
  v1::RunStatus run = GetRun(d, "capped");
  EXPECT_EQ(run.reports_accepted(), outcome.acked.size());
  EXPECT_EQ(run.reports_rejected(), outcome.refused.size());
  EXPECT_EQ(run.pending_steps(), outcome.acked.size());
  EXPECT_EQ(MetricValue(d, "entrowatch_store_failures_total{reason=\"full\"}"), 4);
  EXPECT_EQ(MetricValue(d, "entrowatch_store_failures_total{reason=\"io\"}"), 0);
  EXPECT_GT(MetricValue(d, "entrowatch_store_db_bytes"), 100000);
  EXPECT_EQ(Occurrences(d.Log(), "store.max_db_bytes=524288"), 1) << d.Log();

  // Across a restart: every acknowledged report, no refused one.
  ASSERT_NO_FATAL_FAILURE(StopAndRestart(d));
  ExpectExactlyAcknowledged(d, "capped", outcome);
  v1::Ack ack;
  grpc::Status still_full = Submit(d, BigReport("capped", outcome.refused[0]), &ack);
  EXPECT_EQ(still_full.error_code(), grpc::StatusCode::UNAVAILABLE);

  // Raising the cap (SIGHUP) lets the resends in: accepted, not duplicates.
  ASSERT_NO_FATAL_FAILURE(Reload(d, "max_db_bytes: 524288", "max_db_bytes: 0"));
  for (uint64_t step : outcome.refused) {
    grpc::Status s = Submit(d, BigReport("capped", step), &ack);
    ASSERT_TRUE(s.ok()) << step << ": " << s.error_message();
    EXPECT_FALSE(ack.duplicate() || ack.late()) << step;
  }
  EXPECT_THAT(d.Log(), HasSubstr("is writable again"));

  // Rank 1 completes every step: each has both ranks' tokens, once.
  ASSERT_NO_FATAL_FAILURE(StopAndRestart(d));
  const uint64_t steps = outcome.acked.size() + outcome.refused.size();
  for (uint64_t step = 0; step < steps; ++step) {
    ASSERT_TRUE(Submit(d, BigReport("capped", step, 1), &ack).ok()) << step;
  }
  run = GetRun(d, "capped");
  EXPECT_THAT(HistorySteps(run), ElementsAreArray(Range(0, steps)));
  for (const auto& step : run.history()) {
    EXPECT_EQ(step.ranks_reported(), 2u) << step.step();
    EXPECT_EQ(step.token_count(), 2u * kTokens) << step.step();
  }
}

int64_t FileSize(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : 0;
}

TEST(StoreLimitsTest, FileSizeLimitFailsWritesWithoutKillingTheDaemon) {
  StateDir state;
  auto daemon = DaemonProcess::Start(
      absl::StrCat("state_dir: ", state.path(), "\naggregation: {step_timeout_seconds: 3600}\n"));
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  DaemonProcess& d = **daemon;
  d.Signal(SIGTERM);
  ASSERT_TRUE(d.Wait(absl::Seconds(20)).ok());
  // The write-ahead log starts empty after a clean stop; its frames are 24 +
  // page size bytes after a 32-byte header. A limit on a frame boundary makes
  // the write of the first frame past it fail with EFBIG (no partial write).
  const int64_t page_size = static_cast<int64_t>(Query(state.db(), "PRAGMA page_size")[0]);
  const int64_t limit = 32 + 128 * (24 + page_size);
  ASSERT_LT(FileSize(state.db()), limit / 2);
  ASSERT_LT(FileSize(d.dir() + "/daemon.log"), limit / 2);
  d.set_file_size_limit(limit);
  ASSERT_TRUE(d.Restart().ok()) << d.Log();

  const Outcome outcome = SubmitUntilRefused(d, "fsize", 2);
  ASSERT_EQ(outcome.refused.size(), 3u);
  ASSERT_GE(outcome.acked.size(), 3u);
  EXPECT_EQ(outcome.refusal.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(outcome.refusal.error_message(),
              HasSubstr("cannot write the state database '" + state.db() + "'"));
  EXPECT_THAT(outcome.refusal.error_message(), HasSubstr("disk I/O error"));
  EXPECT_TRUE(Serving(d));
  EXPECT_EQ(GetRun(d, "fsize").pending_steps(), outcome.acked.size());
  EXPECT_EQ(MetricValue(d, "entrowatch_store_failures_total{reason=\"io\"}"), 3);
  EXPECT_EQ(Occurrences(d.Log(), "cannot write the state database"), 1) << d.Log();

  d.set_file_size_limit(0);
  ASSERT_NO_FATAL_FAILURE(StopAndRestart(d));
  ExpectExactlyAcknowledged(d, "fsize", outcome);
  for (uint64_t step : outcome.refused) {
    v1::Ack ack;
    grpc::Status s = Submit(d, BigReport("fsize", step), &ack);
    ASSERT_TRUE(s.ok()) << step << ": " << s.error_message();
    EXPECT_FALSE(ack.duplicate()) << "refused step " << step << " was recorded";
  }
}

}  // namespace
}  // namespace entrowatch::testing
