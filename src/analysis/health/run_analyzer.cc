#include "analysis/health/run_analyzer.h"

#include <fnmatch.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace entrowatch::analysis {
namespace {

namespace v1 = ::entrowatch::v1;

constexpr int kTrain = 0;
constexpr int kEval = 1;
constexpr int kRollout = 2;
// Bounds the rolling attention series a run keeps, whatever layer numbers a
// client sends.
constexpr size_t kMaxAttentionSeries = 1 << 14;
// Subjects named in one reason; the rest are counted.
constexpr size_t kMaxNamedSubjects = 4;

int PhaseIndex(v1::Phase phase) {
  switch (phase) {
    case v1::EVAL:
      return kEval;
    case v1::ROLLOUT:
      return kRollout;
    default:
      return kTrain;
  }
}

const char* PhaseName(int index) {
  static constexpr const char* kNames[] = {"TRAIN", "EVAL", "ROLLOUT"};
  return kNames[index];
}

std::string Num(double v) { return absl::StrFormat("%.4g", v); }

v1::Evidence MakeEvidence(absl::string_view signal, double value, double threshold,
                          absl::string_view comparison) {
  v1::Evidence e;
  e.set_signal(std::string(signal));
  e.set_value(value);
  e.set_threshold(threshold);
  e.set_comparison(std::string(comparison));
  return e;
}

v1::Severity ToProto(config::AnomalySeverity s) {
  switch (s) {
    case config::AnomalySeverity::kInfo:
      return v1::INFO;
    case config::AnomalySeverity::kWarning:
      return v1::WARNING;
    case config::AnomalySeverity::kCritical:
      return v1::CRITICAL;
  }
  return v1::WARNING;
}

const char* StateAction(v1::HealthState state) {
  switch (state) {
    case v1::COMFORT_ZONE:
      return "Likely memorization or overfitting: check the eval loss, add data or "
             "regularization (dropout, weight decay), or stop early.";
    case v1::PANIC_ZONE:
      return "Data shock, a loss spike is likely: skip or inspect the current batches, tighten "
             "gradient clipping, lower the learning rate.";
    case v1::STAGNATION:
      return "The model is uncertain but barely updating: raise the learning rate, check for "
             "vanishing gradients in deep layers.";
    case v1::PATHOLOGICAL_CONFIDENCE:
      return "Confident predictions under large updates (mode collapse, forgetting): lower the "
             "learning rate, add an entropy bonus, check the data mix.";
    default:
      return "None.";
  }
}

const char* PatternAction(v1::Pattern pattern) {
  switch (pattern) {
    case v1::ENTROPY_COLLAPSE:
      return "Add an entropy bonus or raise the sampling temperature; check for memorization "
             "of a small dataset or reward hacking.";
    case v1::ENTROPIC_OVERLOAD:
      return "Check the data for noise or out-of-distribution input, filter high-perplexity "
             "samples, lower the learning rate.";
    case v1::ATTENTION_LOCKING:
      return "Inspect the attention inputs (KV cache, positional encoding at this length); "
             "consider a sliding window or rescaled RoPE.";
    case v1::ENTROPY_DRIFT:
      return "Compare with the data and learning-rate schedules; inspect recent data for a "
             "distribution shift.";
    case v1::HEAD_REDUNDANCY:
      return "Heads of this layer behave alike: candidates for pruning; if it appeared mid-run, "
             "check for collapse.";
    case v1::FLAT_LAYER_PROFILE:
      return "Layers add little to one another (curse of depth): consider Pre-LN or RMSNorm, "
             "or fewer layers.";
    case v1::GENERATED_ENTROPY_SPIKE:
      return "The policy is guessing on these rollouts (hallucination risk): inspect them and "
             "their prompts and rewards.";
    default:
      return "None.";
  }
}

// Normalized entropy of a step when the vocabulary was known (the aggregator
// leaves it 0 otherwise, which cannot be told from a true zero unless the
// raw entropy is zero too).
bool NormalizedEntropy(const v1::StepSummary& step, double* out) {
  if (step.normalized_entropy_mean() > 0 || step.entropy_mean() <= 0) {
    *out = step.normalized_entropy_mean();
    return true;
  }
  return false;
}

bool UsableGradNorm(const v1::StepSummary& step) {
  return step.has_grad_norm() && step.grad_norm() > 0 && std::isfinite(step.grad_norm());
}

// Median of a non-empty sample (mean of the middle two for an even size).
double Median(std::vector<double> values) {
  const size_t mid = values.size() / 2;
  std::nth_element(values.begin(), values.begin() + mid, values.end());
  if (values.size() % 2 == 1) {
    return values[mid];
  }
  const double upper = values[mid];
  return (upper + *std::max_element(values.begin(), values.begin() + mid)) / 2;
}

// Standard error of the median of n values in units of sigma, at most 1.
double MedianError(size_t n) {
  return std::min(1.0, std::sqrt(M_PI / (2.0 * static_cast<double>(n))));
}

std::string NameSubjects(const std::vector<std::string>& subjects) {
  if (subjects.size() <= kMaxNamedSubjects) {
    return absl::StrJoin(subjects, ", ");
  }
  std::vector<std::string> named(subjects.begin(), subjects.begin() + kMaxNamedSubjects);
  return absl::StrCat(absl::StrJoin(named, ", "), " and ", subjects.size() - kMaxNamedSubjects,
                      " more");
}

}  // namespace

