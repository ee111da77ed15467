// Integration tests: the real entrowatchd binary on free loopback ports,
// driven over gRPC (stub and C++ client) and scraped over HTTP.

#include <arpa/inet.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <future>
#include <limits>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "daemon/report_builder.h"
#include "entrowatch/client/stream_client.h"
#include "entrowatch/v1/entrowatch.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ingest/validation_cases.h"
#include "testing/daemon_process.h"

namespace entrowatch::testing {
namespace {

using ::testing::HasSubstr;

constexpr double kH1 = 1.144266;  // logits [2.0, 1.0, 0.5, 0.3]
constexpr double kH2 = 0.002566;  // logits [10, 1, 0.5, 0.1]

std::unique_ptr<v1::Monitor::Stub> Stub(const DaemonProcess& d) {
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(256 << 20);
  // The connection closes with the channel, so stopping the daemon does not
  // wait for idle connections from finished tests.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return v1::Monitor::NewStub(
      grpc::CreateCustomChannel(d.grpc_address(), grpc::InsecureChannelCredentials(), args));
}

grpc::Status Submit(v1::Monitor::Stub& stub, const v1::Report& r, v1::Ack* ack) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  return stub.Submit(&ctx, r, ack);
}

absl::StatusOr<v1::RunStatus> GetRun(v1::Monitor::Stub& stub, const std::string& run) {
  grpc::ClientContext ctx;
  v1::GetRunRequest req;
  req.set_run_id(run);
  v1::RunStatus status;
  grpc::Status s = stub.GetRun(&ctx, req, &status);
  if (!s.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
  }
  return status;
}

// Value of the first sample line that starts with `series` (name{labels}).
double MetricValue(const std::string& scrape, const std::string& series) {
  size_t pos = 0;
  while ((pos = scrape.find(series, pos)) != std::string::npos) {
    if (pos == 0 || scrape[pos - 1] == '\n') {
      const size_t space = scrape.find(' ', pos + series.size());
      return std::stod(scrape.substr(space + 1, scrape.find('\n', space) - space - 1));
    }
    pos += series.size();
  }
  return std::numeric_limits<double>::quiet_NaN();
}

class DaemonTest : public ::testing::Test {
 protected:
  void StartDaemon(const std::string& yaml = "") {
    auto d = DaemonProcess::Start(yaml);
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = std::move(*d);
    stub_ = Stub(*daemon_);
  }
  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<v1::Monitor::Stub> stub_;
};

TEST_F(DaemonTest, SubmitComputesEntropyFromLogits) {
  StartDaemon();
  v1::Report r = MakeReport("closed-form", 1, 1);
  AddLogits(&r, 2, 4, {2.0f, 1.0f, 0.5f, 0.3f, 10.0f, 1.0f, 0.5f, 0.1f});
  r.mutable_grad()->set_global_norm(0.5);
  r.mutable_scalars()->set_loss(2.25);
  v1::Ack ack;
  ASSERT_TRUE(Submit(*stub_, r, &ack).ok());
  EXPECT_EQ(ack.code(), 0);
  ASSERT_TRUE(ack.has_latest_step());
  const v1::StepSummary& s = ack.latest_step();
  EXPECT_EQ(s.step(), 1u);
  EXPECT_TRUE(s.complete());
  EXPECT_EQ(s.token_count(), 2u);
  EXPECT_NEAR(s.entropy_mean(), (kH1 + kH2) / 2, 1e-5);
  EXPECT_NEAR(s.entropy_p10(), kH2 + 0.1 * (kH1 - kH2), 1e-5);
  EXPECT_NEAR(s.entropy_p90(), kH2 + 0.9 * (kH1 - kH2), 1e-5);
  EXPECT_NEAR(s.normalized_entropy_mean(), (kH1 + kH2) / 2 / std::log(4.0), 1e-5);
  EXPECT_DOUBLE_EQ(s.grad_norm(), 0.5);
  EXPECT_DOUBLE_EQ(s.loss(), 2.25);
  auto run = GetRun(*stub_, "closed-form");
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->last_step(), 1u);
  EXPECT_EQ(run->history_size(), 1);
  EXPECT_EQ(run->reports_accepted(), 1u);
}

TEST_F(DaemonTest, Fp16AndBf16LogitsMatchFloat32) {
  StartDaemon();
  const std::vector<float> row = {2.0f, 1.0f, 0.5f, 0.25f};  // exact in fp16 and bf16
  double expected = 0;
  {
    double z = 0;
    for (float v : row) z += std::exp(static_cast<double>(v));
    for (float v : row) {
      const double p = std::exp(static_cast<double>(v)) / z;
      expected -= p * std::log(p);
    }
  }
  uint64_t step = 1;
  for (v1::DType dtype : {v1::FLOAT16, v1::BFLOAT16}) {
    v1::Report r = MakeReport("dtypes", step, step);
    AddLogits(&r, 1, 4, row, dtype);
    v1::Ack ack;
    ASSERT_TRUE(Submit(*stub_, r, &ack).ok());
    EXPECT_NEAR(ack.latest_step().entropy_mean(), expected, 1e-6) << v1::DType_Name(dtype);
    ++step;
  }
}

