// The real entrowatchd fed the same run twice: once as per-rank reports
// (every rank sends its raw values each step), once as one job-level
// aggregate per step (ReportSummary with every rank's figures). The step
// statistics, per-step verdicts and anomalies must agree; quantiles within
// one histogram bin width.

#include <grpcpp/grpcpp.h>

#include <cmath>
#include <map>
#include <set>
#include <string>

#include "analysis/aggregation/trace_ranks.h"
#include "analysis/step_aggregator.h"
#include "entrowatch/v1/entrowatch.grpc.pb.h"
#include "gtest/gtest.h"
#include "testing/daemon_process.h"

namespace entrowatch::testing {
namespace {

constexpr uint32_t kPseudoRanks = 8;
constexpr double kThreshold = 0.8;  // the daemon's default aggregation.high_entropy_threshold

struct StepVerdict {
  std::string state;
  std::set<std::string> patterns;
  bool operator==(const StepVerdict& o) const { return state == o.state && patterns == o.patterns; }
};

struct RunResult {
  std::map<uint64_t, StepVerdict> verdicts;  // from the Ack that finalized each step
  v1::RunStatus status;
};

class SummaryDaemonTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    auto d = DaemonProcess::Start();
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = std::move(*d);
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    stub_ = v1::Monitor::NewStub(grpc::CreateCustomChannel(
        daemon_->grpc_address(), grpc::InsecureChannelCredentials(), args));
  }

  void Send(const v1::Report& r, RunResult& result) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::Ack ack;
    const grpc::Status s = stub_->Submit(&ctx, r, &ack);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_EQ(ack.code(), 0) << ack.message();
    if (ack.has_latest_step() && !result.verdicts.count(ack.latest_step().step())) {
      StepVerdict v;
      v.state = v1::HealthState_Name(ack.verdict().state());
      for (const auto& a : ack.anomalies()) {
        v.patterns.insert(v1::Pattern_Name(a.pattern()) + ":" + v1::Severity_Name(a.severity()));
      }
      result.verdicts[ack.latest_step().step()] = v;
    }
  }

  void Finish(const std::string& run, RunResult& result) {
    grpc::ClientContext ctx;
    v1::GetRunRequest req;
    req.set_run_id(run);
    req.set_history(100000);
    const grpc::Status s = stub_->GetRun(&ctx, req, &result.status);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }

  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<v1::Monitor::Stub> stub_;
};

