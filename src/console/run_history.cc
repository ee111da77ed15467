#include "console/run_history.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"

namespace entrowatch::console {
namespace {

using entrowatch::v1::Anomaly;
using entrowatch::v1::LayerSummary;
using entrowatch::v1::StepSummary;
using entrowatch::v1::Verdict;

// Weighted mean of a (weight wa) and b (weight wb); b when both weights are
// zero.
double Mean(double a, double wa, double b, double wb) {
  if (wa + wb <= 0) {
    return b;
  }
  return (a * wa + b * wb) / (wa + wb);
}

absl::Status NoHistory(const std::string& run_id) {
  return absl::NotFoundError(absl::StrCat("no history for run '", run_id, "'"));
}

}  // namespace

RunHistory::Point RunHistory::FromSummary(const StepSummary& s) {
  Point p;
  p.step = s.step();
  p.token_count = s.token_count();
  p.surprisal_count = s.surprisal_count();
  p.generated_token_count = s.generated_token_count();
  p.entropy_mean = s.entropy_mean();
  p.entropy_p10 = s.entropy_p10();
  p.entropy_p50 = s.entropy_p50();
  p.entropy_p90 = s.entropy_p90();
  p.normalized_entropy_mean = s.normalized_entropy_mean();
  p.high_entropy_ratio = s.high_entropy_ratio();
  p.top1_prob_mean = s.top1_prob_mean();
  p.surprisal_mean = s.surprisal_mean();
  p.grad_norm = s.grad_norm();
  p.loss = s.loss();
  p.learning_rate = s.learning_rate();
  p.generated_entropy_mean = s.generated_entropy_mean();
  p.finalized_nanos = s.finalized_time().seconds() * 1000000000 + s.finalized_time().nanos();
  p.ranks_reported = s.ranks_reported();
  p.world_size = s.world_size();
  p.grad_norm_disagreements = s.grad_norm_disagreements();
  p.phase = s.phase();
  p.complete = s.complete();
  p.has_grad_norm = s.has_grad_norm();
  p.has_loss = s.has_loss();
  for (const LayerSummary& layer : s.layers()) {
    p.layer_ids.push_back(layer.layer());
    p.layer_mean.push_back(static_cast<float>(layer.mean_entropy()));
    p.layer_variance.push_back(static_cast<float>(layer.head_variance()));
    p.layer_max_logit.push_back(layer.has_max_logit() ? static_cast<float>(layer.max_logit())
                                                      : std::numeric_limits<float>::quiet_NaN());
    p.head_counts.push_back(static_cast<uint32_t>(layer.head_mean_entropy_size()));
    for (double h : layer.head_mean_entropy()) {
      p.heads.push_back(static_cast<float>(h));
    }
  }
  if (p.heads.empty()) {
    p.head_counts = std::vector<uint32_t>();
  }
  for (const auto& [name, value] : s.scalars()) {
    p.scalars.emplace_back(name, value);
  }
  std::sort(p.scalars.begin(), p.scalars.end());
  return p;
}

StepSummary RunHistory::ToSummary(const Point& p) {
  StepSummary s;
  s.set_step(p.step);
  s.set_phase(p.phase);
  s.set_ranks_reported(p.ranks_reported);
  s.set_world_size(p.world_size);
  s.set_complete(p.complete);
  s.set_token_count(p.token_count);
  s.set_entropy_mean(p.entropy_mean);
  s.set_entropy_p10(p.entropy_p10);
  s.set_entropy_p50(p.entropy_p50);
  s.set_entropy_p90(p.entropy_p90);
  s.set_normalized_entropy_mean(p.normalized_entropy_mean);
  s.set_high_entropy_ratio(p.high_entropy_ratio);
  s.set_top1_prob_mean(p.top1_prob_mean);
  s.set_surprisal_mean(p.surprisal_mean);
  s.set_surprisal_count(p.surprisal_count);
  s.set_has_grad_norm(p.has_grad_norm);
  s.set_grad_norm(p.grad_norm);
  s.set_grad_norm_disagreements(p.grad_norm_disagreements);
  s.set_has_loss(p.has_loss);
  s.set_loss(p.loss);
  s.set_learning_rate(p.learning_rate);
  s.set_generated_entropy_mean(p.generated_entropy_mean);
  s.set_generated_token_count(p.generated_token_count);
  s.mutable_finalized_time()->set_seconds(p.finalized_nanos / 1000000000);
  s.mutable_finalized_time()->set_nanos(static_cast<int32_t>(p.finalized_nanos % 1000000000));
  size_t head = 0;
  for (size_t i = 0; i < p.layer_ids.size(); ++i) {
    LayerSummary* layer = s.add_layers();
    layer->set_layer(p.layer_ids[i]);
    layer->set_mean_entropy(p.layer_mean[i]);
    layer->set_head_variance(p.layer_variance[i]);
    if (!std::isnan(p.layer_max_logit[i])) {
      layer->set_max_logit(p.layer_max_logit[i]);
    }
    if (i < p.head_counts.size()) {
      for (uint32_t h = 0; h < p.head_counts[i]; ++h) {
        layer->add_head_mean_entropy(p.heads[head++]);
      }
    }
  }
  for (const auto& [name, value] : p.scalars) {
    (*s.mutable_scalars())[name] = value;
  }
  return s;
}

void RunHistory::Merge(Point* older, const Point& newer) {
  Point& a = *older;
  const Point& b = newer;
  const double wa = static_cast<double>(a.width);
  const double wb = static_cast<double>(b.width);
  // Token statistics are weighted by steps, not tokens, so that one huge step
  // does not hide the others in its bucket.
  const double ta = a.token_count > 0 ? wa : 0;
  const double tb = b.token_count > 0 ? wb : 0;
  a.entropy_mean = Mean(a.entropy_mean, ta, b.entropy_mean, tb);
  a.entropy_p10 = Mean(a.entropy_p10, ta, b.entropy_p10, tb);
  a.entropy_p50 = Mean(a.entropy_p50, ta, b.entropy_p50, tb);
  a.entropy_p90 = Mean(a.entropy_p90, ta, b.entropy_p90, tb);
  a.normalized_entropy_mean = Mean(a.normalized_entropy_mean, ta, b.normalized_entropy_mean, tb);
  a.high_entropy_ratio = Mean(a.high_entropy_ratio, ta, b.high_entropy_ratio, tb);
  a.top1_prob_mean = Mean(a.top1_prob_mean, ta, b.top1_prob_mean, tb);
  a.token_count += b.token_count;
  a.surprisal_mean = Mean(a.surprisal_mean, a.surprisal_count > 0 ? wa : 0, b.surprisal_mean,
                          b.surprisal_count > 0 ? wb : 0);
  a.surprisal_count += b.surprisal_count;
  a.grad_norm = Mean(a.grad_norm, a.has_grad_norm ? wa : 0, b.grad_norm, b.has_grad_norm ? wb : 0);
  a.has_grad_norm = a.has_grad_norm || b.has_grad_norm;
  a.grad_norm_disagreements += b.grad_norm_disagreements;
  a.loss = Mean(a.loss, a.has_loss ? wa : 0, b.loss, b.has_loss ? wb : 0);
  a.has_loss = a.has_loss || b.has_loss;
  a.learning_rate = Mean(a.learning_rate, wa, b.learning_rate, wb);
  a.generated_entropy_mean = Mean(a.generated_entropy_mean, a.generated_token_count > 0 ? wa : 0,
                                  b.generated_entropy_mean, b.generated_token_count > 0 ? wb : 0);
  a.generated_token_count += b.generated_token_count;
  for (const auto& [name, value] : b.scalars) {
    auto it = std::lower_bound(
        a.scalars.begin(), a.scalars.end(), name,
        [](const auto& entry, const std::string& key) { return entry.first < key; });
    if (it != a.scalars.end() && it->first == name) {
      it->second = Mean(it->second, wa, value, wb);
    } else {
      a.scalars.insert(it, {name, value});
    }
  }
  for (size_t j = 0; j < b.layer_ids.size(); ++j) {
    const auto it = std::find(a.layer_ids.begin(), a.layer_ids.end(), b.layer_ids[j]);
    if (it == a.layer_ids.end()) {
      a.layer_ids.push_back(b.layer_ids[j]);
      a.layer_mean.push_back(b.layer_mean[j]);
      a.layer_variance.push_back(b.layer_variance[j]);
      a.layer_max_logit.push_back(b.layer_max_logit[j]);
      continue;
    }
    const size_t i = static_cast<size_t>(it - a.layer_ids.begin());
    a.layer_mean[i] = static_cast<float>(Mean(a.layer_mean[i], wa, b.layer_mean[j], wb));
    a.layer_variance[i] =
        static_cast<float>(Mean(a.layer_variance[i], wa, b.layer_variance[j], wb));
    if (!std::isnan(b.layer_max_logit[j])) {
      a.layer_max_logit[i] = std::isnan(a.layer_max_logit[i])
                                 ? b.layer_max_logit[j]
                                 : std::max(a.layer_max_logit[i], b.layer_max_logit[j]);
    }
  }
  // Per-head entropies are not kept in buckets.
  a.head_counts = std::vector<uint32_t>();
  a.heads = std::vector<float>();
  a.complete = a.complete && b.complete;
  a.step = b.step;
  a.phase = b.phase;
  a.ranks_reported = b.ranks_reported;
  a.world_size = b.world_size;
  a.finalized_nanos = b.finalized_nanos;
  a.width += b.width;
}

int64_t RunHistory::PointBytes(const Point& p) {
  int64_t bytes = sizeof(Point);
  bytes += static_cast<int64_t>(
      p.layer_ids.capacity() * sizeof(uint32_t) + p.layer_mean.capacity() * sizeof(float) +
      p.layer_variance.capacity() * sizeof(float) + p.layer_max_logit.capacity() * sizeof(float) +
      p.head_counts.capacity() * sizeof(uint32_t) + p.heads.capacity() * sizeof(float) +
      p.scalars.capacity() * sizeof(p.scalars[0]));
  for (const auto& [name, value] : p.scalars) {
    if (name.capacity() > 15) {
      bytes += static_cast<int64_t>(name.capacity() + 1);
    }
  }
  return bytes;
}

RunHistory::RunHistory(const HistoryOptions& options) : options_(options) {}

std::shared_ptr<RunHistory::Run> RunHistory::Find(const std::string& run) const {
  absl::MutexLock lock(&mu_);
  auto it = runs_.find(run);
  return it == runs_.end() ? nullptr : it->second;
}

std::shared_ptr<RunHistory::Run> RunHistory::FindOrAdd(const std::string& run_id) {
  absl::MutexLock lock(&mu_);
  std::shared_ptr<Run>& slot = runs_[run_id];
  if (slot == nullptr) {
    slot = std::make_shared<Run>();
  }
  return slot;
}

// The console's view of one run as a sink: steps go straight into the run's
// history, expiry forgets it.
class RunHistory::HistoryRunSink final : public exporter::RunSink {
 public:
  HistoryRunSink(RunHistory* history, std::string run_id, std::shared_ptr<Run> run)
      : history_(history), run_id_(std::move(run_id)), run_(std::move(run)) {}