TEST_F(DaemonTest, StepWaitsForAllRanksAndPoolsThem) {
  StartDaemon();
  v1::Report r0 = MakeReport("ranks", 7, 1, 0, 2);
  AddEntropies(&r0, {1.0f, 2.0f}, 100);
  r0.mutable_grad()->set_global_norm(1.0);
  v1::Ack ack;
  ASSERT_TRUE(Submit(*stub_, r0, &ack).ok());
  EXPECT_FALSE(ack.has_latest_step()) << "step must wait for rank 1";
  v1::Report r1 = MakeReport("ranks", 7, 1, 1, 2);
  AddEntropies(&r1, {3.0f}, 100);
  r1.mutable_grad()->set_global_norm(0.9);  // disagrees with rank 0
  ASSERT_TRUE(Submit(*stub_, r1, &ack).ok());
  ASSERT_TRUE(ack.has_latest_step());
  EXPECT_EQ(ack.latest_step().ranks_reported(), 2u);
  EXPECT_EQ(ack.latest_step().token_count(), 3u);
  EXPECT_NEAR(ack.latest_step().entropy_mean(), 2.0, 1e-6);
  EXPECT_DOUBLE_EQ(ack.latest_step().grad_norm(), 1.0);
  EXPECT_EQ(ack.latest_step().grad_norm_disagreements(), 1u);
  // A report for the finalized step is late and not folded in.
  v1::Report late = MakeReport("ranks", 7, 2, 0, 2);
  AddEntropies(&late, {0.1f}, 100);
  ASSERT_TRUE(Submit(*stub_, late, &ack).ok());
  EXPECT_TRUE(ack.late());
  EXPECT_EQ(ack.latest_step().token_count(), 3u);
}

TEST_F(DaemonTest, IncompleteStepIsFinalizedAfterTimeout) {
  StartDaemon("aggregation: {step_timeout_seconds: 0.3}\n");
  v1::Report r = MakeReport("timeout", 3, 1, 0, 4);
  AddEntropies(&r, {1.5f}, 10);
  v1::Ack ack;
  ASSERT_TRUE(Submit(*stub_, r, &ack).ok());
  EXPECT_FALSE(ack.has_latest_step());
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  absl::StatusOr<v1::RunStatus> run;
  do {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    run = GetRun(*stub_, "timeout");
    ASSERT_TRUE(run.ok());
  } while (run->history_size() == 0 && absl::Now() < deadline);
  ASSERT_EQ(run->history_size(), 1);
  EXPECT_FALSE(run->latest().complete());
  EXPECT_EQ(run->latest().ranks_reported(), 1u);
  EXPECT_EQ(run->latest().world_size(), 4u);
}

TEST_F(DaemonTest, ResendIsAcknowledgedAsDuplicateAndNotCountedTwice) {
  StartDaemon();
  v1::Report r = MakeReport("dup", 1, 42, 0, 2);
  AddEntropies(&r, {1.0f}, 10);
  v1::Ack ack;
  ASSERT_TRUE(Submit(*stub_, r, &ack).ok());
  EXPECT_FALSE(ack.duplicate());
  ASSERT_TRUE(Submit(*stub_, r, &ack).ok());
  EXPECT_TRUE(ack.duplicate());
  EXPECT_EQ(ack.code(), 0);
  v1::Report other = MakeReport("dup", 1, 1, 1, 2);
  ASSERT_TRUE(Submit(*stub_, other, &ack).ok());
  EXPECT_EQ(ack.latest_step().token_count(), 1u);
  auto run = GetRun(*stub_, "dup");
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(run->reports_accepted(), 2u);
  EXPECT_EQ(run->reports_duplicate(), 1u);
}

TEST_F(DaemonTest, EndRunFinalizesAndRefusesLaterReports) {
  StartDaemon();
  v1::Report r = MakeReport("ending", 5, 1, 0, 2);
  AddEntropies(&r, {2.0f}, 10);
  v1::Ack ack;
  ASSERT_TRUE(Submit(*stub_, r, &ack).ok());
  grpc::ClientContext ctx;
  v1::EndRunRequest req;
  req.set_run_id("ending");
  v1::EndRunResponse resp;
  ASSERT_TRUE(stub_->EndRun(&ctx, req, &resp).ok());
  EXPECT_TRUE(resp.run().finished());
  EXPECT_EQ(resp.run().last_step(), 5u);
  v1::Report after = MakeReport("ending", 6, 2);
  grpc::Status s = Submit(*stub_, after, &ack);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("finished"));
  auto scrape = daemon_->Scrape();
  ASSERT_TRUE(scrape.ok());
  EXPECT_EQ(MetricValue(*scrape, "entrowatch_run_finished{run=\"ending\"}"), 1);
  // The final flag on a report does the same.
  v1::Report last = MakeReport("final-flag", 1, 1);
  last.set_final(true);
  ASSERT_TRUE(Submit(*stub_, last, &ack).ok());
  auto run = GetRun(*stub_, "final-flag");
  ASSERT_TRUE(run.ok());
  EXPECT_TRUE(run->finished());
}