RunThresholds ResolveThresholds(const config::AnalysisConfig& cfg, absl::string_view run_id) {
  const std::string id(run_id);
  for (const auto& o : cfg.overrides) {
    if (fnmatch(o.run_glob.c_str(), id.c_str(), 0) == 0) {
      return RunThresholds{o.run_glob, o.thresholds};
    }
  }
  return RunThresholds{"", cfg.base};
}

RunAnalyzer::RunAnalyzer(RunThresholds thresholds) : thresholds_(std::move(thresholds)) {
  verdict_.set_state(v1::WARMUP);
  verdict_.set_reason("warming up: no step observed yet");
  verdict_.set_recommended_action(StateAction(v1::WARMUP));
}

void RunAnalyzer::UpdateThresholds(RunThresholds thresholds) {
  thresholds_ = std::move(thresholds);
}

BaselineParams RunAnalyzer::Params() const {
  const auto& t = thresholds_.values;
  return BaselineParams{t.half_life_steps, t.warmup_steps, t.winsorize_z, t.min_relative_sigma};
}

void RunAnalyzer::Observe(const v1::StepSummary& step) {
  newly_fired_.clear();
  ++steps_observed_;
  const int index = PhaseIndex(step.phase());
  PhaseState& phase = phases_[index];
  const BaselineParams params = Params();
  const auto& t = thresholds_.values;
  const bool has_tokens = step.token_count() > 0 && std::isfinite(step.entropy_mean());
  const bool tokens_warm = has_tokens && phase.entropy.warm(params);
  const bool attention_warm = steps_observed_ > t.warmup_steps;

  verdict_.set_step(step.step());
  if (index != kEval && has_tokens) {
    PhaseState::Recent recent;
    recent.entropy = step.entropy_mean();
    double normalized = 0;
    if (NormalizedEntropy(step, &normalized)) {
      recent.normalized = normalized;
    }
    recent.has_grad = UsableGradNorm(step);
    recent.log_grad = recent.has_grad ? std::log(step.grad_norm()) : 0;
    phase.recent.push_back(recent);
    while (phase.recent.size() > static_cast<size_t>(t.states.smoothing_steps)) {
      phase.recent.pop_front();
    }
    if (!tokens_warm) {
      if (verdict_.state() == v1::WARMUP) {
        verdict_.set_reason(absl::StrCat("warming up: ", phase.entropy.count(), " of ",
                                         t.warmup_steps, " ", PhaseName(index),
                                         " steps in the baseline"));
      }
    } else {
      AdvanceState(step, Classify(step, phase));
    }
  }

  const std::string token_subject = absl::StrCat("token ", PhaseName(index));
  Apply(v1::ENTROPY_COLLAPSE, token_subject, t.entropy_collapse.common, step.step(),
        tokens_warm ? TokenCollapse(step, phase) : Finding{});
  Apply(v1::ENTROPY_COLLAPSE, "attention", t.entropy_collapse.common, step.step(),
        attention_warm ? AttentionCollapse(step) : Finding{});
  Apply(v1::ENTROPIC_OVERLOAD, token_subject, t.entropic_overload.common, step.step(),
        tokens_warm ? Overload(step, phase) : Finding{});
  Apply(v1::ENTROPY_DRIFT, token_subject, t.entropy_drift.common, step.step(),
        tokens_warm ? Drift(step, phase) : Finding{});
  // Locking keeps its rolling windows filling during warm-up.
  Finding locking = Locking(step);
  Apply(v1::ATTENTION_LOCKING, "attention", t.attention_locking.common, step.step(),
        attention_warm ? std::move(locking) : Finding{});
  Apply(v1::HEAD_REDUNDANCY, "attention", t.head_redundancy.common, step.step(),
        attention_warm ? HeadRedundancy(step) : Finding{});
  Apply(v1::FLAT_LAYER_PROFILE, "attention", t.flat_layer_profile.common, step.step(),
        attention_warm ? FlatProfile(step) : Finding{});
  Apply(v1::GENERATED_ENTROPY_SPIKE, "generated ROLLOUT", t.generated_entropy_spike.common,
        step.step(), GeneratedSpike(step, phase));

  if (has_tokens) {
    phase.entropy.Update(step.entropy_mean(), params);
    phase.entropy_baseline_history.push_back(phase.entropy.mean());
    while (phase.entropy_baseline_history.size() >
           static_cast<size_t>(t.entropy_collapse.window_steps)) {
      phase.entropy_baseline_history.pop_front();
    }
  }
  if (UsableGradNorm(step)) {
    phase.log_grad_norm.Update(std::log(step.grad_norm()), params);
  }
  if (index == kRollout &&
      step.generated_token_count() >= static_cast<uint64_t>(t.generated_entropy_spike.min_tokens) &&
      std::isfinite(step.generated_entropy_mean())) {
    phase.generated.Update(step.generated_entropy_mean(), params);
  }
}

