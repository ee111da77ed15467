#include "console/run_history.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace entrowatch::console {
namespace {

using entrowatch::v1::Anomaly;
using entrowatch::v1::LayerSummary;
using entrowatch::v1::StepSummary;
using entrowatch::v1::Verdict;

// Weighted mean of a (weight wa) and b (weight wb); the other one when a
// weight is zero.
double Mean(double a, double wa, double b, double wb) {
  if (wa + wb <= 0) {
    return b;
  }
  return (a * wa + b * wb) / (wa + wb);
}

void MergeLayer(LayerSummary* older, double wa, const LayerSummary& newer, double wb) {
  older->set_mean_entropy(Mean(older->mean_entropy(), wa, newer.mean_entropy(), wb));
  older->set_head_variance(Mean(older->head_variance(), wa, newer.head_variance(), wb));
  if (older->head_mean_entropy_size() == newer.head_mean_entropy_size()) {
    for (int h = 0; h < newer.head_mean_entropy_size(); ++h) {
      older->set_head_mean_entropy(
          h, Mean(older->head_mean_entropy(h), wa, newer.head_mean_entropy(h), wb));
    }
  } else {
    *older->mutable_head_mean_entropy() = newer.head_mean_entropy();
  }
  if (newer.has_max_logit()) {
    older->set_max_logit(older->has_max_logit() ? std::max(older->max_logit(), newer.max_logit())
                                                : newer.max_logit());
  }
}

}  // namespace

void MergeInto(StepSummary* older, uint64_t w_older, const StepSummary& newer, uint64_t w_newer) {
  const double wa = static_cast<double>(w_older);
  const double wb = static_cast<double>(w_newer);
  StepSummary& a = *older;
  const StepSummary& b = newer;
  // Token statistics are weighted by steps, not tokens, so that one huge step
  // does not hide the others in its bucket.
  const double ta = a.token_count() > 0 ? wa : 0;
  const double tb = b.token_count() > 0 ? wb : 0;
  a.set_entropy_mean(Mean(a.entropy_mean(), ta, b.entropy_mean(), tb));
  a.set_entropy_p10(Mean(a.entropy_p10(), ta, b.entropy_p10(), tb));
  a.set_entropy_p50(Mean(a.entropy_p50(), ta, b.entropy_p50(), tb));
  a.set_entropy_p90(Mean(a.entropy_p90(), ta, b.entropy_p90(), tb));
  a.set_normalized_entropy_mean(
      Mean(a.normalized_entropy_mean(), ta, b.normalized_entropy_mean(), tb));
  a.set_high_entropy_ratio(Mean(a.high_entropy_ratio(), ta, b.high_entropy_ratio(), tb));
  a.set_top1_prob_mean(Mean(a.top1_prob_mean(), ta, b.top1_prob_mean(), tb));
  a.set_token_count(a.token_count() + b.token_count());
  a.set_surprisal_mean(Mean(a.surprisal_mean(), a.surprisal_count() > 0 ? wa : 0,
                            b.surprisal_mean(), b.surprisal_count() > 0 ? wb : 0));
  a.set_surprisal_count(a.surprisal_count() + b.surprisal_count());
  a.set_grad_norm(
      Mean(a.grad_norm(), a.has_grad_norm() ? wa : 0, b.grad_norm(), b.has_grad_norm() ? wb : 0));
  a.set_has_grad_norm(a.has_grad_norm() || b.has_grad_norm());
  a.set_grad_norm_disagreements(a.grad_norm_disagreements() + b.grad_norm_disagreements());
  a.set_loss(Mean(a.loss(), a.has_loss() ? wa : 0, b.loss(), b.has_loss() ? wb : 0));
  a.set_has_loss(a.has_loss() || b.has_loss());
  a.set_learning_rate(Mean(a.learning_rate(), wa, b.learning_rate(), wb));
  a.set_generated_entropy_mean(
      Mean(a.generated_entropy_mean(), a.generated_token_count() > 0 ? wa : 0,
           b.generated_entropy_mean(), b.generated_token_count() > 0 ? wb : 0));
  a.set_generated_token_count(a.generated_token_count() + b.generated_token_count());
  for (const auto& [name, value] : b.scalars()) {
    auto it = a.mutable_scalars()->find(name);
    if (it == a.mutable_scalars()->end()) {
      (*a.mutable_scalars())[name] = value;
    } else {
      it->second = Mean(it->second, wa, value, wb);
    }
  }
  for (const LayerSummary& layer : b.layers()) {
    LayerSummary* match = nullptr;
    for (LayerSummary& mine : *a.mutable_layers()) {
      if (mine.layer() == layer.layer()) {
        match = &mine;
        break;
      }
    }
    if (match == nullptr) {
      *a.add_layers() = layer;
    } else {
      MergeLayer(match, wa, layer, wb);
    }
  }
  a.set_complete(a.complete() && b.complete());
  a.set_step(b.step());
  a.set_phase(b.phase());
  a.set_ranks_reported(b.ranks_reported());
  a.set_world_size(b.world_size());
  *a.mutable_finalized_time() = b.finalized_time();
  a.clear_ranks();
}

RunHistory::RunHistory(const HistoryOptions& options) : options_(options) {}

std::shared_ptr<RunHistory::Run> RunHistory::Find(const std::string& run) const {
  absl::MutexLock lock(&mu_);
  auto it = runs_.find(run);
  return it == runs_.end() ? nullptr : it->second;
}

