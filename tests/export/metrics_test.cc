#include "export/metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace entrowatch::exporter {
namespace {

namespace v1 = ::entrowatch::v1;
using ::testing::HasSubstr;
using ::testing::Not;

MetricsOptions Options() {
  MetricsOptions options;
  options.entropy_buckets = {0.5, 1, 2, 4};
  options.backend = "cpu";
  options.per_head_series = true;
  return options;
}

// The value of the sample `series` (name{labels} exactly as exposed), or NaN.
double Sample(const std::string& scrape, const std::string& series) {
  for (absl::string_view line : absl::StrSplit(scrape, '\n')) {
    if (absl::ConsumePrefix(&line, series) && absl::ConsumePrefix(&line, " ")) {
      return std::stod(std::string(line));
    }
  }
  return std::nan("");
}

// True when the scrape has at least one sample of family `name`.
bool HasSample(const std::string& scrape, const std::string& name) {
  const std::regex sample("^" + name + "(_bucket|_count|_sum)?(\\{| )");
  for (absl::string_view line : absl::StrSplit(scrape, '\n')) {
    if (std::regex_search(std::string(line), sample)) {
      return true;
    }
  }
  return false;
}

v1::StepSummary FullStep(uint64_t step, bool complete = true) {
  v1::StepSummary s;
  s.set_step(step);
  s.set_complete(complete);
  s.set_phase(v1::TRAIN);
  s.set_token_count(4);
  s.set_entropy_mean(1.5);
  s.set_entropy_p10(0.5);
  s.set_entropy_p50(1.25);
  s.set_entropy_p90(2.5);
  s.set_normalized_entropy_mean(0.25);
  s.set_high_entropy_ratio(0.125);
  s.set_generated_token_count(2);
  s.set_generated_entropy_mean(0.75);
  s.set_has_grad_norm(true);
  s.set_grad_norm(3.5);
  s.set_has_loss(true);
  s.set_loss(2.25);
  s.set_learning_rate(1e-4);
  (*s.mutable_scalars())["reward"] = 0.5;
  auto* layer = s.add_layers();
  layer->set_layer(3);
  layer->set_mean_entropy(2.0);
  layer->set_head_variance(0.5);
  layer->set_max_logit(40);
  layer->add_head_mean_entropy(1.0f);
  layer->add_head_mean_entropy(3.0f);
  return s;
}

v1::Anomaly Collapse(v1::Severity severity) {
  v1::Anomaly a;
  a.set_pattern(v1::ENTROPY_COLLAPSE);
  a.set_severity(severity);
  return a;
}

// A run seen end to end through its RunSink: a report, two finalized steps
// and a verdict with an active anomaly.
void FeedRun(RunSink& sink) {
  const std::vector<float> entropies = {0.25f, 1.5f, 3.0f, 9.0f};
  sink.OnReportAccepted(absl::FromUnixSeconds(1800000000), v1::TRAIN, entropies);
  v1::Verdict verdict;
  verdict.set_state(v1::PANIC_ZONE);
  const std::vector<v1::Anomaly> fired = {Collapse(v1::WARNING)};
  const std::vector<v1::Anomaly> none;
  const v1::StepSummary first = FullStep(1);
  const v1::StepSummary second = FullStep(2, /*complete=*/false);
  sink.OnStepFinalized({&first, &verdict, &none, false});
  sink.OnStepFinalized({&second, &verdict, &fired, false});
  sink.OnVerdict(verdict, fired, fired);
}

TEST(MetricsTest, RunSinkExportsTheRunsSeries) {
  Metrics metrics(Options());
  std::unique_ptr<RunSink> sink = metrics.Open("r1");
  FeedRun(*sink);
  const std::string m = metrics.Scrape();
  const std::string run = "run=\"r1\"";
  EXPECT_EQ(Sample(m, "entrowatch_token_entropy_mean_nats{phase=\"train\"," + run + "}"), 1.5);
  EXPECT_EQ(Sample(m, "entrowatch_token_entropy_p90_nats{phase=\"train\"," + run + "}"), 2.5);
  EXPECT_EQ(Sample(m, "entrowatch_token_entropy_nats_count{phase=\"train\"," + run + "}"), 4);
  EXPECT_EQ(Sample(m, "entrowatch_token_entropy_nats_bucket{phase=\"train\"," + run + ",le=\"1\"}"),
            1);
  EXPECT_EQ(Sample(m, "entrowatch_token_entropy_nats_sum{phase=\"train\"," + run + "}"), 13.75);
  EXPECT_EQ(Sample(m, "entrowatch_last_step{" + run + "}"), 2);
  EXPECT_EQ(Sample(m, "entrowatch_steps_finalized_total{complete=\"true\"," + run + "}"), 1);
  EXPECT_EQ(Sample(m, "entrowatch_steps_finalized_total{complete=\"false\"," + run + "}"), 1);
  EXPECT_EQ(Sample(m, "entrowatch_last_report_timestamp_seconds{" + run + "}"), 1.8e9);
  EXPECT_EQ(Sample(m, "entrowatch_grad_norm{" + run + "}"), 3.5);
  EXPECT_EQ(Sample(m, "entrowatch_scalar{name=\"reward\"," + run + "}"), 0.5);
  EXPECT_EQ(Sample(m, "entrowatch_attention_max_logit{layer=\"3\"," + run + "}"), 40);
  EXPECT_EQ(Sample(m, "entrowatch_attention_head_entropy_nats{head=\"1\",layer=\"3\"," + run + "}"),
            3);
  EXPECT_EQ(Sample(m, "entrowatch_health_state{" + run + ",state=\"PANIC_ZONE\"}"), 1);
  EXPECT_EQ(Sample(m, "entrowatch_health_state{" + run + ",state=\"NORMAL\"}"), 0);
  EXPECT_EQ(Sample(m, "entrowatch_anomaly_active{pattern=\"ENTROPY_COLLAPSE\"," + run + "}"), 1);
  EXPECT_EQ(Sample(m, "entrowatch_anomaly_severity{pattern=\"ENTROPY_COLLAPSE\"," + run + "}"),
            v1::WARNING);
  EXPECT_EQ(Sample(m, "entrowatch_anomalies_total{pattern=\"ENTROPY_COLLAPSE\"," + run + "}"), 1);
  EXPECT_EQ(Sample(m, "entrowatch_run_finished{" + run + "}"), 0);

  // The pattern resolves: active and severity drop to 0, the count stays.
  v1::Verdict normal;
  normal.set_state(v1::NORMAL);
  sink->OnVerdict(normal, {}, {});
  sink->OnRunEnded(RunEnd::kFinished);
  const std::string after = metrics.Scrape();
  EXPECT_EQ(Sample(after, "entrowatch_anomaly_active{pattern=\"ENTROPY_COLLAPSE\"," + run + "}"),
            0);
  EXPECT_EQ(Sample(after, "entrowatch_anomaly_severity{pattern=\"ENTROPY_COLLAPSE\"," + run + "}"),
            0);
  EXPECT_EQ(Sample(after, "entrowatch_anomalies_total{pattern=\"ENTROPY_COLLAPSE\"," + run + "}"),
            1);
  EXPECT_EQ(Sample(after, "entrowatch_health_state{" + run + ",state=\"NORMAL\"}"), 1);
  EXPECT_EQ(Sample(after, "entrowatch_run_finished{" + run + "}"), 1);
  EXPECT_EQ(Sample(after, "entrowatch_last_step{" + run + "}"), 2) << "a finished run keeps values";
}

TEST(MetricsTest, AnExpiredRunLosesEverySeriesAndOtherRunsKeepTheirs) {
  Metrics metrics(Options());
  std::unique_ptr<RunSink> gone = metrics.Open("gone");
  std::unique_ptr<RunSink> kept = metrics.Open("kept");
  FeedRun(*gone);
  FeedRun(*kept);
  gone->OnRunEnded(RunEnd::kExpired);
  gone.reset();
  const std::string m = metrics.Scrape();
  EXPECT_THAT(m, Not(HasSubstr("run=\"gone\"")));
  EXPECT_EQ(Sample(m, "entrowatch_last_step{run=\"kept\"}"), 2);
  EXPECT_EQ(Sample(m, "entrowatch_anomalies_total{pattern=\"ENTROPY_COLLAPSE\",run=\"kept\"}"), 1);
}

TEST(MetricsTest, ReplayedStepsAreCountedOncePerRunSink) {
  Metrics metrics(Options());
  v1::Verdict verdict;
  const std::vector<v1::Anomaly> none;
  const v1::StepSummary one = FullStep(1);
  const v1::StepSummary two = FullStep(2);
  const v1::StepSummary three = FullStep(3);
  {
    // After a restart the RunSink is new: replayed steps count.
    std::unique_ptr<RunSink> sink = metrics.Open("restored");
    sink->OnStepFinalized({&one, &verdict, &none, /*replayed=*/true});
    sink->OnStepFinalized({&two, &verdict, &none, /*replayed=*/true});
    EXPECT_EQ(Sample(metrics.Scrape(),
                     "entrowatch_steps_finalized_total{complete=\"true\",run=\"restored\"}"),
              2);
  }
  std::unique_ptr<RunSink> sink = metrics.Open("refused");
  sink->OnStepFinalized({&one, &verdict, &none, false});
  sink->OnStepFinalized({&two, &verdict, &none, false});
  // A refused write replays what the store holds, then finalizes anew.
  sink->OnStepFinalized({&one, &verdict, &none, true});
  sink->OnStepFinalized({&two, &verdict, &none, true});
  sink->OnStepFinalized({&three, &verdict, &none, true});
  const std::string m = metrics.Scrape();
  EXPECT_EQ(Sample(m, "entrowatch_steps_finalized_total{complete=\"true\",run=\"refused\"}"), 3);
  EXPECT_EQ(Sample(m, "entrowatch_last_step{run=\"refused\"}"), 3);
  EXPECT_THAT(m, Not(HasSubstr("run=\"restored\""))) << "destroying a RunSink removes its series";
}

TEST(MetricsTest, LayersAndScalarsPerRunAreBounded) {
  MetricsOptions options = Options();
  options.max_layers_per_run = 2;
  Metrics metrics(options);
  std::unique_ptr<RunSink> sink = metrics.Open("wide");
  v1::StepSummary step = FullStep(1);
  step.clear_layers();
  for (int l = 0; l < 5; ++l) {
    step.add_layers()->set_layer(l);
  }
  for (int i = 0; i < 40; ++i) {
    (*step.mutable_scalars())[absl::StrCat("s", i)] = i;
  }
  v1::Verdict verdict;
  const std::vector<v1::Anomaly> none;
  sink->OnStepFinalized({&step, &verdict, &none, false});
  const std::string m = metrics.Scrape();
  int layers = 0;
  int scalars = 0;
  for (absl::string_view line : absl::StrSplit(m, '\n')) {
    layers += absl::StartsWith(line, "entrowatch_attention_entropy_nats{") ? 1 : 0;
    scalars += absl::StartsWith(line, "entrowatch_scalar{") ? 1 : 0;
  }
  EXPECT_EQ(layers, 2);
  EXPECT_EQ(scalars, 32);
}

TEST(MetricsTest, ProcessorStatsAreDaemonWideSeries) {
  Metrics metrics(Options());
  ProcessorStats& stats = metrics;
  stats.ReportOutcome("ok");
  stats.ReportOutcome("ok");
  stats.ReportOutcome("unauthenticated");  // not known at start-up
  stats.IngestBytes(100);
  stats.StreamShed();
  stats.ComputeSeconds("token", 0.002);
  stats.SetComputeDegraded(true);
  stats.RowsSkipped("nonfinite", 3);
  stats.SetRuns(7);
  stats.StoreFailure("full");
  stats.SetStoreBytes(4096);
  const std::string m = metrics.Scrape();
  EXPECT_EQ(Sample(m, "entrowatch_reports_total{result=\"ok\"}"), 2);
  EXPECT_EQ(Sample(m, "entrowatch_reports_total{result=\"unauthenticated\"}"), 1);
  EXPECT_EQ(Sample(m, "entrowatch_reports_total{result=\"late\"}"), 0) << "exists from the start";
  EXPECT_EQ(Sample(m, "entrowatch_ingest_bytes_total"), 100);
  EXPECT_EQ(Sample(m, "entrowatch_streams_shed_total"), 1);
  EXPECT_EQ(Sample(m, "entrowatch_compute_seconds_count{backend=\"cpu\",kind=\"token\"}"), 1);
  EXPECT_EQ(Sample(m, "entrowatch_compute_degraded"), 1);
  EXPECT_EQ(Sample(m, "entrowatch_rows_skipped_total{reason=\"nonfinite\"}"), 3);
  EXPECT_EQ(Sample(m, "entrowatch_runs"), 7);
  EXPECT_EQ(Sample(m, "entrowatch_store_failures_total{reason=\"full\"}"), 1);
  EXPECT_EQ(Sample(m, "entrowatch_store_failures_total{reason=\"io\"}"), 0);
  EXPECT_EQ(Sample(m, "entrowatch_store_db_bytes"), 4096);
}

TEST(MetricsTest, RunsUpdateConcurrentlyWithScrapes) {
  Metrics metrics(Options());
  constexpr int kThreads = 4;
  constexpr int kSteps = 200;
  std::vector<std::unique_ptr<RunSink>> sinks;
  for (int t = 0; t < kThreads; ++t) {
    sinks.push_back(metrics.Open(absl::StrCat("run", t)));
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&metrics, sink = sinks[t].get()] {
      v1::Verdict verdict;
      const std::vector<v1::Anomaly> fired = {Collapse(v1::CRITICAL)};
      const std::vector<float> entropies = {1.0f, 2.0f};
      for (int s = 1; s <= kSteps; ++s) {
        const v1::StepSummary step = FullStep(s);
        sink->OnReportAccepted(absl::Now(), v1::TRAIN, entropies);
        sink->OnStepFinalized({&step, &verdict, &fired, false});
        sink->OnVerdict(verdict, fired, fired);
        metrics.ReportOutcome("ok");
      }
      sink->OnRunEnded(RunEnd::kFinished);
    });
  }
  for (int i = 0; i < 20; ++i) {
    EXPECT_THAT(metrics.Scrape(), HasSubstr("entrowatch_reports_total"));
  }
  for (std::thread& t : threads) {
    t.join();
  }
  const std::string m = metrics.Scrape();
  EXPECT_EQ(Sample(m, "entrowatch_reports_total{result=\"ok\"}"), kThreads * kSteps);
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(
        Sample(m, absl::StrCat("entrowatch_anomalies_total{pattern=\"ENTROPY_COLLAPSE\",run=\"run",
                               t, "\"}")),
        kSteps);
  }
}