RunAnalyzer::Candidate RunAnalyzer::Classify(const v1::StepSummary& step,
                                             const PhaseState& phase) const {
  enum class Level { kLow, kMid, kHigh };
  const auto& s = thresholds_.values.states;
  const BaselineParams params = Params();
  Candidate c;

  // Medians over the recent steps: a single-step spike never moves a level.
  // z-scores divide by the median's standard error, sigma * sqrt(pi / 2n)
  // (the large-sample value, conservative for small n).
  std::vector<double> entropies;
  std::vector<double> normalizeds;
  std::vector<double> log_grads;
  bool normalized_known = true;
  for (const auto& r : phase.recent) {
    entropies.push_back(r.entropy);
    normalizeds.push_back(r.normalized);
    normalized_known = normalized_known && r.normalized >= 0;
    if (r.has_grad) {
      log_grads.push_back(r.log_grad);
    }
  }
  const double entropy = Median(entropies);
  const double normalized = Median(normalizeds);
  const double entropy_z = (entropy - phase.entropy.mean()) /
                           (phase.entropy.sigma(params) * MedianError(entropies.size()));

  const bool has_grad = UsableGradNorm(step);
  const bool grad_judged = has_grad && !log_grads.empty() && phase.log_grad_norm.warm(params);
  double grad_z = 0;
  double grad_norm = 0;
  if (grad_judged) {
    const double log_grad = Median(log_grads);
    grad_norm = std::exp(log_grad);
    grad_z = (log_grad - phase.log_grad_norm.mean()) /
             (phase.log_grad_norm.sigma(params) * MedianError(log_grads.size()));
  }

  // Joint evidence: when the two z-scores together are far out (their
  // Euclidean norm at least joint_z), each needs only confirm_z to take a
  // side. Without this, an exploding grad norm whose entropy wavers around
  // its baseline would never be classified.
  const bool joint = grad_judged && std::hypot(entropy_z, grad_z) >= s.joint_z;
  const double entropy_bar = joint ? std::min(s.confirm_z, s.entropy_z) : s.entropy_z;
  const double grad_bar = joint ? std::min(s.confirm_z, s.grad_norm_z) : s.grad_norm_z;

  Level entropy_level = Level::kMid;
  bool entropy_absolute = false;
  if (normalized_known && normalized <= s.low_normalized_entropy) {
    entropy_level = Level::kLow;
    entropy_absolute = true;
    c.evidence.push_back(
        MakeEvidence("normalized_entropy_mean", normalized, s.low_normalized_entropy, "<="));
  } else if (normalized_known && normalized >= s.high_normalized_entropy) {
    entropy_level = Level::kHigh;
    entropy_absolute = true;
    c.evidence.push_back(
        MakeEvidence("normalized_entropy_mean", normalized, s.high_normalized_entropy, ">="));
  } else if (entropy_z <= -entropy_bar) {
    entropy_level = Level::kLow;
    c.evidence.push_back(MakeEvidence("token_entropy_mean_z", entropy_z, -entropy_bar, "z<="));
  } else if (entropy_z >= entropy_bar) {
    entropy_level = Level::kHigh;
    c.evidence.push_back(MakeEvidence("token_entropy_mean_z", entropy_z, entropy_bar, "z>="));
  }
  if (entropy_level != Level::kMid) {
    c.evidence.push_back(
        MakeEvidence("token_entropy_mean_nats", entropy, phase.entropy.mean(), "baseline"));
  }

  Level grad = Level::kMid;
  if (grad_judged) {
    if (grad_z <= -grad_bar) {
      grad = Level::kLow;
      c.evidence.push_back(MakeEvidence("log_grad_norm_z", grad_z, -grad_bar, "z<="));
    } else if (grad_z >= grad_bar) {
      grad = Level::kHigh;
      c.evidence.push_back(MakeEvidence("log_grad_norm_z", grad_z, grad_bar, "z>="));
    }
    if (grad != Level::kMid) {
      c.evidence.push_back(
          MakeEvidence("grad_norm", grad_norm, std::exp(phase.log_grad_norm.mean()), "baseline"));
    }
  }

  const std::string entropy_text =
      entropy_absolute ? absl::StrCat("normalized token entropy ", Num(normalized),
                                      entropy_level == Level::kLow ? " <= " : " >= ",
                                      Num(entropy_level == Level::kLow ? s.low_normalized_entropy
                                                                       : s.high_normalized_entropy))
                       : absl::StrCat("token entropy ", Num(entropy), " nats (z ", Num(entropy_z),
                                      " vs baseline ", Num(phase.entropy.mean()), ")");
  const std::string grad_text =
      has_grad ? absl::StrCat("grad norm ", Num(grad_norm), " (log z ", Num(grad_z), ")")
               : std::string("no grad norm");

  // An absolute entropy bound is decisive on its own: near-zero entropy with
  // ordinary updates is the comfort zone, near-uniform entropy with ordinary
  // updates is stagnation. A high grad norm still turns them into the
  // pathological and panic states.
  if (entropy_level == Level::kLow && grad == Level::kHigh) {
    c.state = v1::PATHOLOGICAL_CONFIDENCE;
    c.reason = absl::StrCat("low entropy with high grad norm: ", entropy_text, ", ", grad_text);
  } else if (entropy_level == Level::kHigh && grad == Level::kHigh) {
    c.state = v1::PANIC_ZONE;
    c.reason = absl::StrCat("high entropy with high grad norm: ", entropy_text, ", ", grad_text);
  } else if (entropy_level == Level::kLow && (grad == Level::kLow || entropy_absolute)) {
    c.state = v1::COMFORT_ZONE;
    c.reason = absl::StrCat("low entropy with ", grad == Level::kLow ? "low" : "ordinary",
                            " grad norm: ", entropy_text, ", ", grad_text);
  } else if (entropy_level == Level::kHigh && (grad == Level::kLow || entropy_absolute)) {
    c.state = v1::STAGNATION;
    c.reason = absl::StrCat("high entropy with ", grad == Level::kLow ? "low" : "ordinary",
                            " grad norm: ", entropy_text, ", ", grad_text);
  } else {
    c.state = v1::NORMAL;
    c.evidence.clear();
    c.reason = absl::StrCat("entropy and grad norm within their baselines: ", entropy_text, ", ",
                            grad_text);
  }
  return c;
}

