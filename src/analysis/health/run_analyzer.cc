#include "analysis/health/run_analyzer.h"

#include <fnmatch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace entrowatch::analysis {
namespace {

namespace v1 = ::entrowatch::v1;

std::string Num(double v) { return FormatNumber(v); }

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
    case v1::NON_FINITE:
      return "Stop or roll back to the last good checkpoint; check the learning rate, loss "
             "scaling (fp16) and the batch of this step for bad values.";
    case v1::GRAD_NORM_SPIKE:
      return "If it persists: lower the learning rate or tighten gradient clipping; inspect the "
             "batches of these steps. An isolated spike the run absorbs needs nothing.";
    case v1::LOSS_SPIKE:
      return "Inspect the batches of these steps (corrupted or out-of-distribution data); if it "
             "persists, roll back and skip them or lower the learning rate.";
    case v1::ATTENTION_LOGIT_GROWTH:
      return "Attention logits grow without bound (entropy collapse follows): add QK-norm or "
             "QK-clip, lower the learning rate.";
    case v1::REWARD_HACKING:
      return "The policy exploits the reward while its entropy collapses: inspect the rollouts, "
             "fix the reward, add an entropy bonus or a stronger KL penalty.";
    case v1::KL_EXPLOSION:
      return "The policy runs away from the reference: raise the KL coefficient, lower the "
             "learning rate, check the reward scale.";
    case v1::RANK_OUTLIER:
      return "Inspect this rank's data shard and device: a bad shard or a faulty GPU that the "
             "pooled statistics hide.";
    case v1::SIGNAL_RULE:
      return "A configured rule on a named scalar holds: see the rule's reason.";
    default:
      return "None.";
  }
}