// A run that settles in a worse regime after an incident stays flagged
// (baselines frozen, state kept) until EndIncident rebases it; named
// scalars and max attention logits are exported; a NaN loss is evidence.
TEST_F(DaemonTest, EndIncidentRebasesARunStuckInAWorseRegime) {
  StartDaemon("analysis: {baseline: {warmup_steps: 10}}\n");
  const std::string run = "sticky";
  uint64_t seq = 0;
  auto submit = [&](uint64_t step, double entropy, double grad, double loss) {
    v1::Report r = MakeReport(run, step, ++seq);
    const double wiggle = std::sin(1.7 * static_cast<double>(step));
    AddEntropies(&r, std::vector<float>(8, static_cast<float>(entropy + 0.05 * wiggle)), 1000);
    r.mutable_grad()->set_global_norm(grad * (1 + 0.05 * wiggle));
    r.mutable_scalars()->set_loss(loss * (1 + 0.02 * wiggle));
    (*r.mutable_scalars()->mutable_values())["reward"] = 0.5;
    auto* att = r.add_attention_entropies();
    att->set_layer(0);
    att->add_head_entropy(static_cast<float>(2.0 + 0.05 * wiggle));
    att->add_head_entropy(static_cast<float>(2.5 + 0.03 * std::cos(static_cast<double>(step))));
    att->set_max_logit(5.0f);
    v1::Ack ack;
    EXPECT_TRUE(Submit(*stub_, r, &ack).ok());
    EXPECT_EQ(ack.code(), 0) << ack.message();
    return ack;
  };
  uint64_t step = 1;
  for (; step <= 30; ++step) {
    const v1::Ack healthy = submit(step, 2.0, 1.0, 2.0);
    EXPECT_TRUE(healthy.anomalies().empty()) << step << ": " << healthy.anomalies(0).reason();
  }
  for (; step <= 40; ++step) {
    submit(step, 1.0, 20.0, 6.0);  // the incident
  }
  v1::Ack ack;
  for (; step <= 80; ++step) {
    ack = submit(step, 1.5, 1.0, 2.6);  // settles lower entropy, higher loss
  }
  const v1::HealthState stuck = ack.verdict().state();
  EXPECT_NE(stuck, v1::NORMAL) << ack.verdict().reason();
  EXPECT_NE(stuck, v1::WARMUP);
  EXPECT_LE(ack.verdict().since_step(), 45u) << "entered during the incident, kept since";

  auto scrape = daemon_->Scrape();
  ASSERT_TRUE(scrape.ok()) << scrape.status();
  const std::string labels = "run=\"" + run + "\"";
  EXPECT_EQ(MetricValue(*scrape, "entrowatch_scalar{name=\"reward\"," + labels + "}"), 0.5);
  EXPECT_EQ(MetricValue(*scrape, "entrowatch_attention_max_logit{layer=\"0\"," + labels + "}"),
            5.0);
  EXPECT_EQ(MetricValue(*scrape, "entrowatch_health_state{" + labels + ",state=\"" +
                                     v1::HealthState_Name(stuck) + "\"}"),
            1);

  // The CLI: entrowatch end-incident RUN --reason TEXT.
  const CommandResult cli = RunCommand(
      absl::StrCat(ENTROWATCH_CLI_PATH, " end-incident ", run, " --addr ", daemon_->grpc_address(),
                   " --reason 'lower entropy expected after the data change'"));
  ASSERT_EQ(cli.exit_code, 0) << cli.output;
  EXPECT_THAT(cli.output, HasSubstr("incident ended for run sticky: state NORMAL"));
  auto rebased = GetRun(*stub_, run);
  ASSERT_TRUE(rebased.ok()) << rebased.status();
  EXPECT_EQ(rebased->verdict().state(), v1::NORMAL);
  EXPECT_TRUE(rebased->anomalies().empty());
  EXPECT_THAT(rebased->verdict().reason(), HasSubstr("lower entropy expected"));
  scrape = daemon_->Scrape();
  ASSERT_TRUE(scrape.ok());
  EXPECT_EQ(MetricValue(*scrape, "entrowatch_health_state{" + labels + ",state=\"NORMAL\"}"), 1);

  // The new regime is learned: it stays NORMAL.
  for (; step <= 120; ++step) {
    ack = submit(step, 1.5, 1.0, 2.6);
    EXPECT_EQ(ack.verdict().state(), v1::NORMAL) << step << ": " << ack.verdict().reason();
    EXPECT_TRUE(ack.anomalies().empty()) << step << ": " << ack.anomalies(0).reason();
  }
  // A diverged step is accepted and raises NON_FINITE at once.
  ack = submit(step, 1.5, 1.0, std::numeric_limits<double>::quiet_NaN());
  ASSERT_EQ(ack.anomalies_size(), 1);
  EXPECT_EQ(ack.anomalies(0).pattern(), v1::NON_FINITE);
  EXPECT_EQ(ack.anomalies(0).severity(), v1::CRITICAL);

  grpc::ClientContext unknown_ctx;
  v1::EndIncidentRequest req;
  req.set_run_id("nobody");
  v1::EndIncidentResponse resp;
  EXPECT_EQ(stub_->EndIncident(&unknown_ctx, req, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(DaemonTest, UnknownRunIsNotFound) {
  StartDaemon();
  auto run = GetRun(*stub_, "nobody");
  EXPECT_EQ(run.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(run.status().message()), HasSubstr("nobody"));
}

TEST_F(DaemonTest, MetricsPassPromtoolAndCarryStepValues) {
  StartDaemon();
  v1::Report r = MakeReport("metrics-run", 3, 1);
  AddLogits(&r, 2, 4, {2.0f, 1.0f, 0.5f, 0.3f, 10.0f, 1.0f, 0.5f, 0.1f});
  AddEntropies(&r, {1.0f}, 4);
  r.mutable_grad()->set_global_norm(2.5);
  r.mutable_scalars()->set_loss(1.75);
  r.mutable_scalars()->set_learning_rate(3e-4);
  auto* att = r.add_attention_entropies();
  att->set_layer(2);
  att->add_head_entropy(1.0f);
  att->add_head_entropy(3.0f);
  v1::Ack ack;
  ASSERT_TRUE(Submit(*stub_, r, &ack).ok());
  auto scrape = daemon_->Scrape();
  ASSERT_TRUE(scrape.ok()) << scrape.status();
  const std::string& m = *scrape;
  const std::string run = "run=\"metrics-run\"";
  EXPECT_NEAR(MetricValue(m, "entrowatch_token_entropy_mean_nats{phase=\"train\"," + run + "}"),
              (kH1 + kH2 + 1.0) / 3, 1e-5);
  EXPECT_EQ(MetricValue(m, "entrowatch_grad_norm{" + run + "}"), 2.5);
  EXPECT_EQ(MetricValue(m, "entrowatch_loss{" + run + "}"), 1.75);
  EXPECT_EQ(MetricValue(m, "entrowatch_last_step{" + run + "}"), 3);
  EXPECT_EQ(MetricValue(m, "entrowatch_attention_entropy_nats{layer=\"2\"," + run + "}"), 2.0);
  EXPECT_EQ(MetricValue(m, "entrowatch_attention_head_entropy_variance{layer=\"2\"," + run + "}"),
            1.0);
  EXPECT_EQ(MetricValue(m, "entrowatch_token_entropy_nats_count{phase=\"train\"," + run + "}"), 3);
  EXPECT_EQ(MetricValue(m, "entrowatch_reports_total{result=\"ok\"}"), 1);
  EXPECT_GT(MetricValue(m, "entrowatch_ingest_bytes_total"), 32);
  EXPECT_GT(MetricValue(m, "entrowatch_last_report_timestamp_seconds{" + run + "}"), 1.7e9);
  EXPECT_THAT(m, HasSubstr("entrowatch_build_info{"));

  const std::string path = daemon_->dir() + "/scrape.txt";
  std::ofstream(path) << m;
  CommandResult promtool = RunCommand("promtool check metrics < " + path);
  EXPECT_EQ(promtool.exit_code, 0) << promtool.output;
}

TEST_F(DaemonTest, PerHeadSeriesAreOptIn) {
  for (bool per_head : {false, true}) {
    StartDaemon(per_head ? "metrics: {listen: \"127.0.0.1:0\", per_head_series: true}\n" : "");
    v1::Report r = MakeReport("heads", 1, 1);
    auto* att = r.add_attention_entropies();
    att->set_layer(2);
    att->add_head_entropy(1.0f);
    att->add_head_entropy(3.0f);
    v1::Ack ack;
    ASSERT_TRUE(Submit(*stub_, r, &ack).ok());
    auto scrape = daemon_->Scrape();
    ASSERT_TRUE(scrape.ok());
    const double head1 = MetricValue(
        *scrape, "entrowatch_attention_head_entropy_nats{head=\"1\",layer=\"2\",run=\"heads\"}");
    if (per_head) {
      EXPECT_EQ(head1, 3.0);
    } else {
      EXPECT_TRUE(std::isnan(head1)) << "no per-head series unless asked for";
    }
    stub_.reset();
    daemon_.reset();
  }
}

TEST_F(DaemonTest, RunsBeyondMaxRunsAreRefused) {
  StartDaemon("runs: {max_runs: 2}\n");
  v1::Ack ack;
  ASSERT_TRUE(Submit(*stub_, MakeReport("a", 1, 1), &ack).ok());
  ASSERT_TRUE(Submit(*stub_, MakeReport("b", 1, 1), &ack).ok());
  grpc::Status s = Submit(*stub_, MakeReport("c", 1, 1), &ack);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("runs.max_runs"));
  EXPECT_TRUE(Submit(*stub_, MakeReport("a", 2, 2), &ack).ok());
}

TEST_F(DaemonTest, NonFiniteLogitsAreRejectedNamingTheRow) {
  StartDaemon();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  v1::Ack ack;
  v1::Report r = MakeReport("nan", 1, 1);
  AddLogits(&r, 2, 3, {1, 2, 3, 1, nan, 3});
  grpc::Status s = Submit(*stub_, r, &ack);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("logits[0].logits row 1"));
  r = MakeReport("nan", 1, 2);
  AddLogits(&r, 1, 3, {1, inf, 3});
  EXPECT_EQ(Submit(*stub_, r, &ack).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  r = MakeReport("nan", 1, 3);
  AddLogits(&r, 1, 3, {-inf, -inf, -inf});
  s = Submit(*stub_, r, &ack);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("no finite value"));
  // -inf is a masked token: fine. The distribution renormalizes over the rest.
  r = MakeReport("nan", 1, 4);
  AddLogits(&r, 1, 3, {0.0f, -inf, 0.0f});
  ASSERT_TRUE(Submit(*stub_, r, &ack).ok());
  EXPECT_NEAR(ack.latest_step().entropy_mean(), std::log(2.0), 1e-6);
  // Nothing accepted before was lost.
  auto run = GetRun(*stub_, "nan");
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(run->reports_accepted(), 1u);
}

TEST_F(DaemonTest, AttentionWithNonFiniteOrOverflowingValuesIsRejected) {
  StartDaemon();
  v1::Ack ack;
  v1::Report r = ValidBaseReport("attention-values");
  r.mutable_attention(0)->mutable_q()->mutable_data()->replace(
      8, 4, std::string("\x00\x00\xc0\x7f", 4));  // element 2 = NaN
  grpc::Status s = Submit(*stub_, r, &ack);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("attention[0].q: element 2 is NaN or infinite"));
  r = ValidBaseReport("attention-values");
  SetTensor(r.mutable_attention(0)->mutable_q(), v1::FLOAT32, {2, 2, 4},
            std::vector<float>(16, 3e37f));
  s = Submit(*stub_, r, &ack);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("scores could reach"));
  r = ValidBaseReport("attention-values");
  ASSERT_TRUE(Submit(*stub_, r, &ack).ok());
}