void RunAnalyzer::AdvanceState(const v1::StepSummary& step, Candidate candidate) {
  const auto& s = thresholds_.values.states;
  auto enter = [&](v1::HealthState state, uint64_t since) {
    verdict_.set_state(state);
    verdict_.set_since_step(since);
    away_length_ = 0;
  };
  auto describe = [&](const Candidate& c) {
    verdict_.set_reason(c.reason);
    *verdict_.mutable_evidence() = {c.evidence.begin(), c.evidence.end()};
    verdict_.set_recommended_action(StateAction(verdict_.state()));
  };

  if (verdict_.state() == v1::WARMUP) {
    enter(v1::NORMAL, step.step());
  }
  if (candidate.state == same_state_) {
    ++same_length_;
  } else {
    same_state_ = candidate.state;
    same_length_ = 1;
    same_start_ = step.step();
  }
  if (candidate.state == v1::NORMAL) {
    abnormal_run_.clear();
  } else {
    if (abnormal_run_.empty()) {
      abnormal_start_ = step.step();
    }
    abnormal_run_.push_back(candidate);
    while (abnormal_run_.size() > static_cast<size_t>(s.enter_steps)) {
      abnormal_run_.pop_front();
    }
  }

  const v1::HealthState current = verdict_.state();
  if (candidate.state == current) {
    away_length_ = 0;
    describe(candidate);
    return;
  }
  if (current == v1::NORMAL) {
    if (abnormal_run_.size() >= static_cast<size_t>(s.enter_steps)) {
      // Abnormal steps whose exact state wavers (entropy on either side of
      // its baseline under a grad-norm explosion) still enter: the most
      // frequent state of the run, the newest on a tie.
      const auto count = [&](v1::HealthState st) {
        return std::count_if(abnormal_run_.begin(), abnormal_run_.end(),
                             [st](const Candidate& c) { return c.state == st; });
      };
      const Candidate* chosen = &abnormal_run_.back();
      for (auto it = abnormal_run_.rbegin(); it != abnormal_run_.rend(); ++it) {
        if (count(it->state) > count(chosen->state)) {
          chosen = &*it;
        }
      }
      enter(chosen->state, abnormal_start_);
      describe(*chosen);
      return;
    }
    describe(
        Candidate{v1::NORMAL,
                  absl::StrCat("within baselines (", abnormal_run_.size(), " of ", s.enter_steps,
                               " abnormal steps needed to change state): ", candidate.reason),
                  {}});
    return;
  }
  if (candidate.state != v1::NORMAL && same_length_ >= s.enter_steps) {
    enter(candidate.state, same_start_);
    describe(candidate);
    return;
  }
  ++away_length_;
  if (away_length_ >= s.exit_steps) {
    enter(v1::NORMAL, step.step());
    describe(Candidate{v1::NORMAL,
                       absl::StrCat("recovered: ", s.exit_steps, " steps without ",
                                    v1::HealthState_Name(current), "; ", candidate.reason),
                       {}});
  }
}