TEST(MetricsTest, PerRunCallsByIdForwardToARunSink) {
  Metrics metrics(Options());
  metrics.ReportSeen("legacy", 1.8e9);
  metrics.TokenEntropies("legacy", v1::EVAL, {1.0f, 2.0f});
  metrics.StepFinalized("legacy", FullStep(4));
  metrics.Health("legacy", v1::STAGNATION, {Collapse(v1::INFO)}, {Collapse(v1::INFO)});
  metrics.RunFinished("legacy");
  std::string m = metrics.Scrape();
  EXPECT_EQ(Sample(m, "entrowatch_token_entropy_nats_count{phase=\"eval\",run=\"legacy\"}"), 2);
  EXPECT_EQ(Sample(m, "entrowatch_last_step{run=\"legacy\"}"), 4);
  EXPECT_EQ(Sample(m, "entrowatch_health_state{run=\"legacy\",state=\"STAGNATION\"}"), 1);
  EXPECT_EQ(Sample(m, "entrowatch_run_finished{run=\"legacy\"}"), 1);
  metrics.ForgetRun("legacy");
  EXPECT_THAT(metrics.Scrape(), Not(HasSubstr("run=\"legacy\"")));
}

// docs/metrics.md: one table row per family, `name` | type | labels | help.
struct DocumentedMetric {
  std::string name;
  std::string type;
  std::string labels;
};