TEST_F(DaemonTest, NonFiniteRowsCanBeSkippedAndCounted) {
  StartDaemon("ingest: {skip_nonfinite_rows: true}\n");
  v1::Report r = MakeReport("skip", 1, 1);
  AddLogits(&r, 2, 4,
            {2.0f, 1.0f, 0.5f, 0.3f, std::numeric_limits<float>::quiet_NaN(), 1.0f, 0.5f, 0.1f});
  v1::Ack ack;
  ASSERT_TRUE(Submit(*stub_, r, &ack).ok());
  EXPECT_EQ(ack.latest_step().token_count(), 1u);
  EXPECT_NEAR(ack.latest_step().entropy_mean(), kH1, 1e-5);
  auto scrape = daemon_->Scrape();
  ASSERT_TRUE(scrape.ok());
  EXPECT_EQ(MetricValue(*scrape, "entrowatch_rows_skipped_total{reason=\"nonfinite\"}"), 1);
}

TEST_F(DaemonTest, StreamAnswersBadReportsInTheirAckAndGoesOn) {
  StartDaemon();
  grpc::ClientContext ctx;
  auto stream = stub_->Stream(&ctx);
  v1::Report good = MakeReport("stream", 1, 1);
  AddEntropies(&good, {1.0f}, 10);
  v1::Report bad = MakeReport("stream", 2, 2);
  bad.set_rank(3);  // world_size 1
  v1::Report good2 = MakeReport("stream", 2, 3);
  AddEntropies(&good2, {2.0f}, 10);
  ASSERT_TRUE(stream->Write(good));
  ASSERT_TRUE(stream->Write(bad));
  ASSERT_TRUE(stream->Write(good2));
  stream->WritesDone();
  std::map<uint64_t, v1::Ack> acks;
  v1::Ack ack;
  while (stream->Read(&ack)) {
    acks[ack.seq()] = ack;
  }
  ASSERT_TRUE(stream->Finish().ok());
  ASSERT_EQ(acks.size(), 3u);
  EXPECT_EQ(acks[1].code(), 0);
  EXPECT_EQ(acks[2].code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
  EXPECT_THAT(acks[2].message(), HasSubstr("rank"));
  EXPECT_EQ(acks[3].code(), 0);
  auto run = GetRun(*stub_, "stream");
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(run->last_step(), 2u);
}

TEST_F(DaemonTest, CppClientStreamsEveryReport) {
  StartDaemon();
  client::StreamClientOptions options;
  options.target = daemon_->grpc_address();
  auto client = client::StreamClient::Create(options);
  ASSERT_TRUE(client.ok()) << client.status();
  for (uint64_t step = 0; step < 50; ++step) {
    v1::Report r = MakeReport("client-run", step, 0);
    AddEntropies(&r, {1.0f + 0.01f * step}, 1000);
    r.mutable_grad()->set_global_norm(1.0);
    ASSERT_TRUE((*client)->Enqueue(r));
  }
  ASSERT_TRUE((*client)->Flush(absl::Now() + absl::Seconds(30)).ok());
  EXPECT_EQ((*client)->Stats().rejected, 0u);
  auto run = GetRun(*stub_, "client-run");
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(run->last_step(), 49u);
  EXPECT_EQ(run->reports_accepted(), 50u);
  EXPECT_NEAR(run->latest().entropy_mean(), 1.49, 1e-5);
}

TEST_F(DaemonTest, FullQueueAnswersResourceExhaustedAndLosesNothingAccepted) {
  StartDaemon("ingest: {workers: 1, queue_max_reports: 1}\ncompute: {backend: cpu-reference}\n");
  constexpr int kCalls = 12;
  constexpr uint64_t kRows = 64;
  constexpr uint64_t kVocab = 32768;
  std::vector<float> values(kRows * kVocab);
  for (size_t i = 0; i < values.size(); ++i) {
    values[i] = static_cast<float>((i * 2654435761u) % 1000) / 100.0f;
  }
  std::vector<std::future<grpc::Status>> calls;
  for (int i = 0; i < kCalls; ++i) {
    calls.push_back(std::async(std::launch::async, [&, i] {
      auto stub = Stub(*daemon_);
      v1::Report r = MakeReport("busy", static_cast<uint64_t>(i), static_cast<uint64_t>(i + 1));
      AddLogits(&r, kRows, kVocab, values);
      v1::Ack ack;
      return Submit(*stub, r, &ack);
    }));
  }
  int ok = 0;
  int exhausted = 0;
  for (auto& f : calls) {
    grpc::Status s = f.get();
    if (s.ok()) {
      ++ok;
    } else {
      EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
      EXPECT_THAT(s.error_message(), HasSubstr("queue full"));
      ++exhausted;
    }
  }
  EXPECT_GT(exhausted, 0);
  EXPECT_GT(ok, 0);
  auto run = GetRun(*stub_, "busy");
  ASSERT_TRUE(run.ok());
  // Steps may be processed out of order: an older step arriving after a newer
  // one was finalized is acknowledged as late.
  EXPECT_EQ(run->reports_accepted() + run->reports_late(), static_cast<uint64_t>(ok));
  auto scrape = daemon_->Scrape();
  ASSERT_TRUE(scrape.ok());
  EXPECT_EQ(MetricValue(*scrape, "entrowatch_reports_total{result=\"resource_exhausted\"}"),
            exhausted);
}

// Polls /metrics (refreshed every 100 ms) until `series` has `value`; bounded.
bool AwaitMetric(const DaemonProcess& daemon, const std::string& series, double value) {
  for (int i = 0; i < 300; ++i) {
    auto scrape = daemon.Scrape();
    if (scrape.ok() && MetricValue(*scrape, series) == value) {
      return true;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

// Over capacity (the one queue slot busy and the one waiting slot taken), a
// stream's report is answered UNAVAILABLE (not taken) and the stream ends
// RESOURCE_EXHAUSTED; the C++ client reconnects and resends, and in the end
// every report is folded in exactly once.
TEST_F(DaemonTest, OverCapacityStreamsArePushedBackAndClientsResendEverything) {
  StartDaemon(
      "ingest: {workers: 1, queue_max_reports: 1, max_waiting_reports: 1}\n"
      "compute: {backend: cpu-reference}\n");
  // A: attention over 1024 positions, 16 heads, on the float64 reference
  // engine: the worker is busy with it for a good while.
  v1::Report slow = MakeReport("slow", 1, 1);
  {
    constexpr uint64_t kHeads = 16, kSeq = 1024, kDim = 64;
    std::vector<float> qk(kHeads * kSeq * kDim);
    for (size_t i = 0; i < qk.size(); ++i) {
      qk[i] = static_cast<float>((i * 2654435761u) % 200) / 100.0f - 1.0f;
    }
    v1::AttentionBlock* block = slow.add_attention();
    block->set_layer(0);
    block->set_causal(true);
    SetTensor(block->mutable_q(), v1::FLOAT32, {kHeads, kSeq, kDim}, qk);
    SetTensor(block->mutable_k(), v1::FLOAT32, {kHeads, kSeq, kDim}, qk);
  }
  grpc::ClientContext ctx_a;
  auto stream_a = stub_->Stream(&ctx_a);
  ASSERT_TRUE(stream_a->Write(slow));
  ASSERT_TRUE(AwaitMetric(*daemon_, "entrowatch_queue_reports", 1));
  // B: waits for the queue slot.
  grpc::ClientContext ctx_b;
  auto stream_b = stub_->Stream(&ctx_b);
  ASSERT_TRUE(stream_b->Write(MakeReport("waiter", 1, 1)));
  ASSERT_TRUE(AwaitMetric(*daemon_, "entrowatch_queue_waiting_reports", 1));
  // C: nowhere to go.
  grpc::ClientContext ctx_c;
  auto stream_c = stub_->Stream(&ctx_c);
  ASSERT_TRUE(stream_c->Write(MakeReport("pushed-back", 1, 7)));
  v1::Ack ack_c;
  ASSERT_TRUE(stream_c->Read(&ack_c));
  EXPECT_EQ(ack_c.code(), static_cast<int>(grpc::StatusCode::UNAVAILABLE));
  EXPECT_EQ(ack_c.seq(), 7u);
  EXPECT_THAT(ack_c.message(), HasSubstr("ingest.max_waiting_reports=1"));
  EXPECT_FALSE(stream_c->Read(&ack_c)) << "the stream ends after the refusal";
  const grpc::Status status_c = stream_c->Finish();
  EXPECT_EQ(status_c.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status_c.error_message(), HasSubstr("over capacity"));

  // Six C++ clients push while A is still being processed: pushed back,
  // they resend until the daemon takes their reports.
  constexpr int kRanks = 6;
  constexpr uint64_t kSteps = 3;
  std::vector<std::unique_ptr<client::StreamClient>> clients;
  for (int rank = 0; rank < kRanks; ++rank) {
    client::StreamClientOptions options;
    options.target = daemon_->grpc_address();
    options.initial_backoff = absl::Milliseconds(20);
    options.max_backoff = absl::Milliseconds(200);
    auto c = client::StreamClient::Create(options);
    ASSERT_TRUE(c.ok()) << c.status();
    clients.push_back(*std::move(c));
  }
  for (uint64_t step = 0; step < kSteps; ++step) {
    for (int rank = 0; rank < kRanks; ++rank) {
      v1::Report r = MakeReport("crowd", step, step + 1, static_cast<uint32_t>(rank));
      r.set_world_size(kRanks);
      AddEntropies(&r, {1.0f + 0.1f * rank}, 100);
      ASSERT_TRUE(clients[static_cast<size_t>(rank)]->Enqueue(r));
    }
  }
  uint64_t restarts = 0;
  for (auto& c : clients) {
    ASSERT_TRUE(c->Flush(absl::Now() + absl::Seconds(120)).ok());
    const client::StreamClientStats stats = c->Stats();
    EXPECT_EQ(stats.rejected, 0u) << "no report may be refused for good";
    restarts += stats.stream_restarts;
  }
  EXPECT_GT(restarts, 0u) << "the clients were pushed back while A was processed";

  // A and B were taken and are answered on their streams.
  v1::Ack ack;
  stream_a->WritesDone();
  ASSERT_TRUE(stream_a->Read(&ack));
  EXPECT_EQ(ack.code(), 0) << ack.message();
  EXPECT_TRUE(stream_a->Finish().ok());
  stream_b->WritesDone();
  ASSERT_TRUE(stream_b->Read(&ack));
  EXPECT_EQ(ack.code(), 0) << ack.message();
  EXPECT_TRUE(stream_b->Finish().ok());

  auto run = GetRun(*stub_, "crowd");
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(run->reports_accepted() + run->reports_late(), kRanks * kSteps)
      << "every report folded in exactly once; resends of taken reports are duplicates";
  EXPECT_EQ(run->reports_rejected(), 0u);
  EXPECT_FALSE(GetRun(*stub_, "pushed-back").ok()) << "a refused report leaves no trace";
  auto scrape = daemon_->Scrape();
  ASSERT_TRUE(scrape.ok());
  EXPECT_GE(MetricValue(*scrape, "entrowatch_reports_total{result=\"unavailable\"}"), 1);
  EXPECT_TRUE(AwaitMetric(*daemon_, "entrowatch_queue_waiting_reports", 0));
  EXPECT_TRUE(AwaitMetric(*daemon_, "entrowatch_queue_waiting_bytes", 0));
}

// Over its memory budget the daemon sheds ingest: new streams end at once
// with RESOURCE_EXHAUSTED naming the budget, Submit is refused the same way,
// and everything else keeps working. (A 2 MiB budget: the daemon is over it
// from the start.)
TEST_F(DaemonTest, OverTheMemoryBudgetIngestIsShedAndTheDaemonStaysUp) {
  StartDaemon(
      "grpc: {listen: \"127.0.0.1:0\", max_message_bytes: 1048576}\n"
      "ingest: {queue_max_bytes: 1048576, memory_limit_bytes: 2097152,\n"
      "         memory_budget_bytes: 2097152}\n");
  grpc::ClientContext ctx;
  auto stream = stub_->Stream(&ctx);
  stream->Write(MakeReport("shed", 1, 1));  // may fail once the call has ended
  v1::Ack ack;
  EXPECT_FALSE(stream->Read(&ack)) << "no Ack: the stream is refused before reading";
  const grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(), HasSubstr("ingest.memory_budget_bytes=2097152"));

  const grpc::Status submitted = Submit(*stub_, MakeReport("shed", 1, 1), &ack);
  EXPECT_EQ(submitted.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(submitted.error_message(), HasSubstr("over its memory budget"));

  EXPECT_FALSE(GetRun(*stub_, "shed").ok()) << "nothing was taken";
  ASSERT_TRUE(AwaitMetric(*daemon_, "entrowatch_memory_budget_bytes", 2097152));
  auto scrape = daemon_->Scrape();
  ASSERT_TRUE(scrape.ok());
  EXPECT_GE(MetricValue(*scrape, "entrowatch_streams_shed_total"), 1);
  EXPECT_GT(MetricValue(*scrape, "entrowatch_resident_memory_bytes"), 2097152);
  EXPECT_EQ(MetricValue(*scrape, "entrowatch_reports_total{result=\"resource_exhausted\"}"), 1);
}

TEST_F(DaemonTest, GarbageBytesOnTheWireDoNotHurtTheDaemon) {
  StartDaemon();
  const std::string addr = daemon_->grpc_address();
  const int port = std::stoi(addr.substr(addr.rfind(':') + 1));
  for (const std::string& junk :
       {std::string("GET / HTTP/1.1\r\n\r\n"), std::string(4096, '\xff'),
        std::string("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") + std::string(100, '\x07')}) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    ASSERT_GT(send(fd, junk.data(), junk.size(), MSG_NOSIGNAL), 0);
    close(fd);
  }
  // A message body that is not a Report: the generic stub sends raw bytes.
  grpc::GenericStub generic(grpc::CreateChannel(addr, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  const std::string raw = "\x0a\xff\xff\xff\xff\x0f garbage";
  grpc::Slice slice(raw);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  std::promise<grpc::Status> done;
  generic.UnaryCall(&ctx, "/entrowatch.v1.Monitor/Submit", grpc::StubOptions(), &request, &response,
                    [&](grpc::Status s) { done.set_value(s); });
  EXPECT_FALSE(done.get_future().get().ok());
  v1::Ack ack;
  v1::Report r = MakeReport("after-garbage", 1, 1);
  EXPECT_TRUE(Submit(*stub_, r, &ack).ok());
}

TEST_F(DaemonTest, HealthServiceAnswersServing) {
  StartDaemon();
  grpc::GenericStub generic(
      grpc::CreateChannel(daemon_->grpc_address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  grpc::ByteBuffer request;  // HealthCheckRequest{} serializes to nothing
  grpc::Slice empty("");
  request = grpc::ByteBuffer(&empty, 1);
  grpc::ByteBuffer response;
  std::promise<grpc::Status> done;
  generic.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                    [&](grpc::Status s) { done.set_value(s); });
  ASSERT_TRUE(done.get_future().get().ok());
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (const auto& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));  // status: SERVING
}

TEST_F(DaemonTest, SighupReloadsAndABadReloadKeepsRunning) {
  StartDaemon();
  std::ofstream(daemon_->config_path(), std::ios::app) << "runs: {max_runs: 1}\n";
  daemon_->Signal(SIGHUP);
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!absl::StrContains(daemon_->Log(), "configuration reloaded") && absl::Now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_THAT(daemon_->Log(), HasSubstr("configuration reloaded"));
  v1::Ack ack;
  ASSERT_TRUE(Submit(*stub_, MakeReport("one", 1, 1), &ack).ok());
  EXPECT_EQ(Submit(*stub_, MakeReport("two", 1, 1), &ack).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);

  std::ofstream(daemon_->config_path(), std::ios::app) << "bogus_key: 1\n";
  daemon_->Signal(SIGHUP);
  while (!absl::StrContains(daemon_->Log(), "reload refused") && absl::Now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_THAT(daemon_->Log(), HasSubstr("bogus_key"));
  EXPECT_TRUE(Submit(*stub_, MakeReport("one", 2, 2), &ack).ok());
}

TEST_F(DaemonTest, SigtermDrainsAndExitsCleanly) {
  StartDaemon();
  v1::Ack ack;
  ASSERT_TRUE(Submit(*stub_, MakeReport("bye", 1, 1), &ack).ok());
  daemon_->Signal(SIGTERM);
  auto code = daemon_->Wait(absl::Seconds(15));
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 0);
  EXPECT_THAT(daemon_->Log(), HasSubstr("stopped"));
}

// Every ingest validation rule, through the real gRPC server: Submit fails
// with INVALID_ARGUMENT naming the field; on a Stream the bad report gets its
// own Ack and the good report after it is still accepted.
class ValidationRuleTest : public ::testing::TestWithParam<ValidationCase> {};

TEST_P(ValidationRuleTest, RejectedOverGrpcAndTheDaemonGoesOn) {
  auto daemon =
      DaemonProcess::Start(absl::StrCat("ingest: {max_rows_per_report: ", kCaseMaxRows,
                                        ", max_elements_per_report: ", kCaseMaxElements, "}\n"));
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  auto stub = Stub(**daemon);
  v1::Report bad = ValidBaseReport();
  GetParam().mutate(&bad);
  v1::Ack ack;
  grpc::Status s = Submit(*stub, bad, &ack);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr(GetParam().expected));

  grpc::ClientContext ctx;
  auto stream = stub->Stream(&ctx);
  v1::Report good = ValidBaseReport();
  good.set_seq(99);
  ASSERT_TRUE(stream->Write(bad));
  ASSERT_TRUE(stream->Write(good));
  stream->WritesDone();
  std::vector<v1::Ack> acks;
  while (stream->Read(&ack)) {
    acks.push_back(ack);
  }
  ASSERT_TRUE(stream->Finish().ok());
  ASSERT_EQ(acks.size(), 2u);
  EXPECT_EQ(acks[0].code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
  EXPECT_THAT(acks[0].message(), HasSubstr(GetParam().expected));
  EXPECT_EQ(acks[1].code(), 0) << acks[1].message();
  auto scrape = (*daemon)->Scrape();
  ASSERT_TRUE(scrape.ok());
  EXPECT_EQ(MetricValue(*scrape, "entrowatch_reports_total{result=\"invalid_argument\"}"), 2);
  EXPECT_EQ(MetricValue(*scrape, "entrowatch_reports_total{result=\"ok\"}"), 1);
}

INSTANTIATE_TEST_SUITE_P(Rules, ValidationRuleTest, ::testing::ValuesIn(ValidationCases()),
                         [](const auto& info) { return info.param.name; });

TEST(DaemonStartup, PortInUseFailsFastWithAClearError) {
  auto first = DaemonProcess::Start();
  ASSERT_TRUE(first.ok()) << first.status();
  auto second =
      DaemonProcess::Start(absl::StrCat("grpc: {listen: \"", (*first)->grpc_address(), "\"}\n"));
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("cannot serve gRPC"));
}

TEST(DaemonStartup, BadConfigFailsNamingTheKeyAndLine) {
  auto d = DaemonProcess::Start("ingest:\n  workers: many\n");
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(std::string(d.status().message()), HasSubstr("ingest.workers (line 4)"));
  EXPECT_THAT(std::string(d.status().message()), HasSubstr("expected an integer"));
}

TEST(DaemonStartup, VersionFlag) {
  CommandResult r = RunCommand(DaemonBinary() + " --version");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.output, HasSubstr("entrowatchd 0."));
}

}  // namespace
}  // namespace entrowatch::testing