// Standard error of the median of n values in units of sigma, at most 1.
double MedianError(size_t n) {
  return std::min(1.0, std::sqrt(M_PI / (2.0 * static_cast<double>(n))));
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

RunAnalyzer::RunAnalyzer(RunThresholds thresholds, std::vector<config::SignalRule> rules)
    : thresholds_(std::move(thresholds)), rules_(std::move(rules)), detectors_(MakeDetectors()) {
  verdict_.set_state(v1::WARMUP);
  verdict_.set_reason("warming up: no step observed yet");
  verdict_.set_recommended_action(StateAction(v1::WARMUP));
}

void RunAnalyzer::UpdateThresholds(RunThresholds thresholds,
                                   std::vector<config::SignalRule> rules) {
  thresholds_ = std::move(thresholds);
  rules_ = std::move(rules);
}

BaselineParams RunAnalyzer::Params() const {
  const auto& t = thresholds_.values;
  return BaselineParams{t.half_life_steps, t.warmup_steps, t.winsorize_z, t.min_relative_sigma};
}

void RunAnalyzer::Observe(const v1::StepSummary& step) {
  newly_fired_.clear();
  ++steps_observed_;
  const int index = PhaseIndexOf(step.phase());
  PhaseBaselines& phase = baselines_[index];
  const BaselineParams params = Params();
  const auto& t = thresholds_.values;
  const bool has_tokens = step.token_count() > 0 && std::isfinite(step.entropy_mean());
  const bool tokens_warm = has_tokens && phase.entropy.warm(params);
  const bool attention_warm = steps_observed_ > t.warmup_steps;

  // Detectors see the baselines as they were before this step.
  const StepContext ctx{step,   index,       phase,          t,      rules_,
                        params, tokens_warm, attention_warm, frozen_};
  bool extreme = false;
  bool grad_extreme = false;
  std::vector<Finding> findings;
  for (auto& detector : detectors_) {
    findings.clear();
    detector->Observe(ctx, &findings);
    for (Finding& f : findings) {
      if (f.outcome == Outcome::kTrue && f.extreme) {
        extreme = true;
        grad_extreme = grad_extreme || detector->pattern() == v1::GRAD_NORM_SPIKE ||
                       (detector->pattern() == v1::NON_FINITE && step.has_grad_norm() &&
                        !std::isfinite(step.grad_norm()));
      }
      const config::DetectorCommon& common = detector->common(ctx, f.subject);
      Apply(detector->pattern(), common, step.step(), std::move(f));
    }
  }

  verdict_.set_step(step.step());
  if (index != kEvalPhase && has_tokens) {
    Recent recent;
    recent.entropy = step.entropy_mean();
    double normalized = 0;
    if (NormalizedEntropy(step, &normalized)) {
      recent.normalized = normalized;
    }
    recent.has_grad = UsableGradNorm(step);
    recent.log_grad = recent.has_grad ? std::log(step.grad_norm()) : 0;
    recent.has_loss = UsableLoss(step);
    recent.loss = recent.has_loss ? step.loss() : 0;
    auto& recents = recent_[index];
    recents.push_back(recent);
    while (recents.size() > static_cast<size_t>(t.states.smoothing_steps)) {
      recents.pop_front();
    }
    if (!tokens_warm) {
      if (verdict_.state() == v1::WARMUP) {
        verdict_.set_reason(absl::StrCat("warming up: ", phase.entropy.count(), " of ",
                                         t.warmup_steps, " ", PhaseIndexName(index),
                                         " steps in the baseline"));
      }
    } else {
      AdvanceState(step, Classify(step, index, grad_extreme));
    }
  }

  // Learn from this step unless an incident is (or just became) active.
  // A baseline still in its warm-up keeps learning (a frozen cold baseline
  // would keep the run in WARMUP for as long as the incident lasts).
  const bool learn = !frozen_ && !extreme && !IncidentActive();
  auto may_learn = [&](const EwBaseline& b) { return learn || !b.warm(params); };
  if (has_tokens && may_learn(phase.entropy)) {
    phase.entropy.Update(step.entropy_mean(), params);
  }
  if (has_tokens) {
    phase.entropy_baseline_history.push_back(phase.entropy.mean());
    while (phase.entropy_baseline_history.size() >
           static_cast<size_t>(t.entropy_collapse.window_steps)) {
      phase.entropy_baseline_history.pop_front();
    }
  }
  if (UsableGradNorm(step) && may_learn(phase.log_grad_norm)) {
    phase.log_grad_norm.Update(std::log(step.grad_norm()), params);
  }
  if (UsableLoss(step) && may_learn(phase.loss)) {
    phase.loss.Update(step.loss(), params);
  }
  if (step.learning_rate() > 0 && std::isfinite(step.learning_rate()) &&
      may_learn(phase.learning_rate)) {
    phase.learning_rate.Update(step.learning_rate(), params);
  }
  if (index == kRolloutPhase &&
      step.generated_token_count() >= static_cast<uint64_t>(t.generated_entropy_spike.min_tokens) &&
      std::isfinite(step.generated_entropy_mean()) && may_learn(phase.generated)) {
    phase.generated.Update(step.generated_entropy_mean(), params);
  }

  frozen_ = IncidentActive();
  frozen_steps_ = frozen_ ? frozen_steps_ + 1 : 0;
  if (frozen_ && t.incidents.relearn_steps > 0 && frozen_steps_ >= t.incidents.relearn_steps) {
    Rebase(absl::StrCat("the run stayed ", frozen_steps_,
                        " steps outside its pre-incident band (analysis.incidents.relearn_steps): "
                        "its regime is accepted"));
  }
}

bool RunAnalyzer::IncidentActive() const {
  const v1::HealthState state = verdict_.state();
  if (state != v1::WARMUP && state != v1::NORMAL) {
    return true;
  }
  for (const auto& [key, track] : tracks_) {
    if (track.active && track.anomaly.severity() >= v1::WARNING) {
      return true;
    }
  }
  return false;
}

void RunAnalyzer::EndIncident(absl::string_view reason) {
  Rebase(absl::StrCat("incident ended by EndIncident",
                      reason.empty() ? std::string() : absl::StrCat(" (", reason, ")")));
}

void RunAnalyzer::Rebase(const std::string& why) {
  baselines_ = {};
  for (auto& r : recent_) {
    r.clear();
  }
  for (auto& detector : detectors_) {
    detector->Rebase();
  }
  tracks_.clear();
  steps_observed_ = 0;
  frozen_ = false;
  frozen_steps_ = 0;
  same_state_ = v1::NORMAL;
  same_length_ = 0;
  abnormal_run_.clear();
  away_length_ = 0;
  if (verdict_.state() != v1::WARMUP) {
    verdict_.set_state(v1::NORMAL);
    verdict_.set_since_step(verdict_.step());
  }
  verdict_.clear_evidence();
  verdict_.set_reason(absl::StrCat("at step ", verdict_.step(), " ", why,
                                   "; the baselines relearn from the next step"));
  verdict_.set_recommended_action(StateAction(verdict_.state()));
}

RunAnalyzer::Candidate RunAnalyzer::Classify(const v1::StepSummary& step, int index,
                                             bool grad_extreme) const {
  const PhaseBaselines& phase = baselines_[index];
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
  std::vector<double> losses;
  for (const auto& r : recent_[index]) {
    if (r.has_loss) {
      losses.push_back(r.loss);
    }
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
  bool grad_judged = has_grad && !log_grads.empty() && phase.log_grad_norm.warm(params);
  double grad_z = 0;
  double grad_norm = 0;
  if (grad_judged) {
    const double log_grad = Median(log_grads);
    grad_norm = std::exp(log_grad);
    grad_z = (log_grad - phase.log_grad_norm.mean()) /
             (phase.log_grad_norm.sigma(params) * MedianError(log_grads.size()));
    // Extreme single-step evidence enters without smoothing: the state can
    // follow a grad-norm spike within enter_steps steps.
    const double raw_z = phase.log_grad_norm.ZScore(std::log(step.grad_norm()), params);
    if (grad_extreme && raw_z > grad_z) {
      grad_z = raw_z;
      grad_norm = step.grad_norm();
      c.used_extreme = true;
    }
    c.raw_out = std::abs(raw_z) >= s.grad_norm_z;
  }
  c.raw_out = c.raw_out || grad_extreme ||
              std::abs(phase.entropy.ZScore(step.entropy_mean(), params)) >= s.entropy_z;
  if (grad_extreme && step.has_grad_norm() && !std::isfinite(step.grad_norm())) {
    c.used_extreme = true;
    grad_judged = true;
    grad_z = std::numeric_limits<double>::infinity();
    grad_norm = step.grad_norm();
  }
  // The loss band: a run leaves a state only with its median loss back
  // within loss_band_z sigmas above the (pre-incident) loss baseline.
  if (!losses.empty() && phase.loss.warm(params)) {
    const double loss = Median(losses);
    const double band = phase.loss.mean() + thresholds_.values.incidents.loss_band_z *
                                                phase.loss.sigma(params) *
                                                MedianError(losses.size());
    c.loss_in_band = std::isfinite(loss) && loss <= band;
    c.loss_text = absl::StrCat("loss ", Num(loss), " vs pre-incident band <= ", Num(band));
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

  // A collapsed learning rate (a step change, not a schedule: cosine decay
  // stays far above lr_collapse_ratio of its recent mean) stops learning.
  const bool lr_collapsed =
      s.lr_collapse_ratio > 0 && step.learning_rate() > 0 && phase.learning_rate.warm(params) &&
      step.learning_rate() <= s.lr_collapse_ratio * phase.learning_rate.mean();
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
  } else if (lr_collapsed && entropy_level != Level::kLow && grad != Level::kHigh) {
    c.state = v1::STAGNATION;
    c.reason = absl::StrCat("learning rate ", Num(step.learning_rate()), " is ",
                            Num(step.learning_rate() / phase.learning_rate.mean()),
                            "x its baseline ", Num(phase.learning_rate.mean()),
                            ": the model barely updates; ", entropy_text, ", ", grad_text);
    c.evidence.push_back(MakeEvidence("learning_rate_ratio",
                                      step.learning_rate() / phase.learning_rate.mean(),
                                      s.lr_collapse_ratio, "<="));
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
  c.in_band =
      entropy_level == Level::kMid && grad == Level::kMid && c.loss_in_band && !lr_collapsed;
  if (entropy_level != Level::kMid || grad != Level::kMid) {
    c.band_text = absl::StrCat(entropy_text, ", ", grad_text);
  } else if (!c.loss_in_band) {
    c.band_text = c.loss_text;
  }
  return c;
}

RunAnalyzer::Candidate RunAnalyzer::NormalBecause(std::string reason) {
  Candidate c;
  c.reason = std::move(reason);
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
    // A run that needed this step's extreme value to look abnormal enters
    // only while its own values are still out: a blip the run absorbed at
    // once does not become a state through the lag of the median.
    const bool lag_only =
        !candidate.raw_out && std::any_of(abnormal_run_.begin(), abnormal_run_.end(),
                                          [](const Candidate& c) { return c.used_extreme; });
    if (abnormal_run_.size() >= static_cast<size_t>(s.enter_steps) && !lag_only) {
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
    describe(NormalBecause(
        absl::StrCat("within baselines (", abnormal_run_.size(), " of ", s.enter_steps,
                     " abnormal steps needed to change state): ", candidate.reason)));
    return;
  }
  if (candidate.state != v1::NORMAL && same_length_ >= s.enter_steps) {
    enter(candidate.state, same_start_);
    describe(candidate);
    return;
  }
  // Sticky: only a step back inside the pre-incident band (a NORMAL
  // candidate, against frozen baselines, with the loss in its band) counts
  // towards leaving; another abnormal candidate or a worse loss does not.
  if (candidate.state != v1::NORMAL || !candidate.in_band) {
    away_length_ = 0;
    if (candidate.state == v1::NORMAL) {
      verdict_.set_reason(absl::StrCat(
          "still ", v1::HealthState_Name(current), ": settled outside the pre-incident band (",
          candidate.band_text,
          "); `entrowatch end-incident` or analysis.incidents.relearn_steps accepts the new "
          "regime"));
    }
    return;
  }
  ++away_length_;
  if (away_length_ >= s.exit_steps) {
    enter(v1::NORMAL, step.step());
    describe(NormalBecause(absl::StrCat("recovered: ", s.exit_steps,
                                        " steps back inside the pre-incident band after ",
                                        v1::HealthState_Name(current), "; ", candidate.reason)));
  }
}

void RunAnalyzer::Apply(v1::Pattern pattern, const config::DetectorCommon& common, uint64_t step,
                        Finding finding) {
  const auto key = std::make_pair(pattern, finding.subject);
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
    a.set_subject(finding.subject);
    a.set_since_step(track.streak_start);
    a.set_recommended_action(PatternAction(pattern));
  }
  // A graded detector escalates (never downgrades) an active anomaly.
  const v1::Severity severity =
      ToProto(finding.severity.has_value() ? *finding.severity : common.severity);
  if (fires || severity > a.severity()) {
    a.set_severity(severity);
  }
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