TEST_P(SummaryDaemonTest, AggregatedRunMatchesPerRankRun) {
  const std::string name = GetParam();
  const auto steps = GroupBySteps(LoadTrace(name));
  ASSERT_FALSE(steps.empty());
  RunResult raw;
  RunResult aggregated;
  uint64_t raw_reports = 0;
  uint32_t vocab = 0;
  for (const auto& step : steps) {
    std::vector<v1::Report> per_rank =
        step.front().world_size() > 1 ? step : SplitIntoRanks(step, kPseudoRanks);
    for (v1::Report& r : per_rank) {
      r.set_run_id(name + "-raw");
      ASSERT_NO_FATAL_FAILURE(Send(r, raw));
      ++raw_reports;
      if (r.token_entropies_size() > 0) {
        vocab = r.token_entropies(0).vocab_size();
      }
    }
    v1::Report job = AggregateRanks(per_rank, kThreshold);
    job.set_run_id(name + "-agg");
    ASSERT_NO_FATAL_FAILURE(Send(job, aggregated));
  }
  ASSERT_NO_FATAL_FAILURE(Finish(name + "-raw", raw));
  ASSERT_NO_FATAL_FAILURE(Finish(name + "-agg", aggregated));

  EXPECT_EQ(raw.status.reports_accepted(), raw_reports);
  EXPECT_EQ(aggregated.status.reports_accepted(), steps.size()) << "one report per step";
  EXPECT_TRUE(raw.status.finished());
  EXPECT_TRUE(aggregated.status.finished());

  ASSERT_EQ(raw.verdicts.size(), steps.size());
  ASSERT_EQ(aggregated.verdicts.size(), steps.size());
  size_t anomalous_steps = 0;
  for (const auto& [step, verdict] : raw.verdicts) {
    const StepVerdict& other = aggregated.verdicts[step];
    EXPECT_EQ(other.state, verdict.state) << "step " << step;
    EXPECT_EQ(other.patterns, verdict.patterns) << "step " << step;
    anomalous_steps += verdict.patterns.empty() ? 0 : 1;
  }
  std::printf("%s: %zu steps, %zu with anomalies, final state %s\n", name.c_str(), steps.size(),
              anomalous_steps, v1::HealthState_Name(raw.status.verdict().state()).c_str());
  EXPECT_EQ(aggregated.status.verdict().state(), raw.status.verdict().state());
  EXPECT_EQ(aggregated.status.anomalies_size(), raw.status.anomalies_size());

  const auto& a = raw.status.history();
  const auto& b = aggregated.status.history();
  ASSERT_EQ(a.size(), b.size());
  ASSERT_EQ(static_cast<size_t>(a.size()), steps.size());
  const double bin = std::log(static_cast<double>(vocab)) / analysis::kEntropyHistogramBins;
  double worst = 0;
  for (int i = 0; i < a.size(); ++i) {
    const v1::StepSummary& x = a[i];
    const v1::StepSummary& y = b[i];
    const std::string at = "step " + std::to_string(x.step());
    ASSERT_EQ(y.step(), x.step());
    EXPECT_EQ(y.ranks_reported(), x.ranks_reported()) << at;
    EXPECT_EQ(y.complete(), x.complete()) << at;
    EXPECT_EQ(y.token_count(), x.token_count()) << at;
    EXPECT_NEAR(y.entropy_mean(), x.entropy_mean(), 1e-9) << at;
    EXPECT_NEAR(y.normalized_entropy_mean(), x.normalized_entropy_mean(), 1e-6) << at;
    EXPECT_NEAR(y.high_entropy_ratio(), x.high_entropy_ratio(), 1e-12) << at;
    EXPECT_EQ(y.generated_token_count(), x.generated_token_count()) << at;
    EXPECT_NEAR(y.generated_entropy_mean(), x.generated_entropy_mean(), 1e-9) << at;
    for (auto [p, q] :
         {std::pair{y.entropy_p10(), x.entropy_p10()}, std::pair{y.entropy_p50(), x.entropy_p50()},
          std::pair{y.entropy_p90(), x.entropy_p90()}}) {
      EXPECT_LE(std::abs(p - q), bin * (1 + 1e-6)) << at;
      worst = std::max(worst, std::abs(p - q));
    }
    EXPECT_EQ(y.has_grad_norm(), x.has_grad_norm()) << at;
    EXPECT_EQ(y.grad_norm(), x.grad_norm()) << at;
    EXPECT_EQ(y.grad_norm_disagreements(), x.grad_norm_disagreements()) << at;
    EXPECT_EQ(y.has_loss(), x.has_loss()) << at;
    EXPECT_NEAR(y.loss(), x.loss(), 1e-12) << at;
    EXPECT_DOUBLE_EQ(y.learning_rate(), x.learning_rate()) << at;
    ASSERT_EQ(y.ranks_size(), x.ranks_size()) << at;
    for (int r = 0; r < x.ranks_size(); ++r) {
      EXPECT_EQ(y.ranks(r).token_count(), x.ranks(r).token_count()) << at;
      EXPECT_NEAR(y.ranks(r).entropy_mean(), x.ranks(r).entropy_mean(), 1e-9) << at;
      EXPECT_EQ(y.ranks(r).grad_norm(), x.ranks(r).grad_norm()) << at;
    }
    ASSERT_EQ(y.layers_size(), x.layers_size()) << at;
    for (int l = 0; l < x.layers_size(); ++l) {
      EXPECT_NEAR(y.layers(l).mean_entropy(), x.layers(l).mean_entropy(), 1e-9) << at;
      EXPECT_NEAR(y.layers(l).head_variance(), x.layers(l).head_variance(), 1e-9) << at;
    }
  }
  std::printf("%s: largest quantile difference %.6f nats (bound %.6f)\n", name.c_str(), worst, bin);
}

INSTANTIATE_TEST_SUITE_P(Traces, SummaryDaemonTest,
                         ::testing::Values("real-healthy", "real-lr-spike", "real-rl-collapse",
                                           "real-two-rank-bad-shard", "synth-overload",
                                           "synth-attention-locking", "synth-head-redundancy"),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

}  // namespace
}  // namespace entrowatch::testing