std::vector<DocumentedMetric> DocumentedMetrics() {
  std::ifstream in(ENTROWATCH_METRICS_DOC);
  EXPECT_TRUE(in.good()) << "cannot read " << ENTROWATCH_METRICS_DOC;
  const std::regex row(R"(^\| `(entrowatch_[a-z0-9_]+)` \| ([a-z]+) \| ([a-z_, ]*) \|)");
  std::vector<DocumentedMetric> out;
  std::string line;
  while (std::getline(in, line)) {
    std::smatch match;
    if (std::regex_search(line, match, row)) {
      out.push_back({match[1], match[2], match[3]});
    }
  }
  return out;
}

TEST(MetricsCatalogTest, EveryRegisteredMetricIsDocumentedWithItsTypeAndLabels) {
  std::map<std::string, DocumentedMetric> documented;
  for (DocumentedMetric& d : DocumentedMetrics()) {
    documented[d.name] = d;
  }
  for (const MetricDescriptor& row : MetricCatalog()) {
    SCOPED_TRACE(std::string(row.name));
    auto it = documented.find(std::string(row.name));
    ASSERT_NE(it, documented.end()) << "missing from " << ENTROWATCH_METRICS_DOC;
    EXPECT_EQ(it->second.type, row.type);
    EXPECT_EQ(it->second.labels, absl::StrJoin(row.labels, ", "));
    EXPECT_FALSE(row.help.empty());
  }
}