RunAnalyzer::Finding RunAnalyzer::TokenCollapse(const v1::StepSummary& step,
                                                const PhaseState& phase) const {
  const auto& c = thresholds_.values.entropy_collapse;
  Finding f;
  f.outcome = Outcome::kFalse;
  double normalized = 0;
  if (NormalizedEntropy(step, &normalized) && normalized <= c.normalized_floor) {
    f.outcome = Outcome::kTrue;
    f.reason = absl::StrCat("normalized token entropy ", Num(normalized), " <= floor ",
                            Num(c.normalized_floor));
    f.evidence.push_back(
        MakeEvidence("normalized_entropy_mean", normalized, c.normalized_floor, "<="));
    return f;
  }
  const auto& history = phase.entropy_baseline_history;
  if (history.size() >= static_cast<size_t>(c.window_steps) && history.front() > 0) {
    const double reference = history.front();
    const double drop = (reference - step.entropy_mean()) / reference;
    if (drop >= c.relative_drop) {
      f.outcome = Outcome::kTrue;
      f.reason = absl::StrCat("token entropy ", Num(step.entropy_mean()), " nats is ",
                              Num(100 * drop), "% below the baseline of ", history.size(),
                              " steps ago (", Num(reference), " nats)");
      f.evidence.push_back(
          MakeEvidence("token_entropy_relative_drop", drop, c.relative_drop, ">="));
      f.evidence.push_back(
          MakeEvidence("token_entropy_mean_nats", step.entropy_mean(), reference, "baseline"));
    }
  }
  return f;
}