void RunHistory::Record(const std::string& run_id, const StepSummary& step, const Verdict& verdict,
                        absl::Span<const Anomaly> fired) {
  std::shared_ptr<Run> run;
  {
    absl::MutexLock lock(&mu_);
    std::shared_ptr<Run>& slot = runs_[run_id];
    if (slot == nullptr) {
      slot = std::make_shared<Run>();
    }
    run = slot;
  }
  absl::MutexLock lock(&run->mu);
  if (run->any && step.step() <= run->last_step) {
    return;
  }
  run->any = true;
  run->last_step = step.step();
  ++run->steps_recorded;

  Point point;
  point.summary = step;
  point.summary.clear_ranks();
  run->points.push_back(std::move(point));
  const int with_heads = std::max(options_.head_points, 0);
  if (static_cast<int>(run->points.size()) > with_heads) {
    StepSummary& aged = run->points[run->points.size() - 1 - with_heads].summary;
    for (LayerSummary& layer : *aged.mutable_layers()) {
      layer.clear_head_mean_entropy();
    }
  }
  if (static_cast<int>(run->points.size()) > options_.max_points) {
    Compact(*run);
  }

  if (run->states.empty() || run->states.back().state() != verdict.state()) {
    Verdict span;
    span.set_state(verdict.state());
    uint64_t since = verdict.since_step() > 0 ? verdict.since_step() : step.step();
    if (!run->states.empty()) {
      since = std::max(since, run->states.back().since_step() + 1);
      since = std::min(since, step.step());
    }
    span.set_since_step(since);
    span.set_reason(verdict.reason());
    *span.mutable_evidence() = verdict.evidence();
    span.set_recommended_action(verdict.recommended_action());
    run->states.push_back(std::move(span));
    while (static_cast<int>(run->states.size()) > options_.max_state_spans) {
      run->states.pop_front();
    }
  }
  run->states.back().set_step(step.step());

  for (const Anomaly& anomaly : fired) {
    const bool seen =
        std::any_of(run->anomalies.begin(), run->anomalies.end(), [&anomaly](const Anomaly& a) {
          return a.pattern() == anomaly.pattern() && a.subject() == anomaly.subject() &&
                 a.since_step() == anomaly.since_step();
        });
    if (!seen) {
      run->anomalies.push_back(anomaly);
    }
  }
  while (static_cast<int>(run->anomalies.size()) > options_.max_anomalies) {
    run->anomalies.pop_front();
  }
}

void RunHistory::Compact(Run& run) const {
  // The older half, merged pairwise; the newer half stays at full resolution.
  const size_t older = run.points.size() / 2;
  std::deque<Point> merged;
  for (size_t i = 0; i < older; i += 2) {
    Point bucket = std::move(run.points[i]);
    if (i + 1 < older) {
      MergeInto(&bucket.summary, bucket.width, run.points[i + 1].summary, run.points[i + 1].width);
      bucket.width += run.points[i + 1].width;
    }
    merged.push_back(std::move(bucket));
  }
  for (size_t i = older; i < run.points.size(); ++i) {
    merged.push_back(std::move(run.points[i]));
  }
  run.points = std::move(merged);
}

void RunHistory::Forget(const std::string& run) {
  absl::MutexLock lock(&mu_);
  runs_.erase(run);
}

absl::StatusOr<std::vector<StepSummary>> RunHistory::Points(const std::string& run_id,
                                                            int limit) const {
  std::shared_ptr<Run> run = Find(run_id);
  if (run == nullptr) {
    return absl::NotFoundError(absl::StrCat("no history for run '", run_id, "'"));
  }
  absl::MutexLock lock(&run->mu);
  size_t first = 0;
  if (limit > 0 && run->points.size() > static_cast<size_t>(limit)) {
    first = run->points.size() - static_cast<size_t>(limit);
  }
  std::vector<StepSummary> out;
  out.reserve(run->points.size() - first);
  for (size_t i = first; i < run->points.size(); ++i) {
    out.push_back(run->points[i].summary);
  }
  return out;
}

absl::StatusOr<v1::RunTimeline> RunHistory::Timeline(const std::string& run_id) const {
  std::shared_ptr<Run> run = Find(run_id);
  if (run == nullptr) {
    return absl::NotFoundError(absl::StrCat("no history for run '", run_id, "'"));
  }
  absl::MutexLock lock(&run->mu);
  v1::RunTimeline timeline;
  timeline.set_run_id(run_id);
  for (const Verdict& span : run->states) {
    *timeline.add_states() = span;
  }
  for (const Anomaly& anomaly : run->anomalies) {
    *timeline.add_anomalies() = anomaly;
  }
  timeline.set_steps_recorded(run->steps_recorded);
  timeline.set_history_bytes(static_cast<uint64_t>(Bytes(*run)));
  return timeline;
}

int64_t RunHistory::Bytes(const Run& run) {
  int64_t bytes = sizeof(Run);
  for (const Point& point : run.points) {
    bytes +=
        static_cast<int64_t>(sizeof(Point) - sizeof(StepSummary) + point.summary.SpaceUsedLong());
  }
  for (const Verdict& span : run.states) {
    bytes += static_cast<int64_t>(span.SpaceUsedLong());
  }
  for (const Anomaly& anomaly : run.anomalies) {
    bytes += static_cast<int64_t>(anomaly.SpaceUsedLong());
  }
  return bytes;
}

int64_t RunHistory::BytesUsed(const std::string& run_id) const {
  std::shared_ptr<Run> run = Find(run_id);
  if (run == nullptr) {
    return 0;
  }
  absl::MutexLock lock(&run->mu);
  return Bytes(*run);
}

}  // namespace entrowatch::console
