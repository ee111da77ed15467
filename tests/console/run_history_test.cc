#include "console/run_history.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"

namespace entrowatch::console {
namespace {

namespace pb = ::entrowatch::v1;

using entrowatch::v1::Anomaly;
using entrowatch::v1::HealthState;
using entrowatch::v1::StepSummary;
using entrowatch::v1::Verdict;

StepSummary Step(uint64_t step, int layers = 0, int heads = 0) {
  StepSummary s;
  s.set_step(step);
  s.set_token_count(8);
  s.set_entropy_mean(static_cast<double>(step));
  s.set_entropy_p10(static_cast<double>(step) - 1);
  s.set_entropy_p90(static_cast<double>(step) + 1);
  s.set_has_grad_norm(step % 2 == 0);  // odd steps have none
  s.set_grad_norm(step % 2 == 0 ? 2.0 : 1000.0);
  s.add_ranks()->set_rank(0);
  for (int l = 0; l < layers; ++l) {
    auto* layer = s.add_layers();
    layer->set_layer(l);
    layer->set_mean_entropy(static_cast<double>(step));
    for (int h = 0; h < heads; ++h) {
      layer->add_head_mean_entropy(h);
    }
  }
  return s;
}

HistoryOptions Options(int max_points, int head_points, int max_state_spans = 1024,
                       int max_anomalies = 512) {
  HistoryOptions options;
  options.max_points = max_points;
  options.head_points = head_points;
  options.max_state_spans = max_state_spans;
  options.max_anomalies = max_anomalies;
  return options;
}

Verdict State(HealthState state, uint64_t since) {
  Verdict v;
  v.set_state(state);
  v.set_since_step(since);
  v.set_reason(absl::StrCat("state ", state));
  return v;
}

TEST(RunHistoryTest, KeepsShortRunsAtFullResolution) {
  RunHistory history(Options(64, 4));
  for (uint64_t step = 0; step < 16; ++step) {
    history.Record("r", Step(step, 2, 3), State(pb::NORMAL, 0), {});
  }
  auto points = history.Points("r", 0);
  ASSERT_TRUE(points.ok());
  ASSERT_EQ(points->size(), 16u);
  for (uint64_t i = 0; i < 16; ++i) {
    EXPECT_EQ((*points)[i].step(), i);
    EXPECT_EQ((*points)[i].entropy_mean(), static_cast<double>(i));
    EXPECT_EQ((*points)[i].ranks_size(), 0) << "per-rank figures are not kept";
    // Per-head entropies only for the newest 4 steps.
    EXPECT_EQ((*points)[i].layers(0).head_mean_entropy_size(), i >= 12 ? 3 : 0) << i;
    EXPECT_EQ((*points)[i].layers_size(), 2);
  }
  auto newest = history.Points("r", 5);
  ASSERT_TRUE(newest.ok());
  ASSERT_EQ(newest->size(), 5u);
  EXPECT_EQ(newest->front().step(), 11u);
  EXPECT_EQ(newest->back().step(), 15u);
}

TEST(RunHistoryTest, DownsamplesALongRunEvenlyWithStepWeightedMeans) {
  constexpr int kMaxPoints = 256;
  constexpr uint64_t kSteps = 100000;
  RunHistory history(Options(kMaxPoints, 16));
  for (uint64_t step = 0; step < kSteps; ++step) {
    history.Record("r", Step(step, 1, 1), State(pb::NORMAL, 0), {});
  }
  auto points = history.Points("r", 0);
  ASSERT_TRUE(points.ok());
  ASSERT_LE(points->size(), static_cast<size_t>(kMaxPoints));
  ASSERT_GE(points->size(), static_cast<size_t>(kMaxPoints / 4 + kMaxPoints * 3 / 8));
  // The newest max_points/4 steps one by one.
  for (int i = 0; i < kMaxPoints / 4; ++i) {
    EXPECT_EQ((*points)[points->size() - 1 - i].step(), kSteps - 1 - i);
  }
  // Every bucket is the step-weighted mean of the steps it covers (the mean
  // of step numbers first..last is their midpoint), the grad norm only over
  // steps that had one, and the buckets cover the run from its first step.
  uint64_t first = 0;
  uint64_t widest = 0;
  for (const StepSummary& p : *points) {
    const uint64_t last = p.step();
    ASSERT_GE(last, first);
    EXPECT_DOUBLE_EQ(p.entropy_mean(), (static_cast<double>(first) + last) / 2) << last;
    EXPECT_DOUBLE_EQ(p.entropy_p90(), (static_cast<double>(first) + last) / 2 + 1) << last;
    EXPECT_FLOAT_EQ(p.layers(0).mean_entropy(), (static_cast<double>(first) + last) / 2);
    if (last > first) {
      EXPECT_TRUE(p.has_grad_norm());
      EXPECT_DOUBLE_EQ(p.grad_norm(), 2.0) << "steps without a grad norm are not averaged in";
    }
    EXPECT_EQ(p.token_count(), 8 * (last - first + 1));
    widest = std::max(widest, last - first + 1);
    first = last + 1;
  }
  EXPECT_EQ(first, kSteps);
  // Even resolution: no bucket is wider than twice the run / points.
  EXPECT_LE(widest, 2 * kSteps / (kMaxPoints * 3 / 8));
}

TEST(RunHistoryTest, MemoryPerRunIsBounded) {
  // The default options with a 32-layer, 32-head model and every signal.
  const HistoryOptions options;
  RunHistory history(options);
  RunHistory small(options);
  StepSummary big = Step(0, 32, 32);
  (*big.mutable_scalars())["reward"] = 1.0;
  (*big.mutable_scalars())["kl"] = 0.1;
  StepSummary plain = Step(0);
  for (uint64_t step = 0; step < 100000; ++step) {
    big.set_step(step);
    plain.set_step(step);
    history.Record("r", big, State(pb::NORMAL, 0), {});
    small.Record("r", plain, State(pb::NORMAL, 0), {});
  }
  const int64_t bytes = history.BytesUsed("r");
  const int64_t small_bytes = small.BytesUsed("r");
  std::printf(
      "history of 100000 steps, %d points: %.2f MiB with 32 layers x 32 heads, "
      "%.2f MiB without attention\n",
      options.max_points, bytes / 1048576.0, small_bytes / 1048576.0);
  // The bound documented in config/entrowatch.yaml.
  EXPECT_LT(bytes, 3 << 20);
  EXPECT_LT(small_bytes, 512 << 10);
  EXPECT_EQ(history.Points("r", 0)->size(), small.Points("r", 0)->size());
}

TEST(RunHistoryTest, IgnoresReplayedStepsAndForgets) {
  RunHistory history(HistoryOptions{});
  history.Record("r", Step(5), State(pb::NORMAL, 0), {});
  history.Record("r", Step(3), State(pb::PANIC_ZONE, 3), {});
  history.Record("r", Step(5), State(pb::PANIC_ZONE, 3), {});
  EXPECT_EQ(history.Points("r", 0)->size(), 1u);
  EXPECT_EQ(history.Timeline("r")->states_size(), 1);
  EXPECT_GT(history.BytesUsed("r"), 0);
  history.Forget("r");
  EXPECT_EQ(history.Points("r", 0).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(history.Timeline("r").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(history.BytesUsed("r"), 0);
}

TEST(RunHistoryTest, AsASinkRecordsStepsOfItsRunAndForgetsItOnExpiry) {
  RunHistory history(Options(64, 4));
  std::unique_ptr<exporter::RunSink> a = history.Open("a");
  std::unique_ptr<exporter::RunSink> b = history.Open("b");
  EXPECT_EQ(history.Points("a", 0).status().code(), absl::StatusCode::kNotFound)
      << "opened without a step";
  const Verdict verdict = State(pb::NORMAL, 1);
  const std::vector<Anomaly> none;
  Anomaly fired;
  fired.set_pattern(pb::ENTROPY_COLLAPSE);
  fired.set_since_step(2);
  const std::vector<Anomaly> one = {fired};
  for (uint64_t s = 1; s <= 3; ++s) {
    const StepSummary step = Step(s);
    a->OnStepFinalized({&step, &verdict, s == 2 ? &one : &none, /*replayed=*/false});
  }
  // A replay of steps the history holds (after a refused write) adds nothing.
  const StepSummary replayed = Step(2);
  a->OnStepFinalized({&replayed, &verdict, &one, /*replayed=*/true});
  const StepSummary other = Step(7);
  b->OnStepFinalized({&other, &verdict, &none, /*replayed=*/false});

  auto points = history.Points("a", 0);
  ASSERT_TRUE(points.ok()) << points.status();
  ASSERT_EQ(points->size(), 3u);
  EXPECT_EQ((*points)[2].step(), 3u);
  auto timeline = history.Timeline("a");
  ASSERT_TRUE(timeline.ok());
  EXPECT_EQ(timeline->anomalies_size(), 1);

  a->OnRunEnded(exporter::RunEnd::kFinished);
  EXPECT_TRUE(history.Points("a", 0).ok()) << "a finished run keeps its history";
  a->OnRunEnded(exporter::RunEnd::kExpired);
  a.reset();
  EXPECT_EQ(history.Points("a", 0).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(history.BytesUsed("a"), 0);
  ASSERT_TRUE(history.Points("b", 0).ok());
  EXPECT_EQ(history.Points("b", 0)->size(), 1u);
}

TEST(RunHistoryTest, AnExpiredRunSinkDoesNotForgetTheRunOpenedAgain) {
  RunHistory history(Options(64, 4));
  const Verdict verdict = State(pb::NORMAL, 1);
  const std::vector<Anomaly> none;
  std::unique_ptr<exporter::RunSink> old_sink = history.Open("r");
  history.Forget("r");
  std::unique_ptr<exporter::RunSink> new_sink = history.Open("r");
  const StepSummary step = Step(1);
  new_sink->OnStepFinalized({&step, &verdict, &none, false});
  old_sink->OnRunEnded(exporter::RunEnd::kExpired);
  ASSERT_TRUE(history.Points("r", 0).ok());
  EXPECT_EQ(history.Points("r", 0)->size(), 1u);
}

TEST(RunHistoryTest, TimelineHasStateSpansAndEveryAnomalyOnce) {
  RunHistory history(HistoryOptions{});
  Anomaly collapse;
  collapse.set_pattern(pb::ENTROPY_COLLAPSE);
  collapse.set_subject("token");
  collapse.set_since_step(7);
  collapse.set_reason("entropy near zero");
  for (uint64_t step = 0; step < 20; ++step) {
    Verdict v = step < 5 ? State(pb::WARMUP, 0)
                         : (step < 12 ? State(pb::NORMAL, 5) : State(pb::PANIC_ZONE, 10));
    std::vector<Anomaly> fired;
    if (step == 8 || step == 9) {
      fired.push_back(collapse);  // the same anomaly reported twice
    }
    history.Record("r", Step(step), v, fired);
  }
  auto timeline = history.Timeline("r");
  ASSERT_TRUE(timeline.ok());
  EXPECT_EQ(timeline->run_id(), "r");
  EXPECT_EQ(timeline->steps_recorded(), 20u);
  ASSERT_EQ(timeline->states_size(), 3);
  EXPECT_EQ(timeline->states(0).state(), pb::WARMUP);
  EXPECT_EQ(timeline->states(0).since_step(), 0u);
  EXPECT_EQ(timeline->states(0).step(), 4u);
  EXPECT_EQ(timeline->states(1).state(), pb::NORMAL);
  EXPECT_EQ(timeline->states(1).since_step(), 5u);
  EXPECT_EQ(timeline->states(1).step(), 11u);
  // The verdict says PANIC_ZONE began at step 10 (hysteresis), seen at 12.
  EXPECT_EQ(timeline->states(2).state(), pb::PANIC_ZONE);
  EXPECT_EQ(timeline->states(2).since_step(), 10u);
  EXPECT_EQ(timeline->states(2).step(), 19u);
  ASSERT_EQ(timeline->anomalies_size(), 1);
  EXPECT_EQ(timeline->anomalies(0).reason(), "entropy near zero");
}

TEST(RunHistoryTest, BoundsStateSpansAndAnomalies) {
  RunHistory history(Options(2048, 256, 4, 3));
  for (uint64_t step = 0; step < 100; ++step) {
    Anomaly a;
    a.set_pattern(pb::ENTROPY_DRIFT);
    a.set_since_step(step);
    history.Record("r", Step(step), State(step % 2 ? pb::NORMAL : pb::STAGNATION, step), {a});
  }
  auto timeline = history.Timeline("r");
  ASSERT_TRUE(timeline.ok());
  ASSERT_EQ(timeline->states_size(), 4);
  EXPECT_EQ(timeline->states(3).since_step(), 99u);
  ASSERT_EQ(timeline->anomalies_size(), 3);
  EXPECT_EQ(timeline->anomalies(2).since_step(), 99u);
}

}  // namespace
}  // namespace entrowatch::console