RunAnalyzer::Finding RunAnalyzer::AttentionCollapse(const v1::StepSummary& step) const {
  const auto& c = thresholds_.values.entropy_collapse;
  Finding f;
  std::vector<std::string> collapsed_layers;
  double largest_fraction = 0;
  for (const auto& layer : step.layers()) {
    if (layer.head_mean_entropy_size() == 0) {
      continue;
    }
    f.outcome = Outcome::kFalse;
    int collapsed = 0;
    for (double h : layer.head_mean_entropy()) {
      collapsed += h <= c.attention_floor_nats ? 1 : 0;
    }
    const double fraction = static_cast<double>(collapsed) / layer.head_mean_entropy_size();
    if (fraction >= c.attention_head_fraction) {
      largest_fraction = std::max(largest_fraction, fraction);
      collapsed_layers.push_back(absl::StrCat("layer ", layer.layer(), " (", collapsed, " of ",
                                              layer.head_mean_entropy_size(), " heads)"));
    }
  }
  if (!collapsed_layers.empty()) {
    f.outcome = Outcome::kTrue;
    f.reason =
        absl::StrCat("attention heads near one-hot (at or below ", Num(c.attention_floor_nats),
                     " nats): ", NameSubjects(collapsed_layers));
    f.evidence.push_back(MakeEvidence("attention_heads_near_one_hot_fraction", largest_fraction,
                                      c.attention_head_fraction, ">="));
  }
  return f;
}

RunAnalyzer::Finding RunAnalyzer::Overload(const v1::StepSummary& step,
                                           const PhaseState& phase) const {
  const auto& c = thresholds_.values.entropic_overload;
  Finding f;
  f.outcome = Outcome::kFalse;
  double normalized = 0;
  if (NormalizedEntropy(step, &normalized) && step.entropy_mean() > 0) {
    const double p10_normalized = step.entropy_p10() * normalized / step.entropy_mean();
    if (normalized >= c.normalized_ceiling && p10_normalized >= c.p10_normalized_ceiling) {
      f.outcome = Outcome::kTrue;
      f.reason = absl::StrCat("token entropy uniformly high: normalized mean ", Num(normalized),
                              " >= ", Num(c.normalized_ceiling), ", normalized p10 ",
                              Num(p10_normalized), " >= ", Num(c.p10_normalized_ceiling));
      f.evidence.push_back(
          MakeEvidence("normalized_entropy_mean", normalized, c.normalized_ceiling, ">="));
      f.evidence.push_back(
          MakeEvidence("normalized_entropy_p10", p10_normalized, c.p10_normalized_ceiling, ">="));
      return f;
    }
  }
  const double z = phase.entropy.ZScore(step.entropy_mean(), Params());
  if (z >= c.z) {
    f.outcome = Outcome::kTrue;
    f.reason = absl::StrCat("token entropy ", Num(step.entropy_mean()), " nats is ", Num(z),
                            " sigmas above its baseline ", Num(phase.entropy.mean()));
    f.evidence.push_back(MakeEvidence("token_entropy_mean_z", z, c.z, "z>="));
  }
  return f;
}

RunAnalyzer::Finding RunAnalyzer::Drift(const v1::StepSummary& step, PhaseState& phase) {
  const auto& c = thresholds_.values.entropy_drift;
  const int index = PhaseIndex(step.phase());
  const config::DriftDirection direction =
      index == kEval ? c.eval : (index == kRollout ? c.rollout : c.train);
  Finding f;
  f.outcome = Outcome::kFalse;
  if (direction == config::DriftDirection::kNone) {
    return f;
  }
  // Page-Hinkley on the step mean, in units of the baseline's sigma, against
  // the plain mean since the last alarm (which, unlike the moving baseline,
  // does not follow a slow trend).
  const double x = step.entropy_mean();
  ++phase.drift_count;
  phase.drift_mean += (x - phase.drift_mean) / static_cast<double>(phase.drift_count);
  const double u =
      std::clamp((x - phase.drift_mean) / phase.entropy.sigma(Params()), -c.clip_z, c.clip_z);
  phase.drift_up += u - c.delta;
  phase.drift_up_min = std::min(phase.drift_up_min, phase.drift_up);
  phase.drift_down += -u - c.delta;
  phase.drift_down_min = std::min(phase.drift_down_min, phase.drift_down);
  const double up = phase.drift_up - phase.drift_up_min;
  const double down = phase.drift_down - phase.drift_down_min;
  const bool want_up =
      direction == config::DriftDirection::kUp || direction == config::DriftDirection::kBoth;
  const bool want_down =
      direction == config::DriftDirection::kDown || direction == config::DriftDirection::kBoth;
  const bool rising = want_up && up >= c.lambda;
  const bool falling = !rising && want_down && down >= c.lambda;
  if (!rising && !falling) {
    return f;
  }
  f.outcome = Outcome::kTrue;
  const double statistic = rising ? up : down;
  f.reason = absl::StrCat(rising ? "rising" : "falling", " trend of ", PhaseName(index),
                          " token entropy: Page-Hinkley statistic ", Num(statistic),
                          " >= ", Num(c.lambda), " sigmas (mean since the last alarm ",
                          Num(phase.drift_mean), " nats, now ", Num(x), ")");
  f.evidence.push_back(
      MakeEvidence(rising ? "page_hinkley_up" : "page_hinkley_down", statistic, c.lambda, ">="));
  f.evidence.push_back(
      MakeEvidence("token_entropy_mean_nats", x, phase.drift_mean, "mean since last alarm"));
  phase.drift_count = 0;
  phase.drift_mean = 0;
  phase.drift_up = phase.drift_up_min = 0;
  phase.drift_down = phase.drift_down_min = 0;
  return f;
}