TEST(MetricsCatalogTest, EveryDocumentedMetricIsInTheScrapeOfAnExporterThatSawARun) {
  const std::vector<DocumentedMetric> documented = DocumentedMetrics();
  ASSERT_GE(documented.size(), MetricCatalog().size());
  Metrics metrics(Options());
  std::unique_ptr<RunSink> sink = metrics.Open("seen");
  FeedRun(*sink);
  const std::string m = metrics.Scrape();
  for (const DocumentedMetric& d : documented) {
    EXPECT_TRUE(HasSample(m, d.name)) << d.name << " is documented but not in the scrape";
  }
}

TEST(MetricsCatalogTest, PromtoolAcceptsTheScrape) {
  if (std::system("command -v promtool >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "promtool not installed";
  }
  Metrics metrics(Options());
  std::unique_ptr<RunSink> sink = metrics.Open("linted");
  FeedRun(*sink);
  metrics.ReportOutcome("ok");
  const std::string path = ::testing::TempDir() + "/entrowatch_scrape.txt";
  std::ofstream(path) << metrics.Scrape();
  const std::string command = "promtool check metrics < " + path + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  char buffer[512];
  while (fgets(buffer, sizeof(buffer), pipe) != nullptr) {
    output += buffer;
  }
  EXPECT_EQ(pclose(pipe), 0) << output;
  EXPECT_EQ(output, "") << "promtool lint findings";
}

}  // namespace
}  // namespace entrowatch::exporter
