// In-job aggregation against the real entrowatchd: the same job sent once
// per rank (raw values) and once aggregated over a CpuCollectiveGroup (one
// ReportSummary per step from rank 0) gives the same StepSummaries, the
// entropy quantiles within the error stated in EntropySummary.histogram.

#include <grpcpp/create_channel.h>

#include <cmath>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "aggregation_inputs.h"
#include "entrowatch/client/collective.h"
#include "entrowatch/client/step_aggregator.h"
#include "entrowatch/client/stream_client.h"
#include "gtest/gtest.h"
#include "testing/daemon_process.h"

namespace entrowatch::client {
namespace {

using ::entrowatch::testing::AggregationOptions;
using ::entrowatch::testing::DaemonProcess;
using ::entrowatch::testing::kAggregationRanks;
using ::entrowatch::testing::kAggregationVocab;
using ::entrowatch::testing::MakeStep;
using ::entrowatch::testing::RankData;

constexpr int kSteps = 6;

absl::StatusOr<v1::RunStatus> GetRun(const std::string& address, const std::string& run) {
  auto stub =
      v1::Monitor::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  v1::GetRunRequest req;
  req.set_run_id(run);
  req.set_history(kSteps);
  v1::RunStatus status;
  grpc::Status s = stub->GetRun(&ctx, req, &status);
  if (!s.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
  }
  return status;
}

// Relative closeness for sums pooled in a different order.
void ExpectClose(double got, double want, const char* what) {
  EXPECT_NEAR(got, want, 1e-9 * std::max(1.0, std::abs(want))) << what;
}

void ExpectSameStep(const v1::StepSummary& agg, const v1::StepSummary& raw) {
  SCOPED_TRACE(::testing::Message() << "step " << raw.step());
  const double bin_width = std::log(static_cast<double>(kAggregationVocab)) / kEntropyHistogramBins;
  EXPECT_EQ(agg.step(), raw.step());
  EXPECT_EQ(agg.ranks_reported(), raw.ranks_reported());
  EXPECT_EQ(agg.world_size(), raw.world_size());
  EXPECT_EQ(agg.complete(), raw.complete());
  EXPECT_EQ(agg.token_count(), raw.token_count());
  ExpectClose(agg.entropy_mean(), raw.entropy_mean(), "entropy_mean");
  EXPECT_NEAR(agg.entropy_p10(), raw.entropy_p10(), bin_width);
  EXPECT_NEAR(agg.entropy_p50(), raw.entropy_p50(), bin_width);
  EXPECT_NEAR(agg.entropy_p90(), raw.entropy_p90(), bin_width);
  // Raw values above ln V (float rounding) are clamped to 1 when normalized.
  EXPECT_NEAR(agg.normalized_entropy_mean(), raw.normalized_entropy_mean(), 1e-6);
  EXPECT_EQ(agg.high_entropy_ratio(), raw.high_entropy_ratio());
  ExpectClose(agg.generated_entropy_mean(), raw.generated_entropy_mean(), "generated mean");
  EXPECT_EQ(agg.generated_token_count(), raw.generated_token_count());
  EXPECT_EQ(agg.has_grad_norm(), raw.has_grad_norm());
  EXPECT_EQ(agg.grad_norm(), raw.grad_norm());
  EXPECT_EQ(agg.grad_norm_disagreements(), raw.grad_norm_disagreements());
  EXPECT_EQ(agg.has_loss(), raw.has_loss());
  ExpectClose(agg.loss(), raw.loss(), "loss");
  EXPECT_EQ(agg.learning_rate(), raw.learning_rate());
  ASSERT_EQ(agg.layers_size(), raw.layers_size());
  for (int l = 0; l < raw.layers_size(); ++l) {
    const v1::LayerSummary& a = agg.layers(l);
    const v1::LayerSummary& r = raw.layers(l);
    EXPECT_EQ(a.layer(), r.layer());
    ExpectClose(a.mean_entropy(), r.mean_entropy(), "layer mean");
    ExpectClose(a.head_variance(), r.head_variance(), "head variance");
    ASSERT_EQ(a.head_mean_entropy_size(), r.head_mean_entropy_size());
    for (int h = 0; h < r.head_mean_entropy_size(); ++h) {
      ExpectClose(a.head_mean_entropy(h), r.head_mean_entropy(h), "head mean");
    }
    EXPECT_EQ(a.has_max_logit(), r.has_max_logit());
    EXPECT_EQ(a.max_logit(), r.max_logit());
  }
  ASSERT_EQ(agg.ranks_size(), raw.ranks_size());
  for (int i = 0; i < raw.ranks_size(); ++i) {
    const v1::RankSummary& a = agg.ranks(i);
    const v1::RankSummary& r = raw.ranks(i);
    EXPECT_EQ(a.rank(), r.rank());
    EXPECT_EQ(a.token_count(), r.token_count());
    ExpectClose(a.entropy_mean(), r.entropy_mean(), "rank entropy mean");
    EXPECT_EQ(a.has_grad_norm(), r.has_grad_norm());
    EXPECT_EQ(a.grad_norm(), r.grad_norm());
    EXPECT_EQ(a.has_loss(), r.has_loss());
    EXPECT_EQ(a.loss(), r.loss());
  }
}

TEST(AggregationDaemonTest, AggregatedRunEqualsTheSameRunSentPerRank) {
  auto daemon = DaemonProcess::Start();
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  StreamClientOptions client_options;
  client_options.target = (*daemon)->grpc_address();
  auto client = StreamClient::Create(client_options);
  ASSERT_TRUE(client.ok()) << client.status();

  std::vector<std::vector<RankData>> steps;
  for (int s = 0; s < kSteps; ++s) {
    steps.push_back(MakeStep(500 + s));
  }
  for (int s = 0; s < kSteps; ++s) {
    for (int r = 0; r < kAggregationRanks; ++r) {
      ASSERT_TRUE((*client)->Enqueue(steps[s][r].RawReport("per-rank", r, s + 1)));
    }
  }
  const uint64_t raw_reports = (*client)->Stats().enqueued;

  auto group = CpuCollectiveGroup::Create(kAggregationRanks).value();
  std::vector<std::thread> ranks;
  for (int r = 0; r < kAggregationRanks; ++r) {
    ranks.emplace_back([&, r] {
      auto aggregator = StepAggregator::Create(group->member(r), AggregationOptions("aggregated"),
                                               r == 0 ? client->get() : nullptr);
      ASSERT_TRUE(aggregator.ok()) << aggregator.status();
      for (int s = 0; s < kSteps; ++s) {
        const absl::Status status = (*aggregator)->ReportStep(steps[s][r].Input(s + 1));
        ASSERT_TRUE(status.ok()) << status;
      }
    });
  }
  for (std::thread& t : ranks) {
    t.join();
  }
  ASSERT_TRUE((*client)->Flush(absl::Now() + absl::Seconds(30)).ok());
  const StreamClientStats stats = (*client)->Stats();
  EXPECT_EQ(stats.enqueued - raw_reports, static_cast<uint64_t>(kSteps))
      << "one report per step for the aggregated run";
  EXPECT_EQ(stats.rejected, 0u) << stats.last_error;

  auto raw = GetRun((*daemon)->grpc_address(), "per-rank");
  auto agg = GetRun((*daemon)->grpc_address(), "aggregated");
  ASSERT_TRUE(raw.ok()) << raw.status();
  ASSERT_TRUE(agg.ok()) << agg.status();
  EXPECT_EQ(agg->reports_accepted(), static_cast<uint64_t>(kSteps));
  EXPECT_EQ(raw->reports_accepted(), static_cast<uint64_t>(kSteps * kAggregationRanks));
  EXPECT_EQ(agg->world_size(), raw->world_size());
  EXPECT_EQ(agg->verdict().state(), raw->verdict().state());
  EXPECT_EQ(agg->anomalies_size(), raw->anomalies_size());
  ASSERT_EQ(raw->history_size(), kSteps);
  ASSERT_EQ(agg->history_size(), kSteps);
  for (int s = 0; s < kSteps; ++s) {
    ASSERT_GT(raw->history(s).token_count(), 0u);
    ASSERT_EQ(raw->history(s).layers_size(), 3);
    ASSERT_EQ(raw->history(s).ranks_size(), kAggregationRanks);
    ExpectSameStep(agg->history(s), raw->history(s));
  }
}

}  // namespace
}  // namespace entrowatch::client