RunAnalyzer::Finding RunAnalyzer::Locking(const v1::StepSummary& step) {
  const auto& c = thresholds_.values.attention_locking;
  const size_t window = static_cast<size_t>(c.window_steps);
  auto push = [&](uint32_t layer, int head, double value) {
    const auto key = std::make_pair(layer, head);
    auto it = attention_history_.find(key);
    if (it == attention_history_.end()) {
      if (attention_history_.size() >= kMaxAttentionSeries) {
        return;
      }
      it = attention_history_.emplace(key, std::deque<double>()).first;
    }
    it->second.push_back(value);
    while (it->second.size() > window) {
      it->second.pop_front();
    }
  };
  for (const auto& layer : step.layers()) {
    push(layer.layer(), -1, layer.mean_entropy());
    for (int h = 0; h < layer.head_mean_entropy_size(); ++h) {
      push(layer.layer(), h, layer.head_mean_entropy(h));
    }
  }
  Finding f;
  if (step.layers_size() == 0) {
    return f;
  }
  f.outcome = Outcome::kFalse;
  std::vector<std::string> frozen;
  double smallest_std = 0;
  for (const auto& [key, values] : attention_history_) {
    if (values.size() < window) {
      continue;
    }
    double mean = 0;
    for (double v : values) {
      mean += v;
    }
    mean /= static_cast<double>(values.size());
    double variance = 0;
    for (double v : values) {
      variance += (v - mean) * (v - mean);
    }
    const double std_dev = std::sqrt(variance / static_cast<double>(values.size()));
    if (std_dev < c.epsilon_nats) {
      if (frozen.empty() || std_dev < smallest_std) {
        smallest_std = std_dev;
      }
      frozen.push_back(key.second < 0
                           ? absl::StrCat("layer ", key.first, " mean at ", Num(mean), " nats")
                           : absl::StrCat("layer ", key.first, " head ", key.second, " at ",
                                          Num(mean), " nats"));
    }
  }
  if (!frozen.empty()) {
    f.outcome = Outcome::kTrue;
    f.reason = absl::StrCat("attention entropy frozen over ", window, " steps (rolling std < ",
                            Num(c.epsilon_nats), " nats): ", NameSubjects(frozen));
    f.evidence.push_back(
        MakeEvidence("attention_entropy_rolling_std", smallest_std, c.epsilon_nats, "<"));
  }
  return f;
}

RunAnalyzer::Finding RunAnalyzer::HeadRedundancy(const v1::StepSummary& step) const {
  const auto& c = thresholds_.values.head_redundancy;
  Finding f;
  std::vector<std::string> redundant;
  double largest = 0;
  for (const auto& layer : step.layers()) {
    if (layer.head_mean_entropy_size() < 2 || layer.mean_entropy() <= 0) {
      continue;
    }
    f.outcome = Outcome::kFalse;
    const double relative_std =
        std::sqrt(std::max(0.0, layer.head_variance())) / layer.mean_entropy();
    if (relative_std <= c.max_relative_std) {
      largest = std::max(largest, relative_std);
      redundant.push_back(absl::StrCat("layer ", layer.layer()));
    }
  }
  if (!redundant.empty()) {
    f.outcome = Outcome::kTrue;
    f.reason = absl::StrCat("heads behave alike (std of head entropies / mean <= ",
                            Num(c.max_relative_std), "): ", NameSubjects(redundant));
    f.evidence.push_back(
        MakeEvidence("head_entropy_relative_std", largest, c.max_relative_std, "<="));
  }
  return f;
}