  void OnReportAccepted(absl::Time, entrowatch::v1::Phase, absl::Span<const float>) override {}

  void OnStepFinalized(const Step& step) override {
    history_->RecordInto(*run_, *step.summary, *step.verdict, *step.fired);
  }

  void OnVerdict(const Verdict&, const std::vector<Anomaly>&,
                 const std::vector<Anomaly>&) override {}

  void OnRunEnded(exporter::RunEnd why) override {
    if (why != exporter::RunEnd::kExpired) {
      return;
    }
    absl::MutexLock lock(&history_->mu_);
    auto it = history_->runs_.find(run_id_);
    if (it != history_->runs_.end() && it->second == run_) {
      history_->runs_.erase(it);
    }
  }

 private:
  RunHistory* const history_;
  const std::string run_id_;
  const std::shared_ptr<Run> run_;
};

std::unique_ptr<exporter::RunSink> RunHistory::Open(const std::string& run_id) {
  return std::make_unique<HistoryRunSink>(this, run_id, FindOrAdd(run_id));
}

void RunHistory::Record(const std::string& run_id, const StepSummary& step, const Verdict& verdict,
                        absl::Span<const Anomaly> fired) {
  RecordInto(*FindOrAdd(run_id), step, verdict, fired);
}

void RunHistory::RecordInto(Run& run, const StepSummary& step, const Verdict& verdict,
                            absl::Span<const Anomaly> fired) {
  absl::MutexLock lock(&run.mu);
  if (run.any && step.step() <= run.last_step) {
    return;
  }
  run.any = true;
  run.last_step = step.step();
  ++run.steps_recorded;

  run.recent.push_back(FromSummary(step));
  const size_t recent_capacity = static_cast<size_t>(std::max(options_.max_points / 4, 1));
  const size_t with_heads =
      static_cast<size_t>(std::clamp(options_.head_points, 0, static_cast<int>(recent_capacity)));
  if (run.recent.size() > with_heads) {
    Point& aged = run.recent[run.recent.size() - 1 - with_heads];
    // Move-assigning an empty vector frees the memory; clear() would not.
    aged.head_counts = std::vector<uint32_t>();
    aged.heads = std::vector<float>();
  }
  if (run.recent.size() > recent_capacity) {
    Age(run);
  }

  if (run.states.empty() || run.states.back().state() != verdict.state()) {
    Verdict span;
    span.set_state(verdict.state());
    uint64_t since = verdict.since_step() > 0 ? verdict.since_step() : step.step();
    if (!run.states.empty()) {
      since = std::max(since, run.states.back().since_step() + 1);
      since = std::min(since, step.step());
    }
    span.set_since_step(since);
    span.set_reason(verdict.reason());
    *span.mutable_evidence() = verdict.evidence();
    span.set_recommended_action(verdict.recommended_action());
    run.states.push_back(std::move(span));
    while (static_cast<int>(run.states.size()) > options_.max_state_spans) {
      run.states.pop_front();
    }
  }
  run.states.back().set_step(step.step());

  for (const Anomaly& anomaly : fired) {
    const bool seen =
        std::any_of(run.anomalies.begin(), run.anomalies.end(), [&anomaly](const Anomaly& a) {
          return a.pattern() == anomaly.pattern() && a.subject() == anomaly.subject() &&
                 a.since_step() == anomaly.since_step();
        });
    if (!seen) {
      run.anomalies.push_back(anomaly);
    }
  }
  while (static_cast<int>(run.anomalies.size()) > options_.max_anomalies) {
    run.anomalies.pop_front();
  }
}

void RunHistory::Age(Run& run) const {
  Point oldest = std::move(run.recent.front());
  run.recent.pop_front();
  if (!run.buckets.empty() && run.buckets.back().width < run.bucket_width) {
    Merge(&run.buckets.back(), oldest);
  } else {
    run.buckets.push_back(std::move(oldest));
  }
  const size_t capacity = static_cast<size_t>(std::max(options_.max_points * 3 / 4, 2));
  if (run.buckets.size() <= capacity) {
    return;
  }
  std::deque<Point> merged;
  for (size_t i = 0; i < run.buckets.size(); i += 2) {
    Point bucket = std::move(run.buckets[i]);
    if (i + 1 < run.buckets.size()) {
      Merge(&bucket, run.buckets[i + 1]);
    }
    merged.push_back(std::move(bucket));
  }
  run.buckets = std::move(merged);
  run.bucket_width *= 2;
}

void RunHistory::Forget(const std::string& run) {
  absl::MutexLock lock(&mu_);
  runs_.erase(run);
}

absl::StatusOr<std::vector<StepSummary>> RunHistory::Points(const std::string& run_id,
                                                            int limit) const {
  std::shared_ptr<Run> run = Find(run_id);
  if (run == nullptr) {
    return NoHistory(run_id);
  }
  absl::MutexLock lock(&run->mu);
  if (!run->any) {
    return NoHistory(run_id);
  }
  const size_t total = run->buckets.size() + run->recent.size();
  size_t first = 0;
  if (limit > 0 && total > static_cast<size_t>(limit)) {
    first = total - static_cast<size_t>(limit);
  }
  std::vector<StepSummary> out;
  out.reserve(total - first);
  for (size_t i = first; i < total; ++i) {
    out.push_back(ToSummary(i < run->buckets.size() ? run->buckets[i]
                                                    : run->recent[i - run->buckets.size()]));
  }
  return out;
}

absl::StatusOr<v1::RunTimeline> RunHistory::Timeline(const std::string& run_id) const {
  std::shared_ptr<Run> run = Find(run_id);
  if (run == nullptr) {
    return NoHistory(run_id);
  }
  absl::MutexLock lock(&run->mu);
  if (!run->any) {
    return NoHistory(run_id);
  }
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
  for (const std::deque<Point>* points : {&run.buckets, &run.recent}) {
    for (const Point& point : *points) {
      bytes += PointBytes(point);
    }
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