RunAnalyzer::Finding RunAnalyzer::FlatProfile(const v1::StepSummary& step) const {
  const auto& c = thresholds_.values.flat_layer_profile;
  Finding f;
  if (step.layers_size() < c.min_layers) {
    return f;
  }
  double lo = step.layers(0).mean_entropy();
  double hi = lo;
  double sum = 0;
  for (const auto& layer : step.layers()) {
    lo = std::min(lo, layer.mean_entropy());
    hi = std::max(hi, layer.mean_entropy());
    sum += layer.mean_entropy();
  }
  const double mean = sum / step.layers_size();
  if (mean <= 0) {
    return f;
  }
  const double spread = (hi - lo) / mean;
  f.outcome = spread <= c.max_relative_spread ? Outcome::kTrue : Outcome::kFalse;
  if (f.outcome == Outcome::kTrue) {
    f.reason =
        absl::StrCat("layer entropy profile is flat: (max - min) / mean = ", Num(spread),
                     " <= ", Num(c.max_relative_spread), " over ", step.layers_size(), " layers");
    f.evidence.push_back(
        MakeEvidence("layer_entropy_relative_spread", spread, c.max_relative_spread, "<="));
  }
  return f;
}

RunAnalyzer::Finding RunAnalyzer::GeneratedSpike(const v1::StepSummary& step,
                                                 const PhaseState& phase) const {
  const auto& c = thresholds_.values.generated_entropy_spike;
  const BaselineParams params = Params();
  Finding f;
  if (PhaseIndex(step.phase()) != kRollout ||
      step.generated_token_count() < static_cast<uint64_t>(c.min_tokens) ||
      !std::isfinite(step.generated_entropy_mean()) || !phase.generated.warm(params)) {
    return f;
  }
  const double x = step.generated_entropy_mean();
  const double z = phase.generated.ZScore(x, params);
  const double increase = x - phase.generated.mean();
  f.outcome = (z >= c.z && increase >= c.min_increase_nats) ? Outcome::kTrue : Outcome::kFalse;
  if (f.outcome == Outcome::kTrue) {
    f.reason =
        absl::StrCat("generated-token entropy ", Num(x), " nats is ", Num(z), " sigmas (",
                     Num(increase), " nats) above its baseline ", Num(phase.generated.mean()));
    f.evidence.push_back(MakeEvidence("generated_entropy_mean_z", z, c.z, "z>="));
    f.evidence.push_back(
        MakeEvidence("generated_entropy_increase_nats", increase, c.min_increase_nats, ">="));
  }
  return f;
}

void RunAnalyzer::Apply(v1::Pattern pattern, const std::string& subject,
                        const config::DetectorCommon& common, uint64_t step, Finding finding) {
  const auto key = std::make_pair(pattern, subject);
  if (!common.enabled) {
    tracks_.erase(key);
    return;
  }
  if (finding.outcome == Outcome::kSkip) {
    return;
  }
  Track& track = tracks_[key];
  if (finding.outcome == Outcome::kFalse) {
    track.true_streak = 0;
    if (track.active && ++track.false_streak >= common.clear_steps) {
      track.active = false;
      track.false_streak = 0;
    }
    return;
  }
  track.false_streak = 0;
  if (track.true_streak++ == 0) {
    track.streak_start = step;
  }
  const bool fires = !track.active && track.true_streak >= common.for_steps;
  if (!track.active && !fires) {
    return;
  }
  v1::Anomaly& a = track.anomaly;
  if (fires) {
    track.active = true;
    a.Clear();
    a.set_pattern(pattern);
    a.set_subject(subject);
    a.set_since_step(track.streak_start);
    a.set_recommended_action(PatternAction(pattern));
  }
  a.set_severity(ToProto(common.severity));
  a.set_reason(std::move(finding.reason));
  *a.mutable_evidence() = {finding.evidence.begin(), finding.evidence.end()};
  if (fires) {
    newly_fired_.push_back(a);
  }
}

std::vector<v1::Anomaly> RunAnalyzer::ActiveAnomalies() const {
  std::vector<v1::Anomaly> out;
  for (const auto& [key, track] : tracks_) {
    if (track.active) {
      out.push_back(track.anomaly);
    }
  }
  return out;
}

std::vector<v1::Anomaly> RunAnalyzer::NewlyFired() const { return newly_fired_; }

}  // namespace entrowatch::analysis
