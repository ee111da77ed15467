#include "config/analysis_config.h"

#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"

namespace entrowatch::config {
namespace {

template <typename T>
absl::Status GetInRange(YamlMap& m, absl::string_view key, T lo, T hi, T* value) {
  RETURN_IF_ERROR(m.Get(key, value));
  if (*value < lo || *value > hi) {
    return m.Error(key, absl::StrCat("expected a value in [", lo, ", ", hi, "], got ", *value));
  }
  return absl::OkStatus();
}

absl::Status GetSeverity(YamlMap& m, AnomalySeverity* out) {
  std::string name;
  RETURN_IF_ERROR(m.Get("severity", &name));
  if (!m.Has("severity")) {
    return absl::OkStatus();
  }
  if (name == "info") {
    *out = AnomalySeverity::kInfo;
  } else if (name == "warning") {
    *out = AnomalySeverity::kWarning;
  } else if (name == "critical") {
    *out = AnomalySeverity::kCritical;
  } else {
    return m.Error("severity",
                   absl::StrCat("expected info, warning or critical, got '", name, "'"));
  }
  return absl::OkStatus();
}

absl::Status GetDirection(YamlMap& m, absl::string_view key, DriftDirection* out) {
  std::string name;
  RETURN_IF_ERROR(m.Get(key, &name));
  if (!m.Has(key)) {
    return absl::OkStatus();
  }
  if (name == "none") {
    *out = DriftDirection::kNone;
  } else if (name == "up") {
    *out = DriftDirection::kUp;
  } else if (name == "down") {
    *out = DriftDirection::kDown;
  } else if (name == "both") {
    *out = DriftDirection::kBoth;
  } else {
    return m.Error(key, absl::StrCat("expected none, up, down or both, got '", name, "'"));
  }
  return absl::OkStatus();
}

absl::Status GetSignalName(YamlMap& m, absl::string_view key, std::string* out) {
  RETURN_IF_ERROR(m.Get(key, out));
  if (!ValidSignalName(*out)) {
    return m.Error(key, absl::StrCat("expected a named-scalar name of 1-128 characters from "
                                     "A-Z a-z 0-9 _ . / : -, got '",
                                     *out, "'"));
  }
  return absl::OkStatus();
}

absl::Status ParseCommon(YamlMap& m, DetectorCommon* c) {
  RETURN_IF_ERROR(m.Get("enabled", &c->enabled));
  RETURN_IF_ERROR(GetSeverity(m, &c->severity));
  RETURN_IF_ERROR(GetInRange(m, "for_steps", 1, 100000, &c->for_steps));
  return GetInRange(m, "clear_steps", 1, 100000, &c->clear_steps);
}

absl::Status ParseThresholds(YamlMap& root, AnalysisThresholds* t) {
  RETURN_IF_ERROR(root.Child("baseline", [&](YamlMap& m) {
    RETURN_IF_ERROR(GetInRange(m, "warmup_steps", 1, 1000000, &t->warmup_steps));
    RETURN_IF_ERROR(GetInRange(m, "half_life_steps", 1.0, 1e6, &t->half_life_steps));
    RETURN_IF_ERROR(GetInRange(m, "winsorize_z", 1.0, 1e6, &t->winsorize_z));
    return GetInRange(m, "min_relative_sigma", 0.0, 1.0, &t->min_relative_sigma);
  }));
  RETURN_IF_ERROR(root.Child("states", [&](YamlMap& m) {
    auto& s = t->states;
    RETURN_IF_ERROR(GetInRange(m, "enter_steps", 1, 100000, &s.enter_steps));
    RETURN_IF_ERROR(GetInRange(m, "exit_steps", 1, 100000, &s.exit_steps));
    RETURN_IF_ERROR(GetInRange(m, "smoothing_steps", 1, 1000, &s.smoothing_steps));
    RETURN_IF_ERROR(GetInRange(m, "entropy_z", 0.1, 1000.0, &s.entropy_z));
    RETURN_IF_ERROR(GetInRange(m, "grad_norm_z", 0.1, 1000.0, &s.grad_norm_z));
    RETURN_IF_ERROR(GetInRange(m, "joint_z", 0.1, 1000.0, &s.joint_z));
    RETURN_IF_ERROR(GetInRange(m, "confirm_z", 0.0, 1000.0, &s.confirm_z));
    RETURN_IF_ERROR(GetInRange(m, "low_normalized_entropy", 0.0, 1.0, &s.low_normalized_entropy));
    RETURN_IF_ERROR(GetInRange(m, "high_normalized_entropy", 0.0, 1.0, &s.high_normalized_entropy));
    RETURN_IF_ERROR(GetInRange(m, "lr_collapse_ratio", 0.0, 1.0, &s.lr_collapse_ratio));
    if (s.low_normalized_entropy >= s.high_normalized_entropy) {
      return m.Error("high_normalized_entropy",
                     absl::StrCat("expected a value above low_normalized_entropy (",
                                  s.low_normalized_entropy, "), got ", s.high_normalized_entropy));
    }
    return absl::OkStatus();
  }));
  RETURN_IF_ERROR(root.Child("detectors", [&](YamlMap& d) {
    RETURN_IF_ERROR(d.Child("entropy_collapse", [&](YamlMap& m) {
      auto& c = t->entropy_collapse;
      RETURN_IF_ERROR(ParseCommon(m, &c.common));
      RETURN_IF_ERROR(GetInRange(m, "normalized_floor", 0.0, 1.0, &c.normalized_floor));
      RETURN_IF_ERROR(GetInRange(m, "relative_drop", 0.0, 1.0, &c.relative_drop));
      RETURN_IF_ERROR(GetInRange(m, "window_steps", 1, 100000, &c.window_steps));
      RETURN_IF_ERROR(GetInRange(m, "attention_floor_nats", 0.0, 1000.0, &c.attention_floor_nats));
      RETURN_IF_ERROR(
          GetInRange(m, "attention_head_fraction", 0.0, 1.0, &c.attention_head_fraction));
      return GetInRange(m, "attention_relative_drop", 0.0, 1.0, &c.attention_relative_drop);
    }));
    RETURN_IF_ERROR(d.Child("entropic_overload", [&](YamlMap& m) {
      auto& c = t->entropic_overload;
      RETURN_IF_ERROR(ParseCommon(m, &c.common));
      RETURN_IF_ERROR(GetInRange(m, "normalized_ceiling", 0.0, 1.0, &c.normalized_ceiling));
      RETURN_IF_ERROR(GetInRange(m, "p10_normalized_ceiling", 0.0, 1.0, &c.p10_normalized_ceiling));
      return GetInRange(m, "z", 0.1, 1000.0, &c.z);
    }));
    RETURN_IF_ERROR(d.Child("attention_locking", [&](YamlMap& m) {
      auto& c = t->attention_locking;
      RETURN_IF_ERROR(ParseCommon(m, &c.common));
      RETURN_IF_ERROR(GetInRange(m, "window_steps", 2, 100000, &c.window_steps));
      return GetInRange(m, "epsilon_nats", 0.0, 1000.0, &c.epsilon_nats);
    }));
    RETURN_IF_ERROR(d.Child("entropy_drift", [&](YamlMap& m) {
      auto& c = t->entropy_drift;
      RETURN_IF_ERROR(ParseCommon(m, &c.common));
      RETURN_IF_ERROR(GetInRange(m, "delta", 0.0, 1000.0, &c.delta));
      RETURN_IF_ERROR(GetInRange(m, "lambda", 0.001, 1e6, &c.lambda));
      RETURN_IF_ERROR(GetInRange(m, "clip_z", 0.1, 1000.0, &c.clip_z));
      RETURN_IF_ERROR(GetDirection(m, "train", &c.train));
      RETURN_IF_ERROR(GetDirection(m, "eval", &c.eval));
      return GetDirection(m, "rollout", &c.rollout);
    }));
    RETURN_IF_ERROR(d.Child("head_redundancy", [&](YamlMap& m) {
      auto& c = t->head_redundancy;
      RETURN_IF_ERROR(ParseCommon(m, &c.common));
      return GetInRange(m, "max_relative_std", 0.0, 1000.0, &c.max_relative_std);
    }));
    RETURN_IF_ERROR(d.Child("flat_layer_profile", [&](YamlMap& m) {
      auto& c = t->flat_layer_profile;
      RETURN_IF_ERROR(ParseCommon(m, &c.common));
      RETURN_IF_ERROR(GetInRange(m, "min_layers", 2, 100000, &c.min_layers));
      return GetInRange(m, "max_relative_spread", 0.0, 1000.0, &c.max_relative_spread);
    }));
    RETURN_IF_ERROR(d.Child("generated_entropy_spike", [&](YamlMap& m) {
      auto& c = t->generated_entropy_spike;
      RETURN_IF_ERROR(ParseCommon(m, &c.common));
      RETURN_IF_ERROR(GetInRange(m, "z", 0.1, 1000.0, &c.z));
      RETURN_IF_ERROR(GetInRange(m, "min_increase_nats", 0.0, 1000.0, &c.min_increase_nats));
      return GetInRange(m, "min_tokens", 1, 1 << 30, &c.min_tokens);
    }));
    RETURN_IF_ERROR(
        d.Child("non_finite", [&](YamlMap& m) { return ParseCommon(m, &t->non_finite.common); }));
    RETURN_IF_ERROR(d.Child("grad_norm_spike", [&](YamlMap& m) {
      auto& c = t->grad_norm_spike;
      RETURN_IF_ERROR(ParseCommon(m, &c.common));
      RETURN_IF_ERROR(GetInRange(m, "z", 0.1, 1000.0, &c.z));
      RETURN_IF_ERROR(GetInRange(m, "min_ratio", 1.0, 1e6, &c.min_ratio));
      return GetInRange(m, "escalate_steps", 1, 100000, &c.escalate_steps);
    }));
    RETURN_IF_ERROR(d.Child("loss_spike", [&](YamlMap& m) {
      auto& c = t->loss_spike;
      RETURN_IF_ERROR(ParseCommon(m, &c.common));
      RETURN_IF_ERROR(GetInRange(m, "factor", 1.0, 1e6, &c.factor));
      RETURN_IF_ERROR(GetInRange(m, "z", 0.0, 1000.0, &c.z));
      return GetInRange(m, "escalate_steps", 1, 100000, &c.escalate_steps);
    }));
    RETURN_IF_ERROR(d.Child("attention_logit_growth", [&](YamlMap& m) {
      auto& c = t->attention_logit_growth;
      RETURN_IF_ERROR(ParseCommon(m, &c.common));
      RETURN_IF_ERROR(GetInRange(m, "growth_factor", 1.0, 1e6, &c.growth_factor));
      RETURN_IF_ERROR(GetInRange(m, "min_logit", 0.0, 1e12, &c.min_logit));
      return GetInRange(m, "window_steps", 1, 100000, &c.window_steps);
    }));
    RETURN_IF_ERROR(d.Child("reward_hacking", [&](YamlMap& m) {
      auto& c = t->reward_hacking;
      RETURN_IF_ERROR(ParseCommon(m, &c.common));
      RETURN_IF_ERROR(GetSignalName(m, "reward_signal", &c.reward_signal));
      RETURN_IF_ERROR(GetInRange(m, "window_steps", 1, 100000, &c.window_steps));
      RETURN_IF_ERROR(GetInRange(m, "min_reward_rise", 0.0, 1e12, &c.min_reward_rise));
      return GetInRange(m, "entropy_drop", 0.0, 1.0, &c.entropy_drop);
    }));
    RETURN_IF_ERROR(d.Child("kl_explosion", [&](YamlMap& m) {
      auto& c = t->kl_explosion;
      RETURN_IF_ERROR(ParseCommon(m, &c.common));
      RETURN_IF_ERROR(GetSignalName(m, "signal", &c.signal));
      RETURN_IF_ERROR(GetInRange(m, "z", 0.1, 1000.0, &c.z));
      return GetInRange(m, "min_value", 0.0, 1e12, &c.min_value);
    }));
    return d.Child("rank_outlier", [&](YamlMap& m) {
      auto& c = t->rank_outlier;
      RETURN_IF_ERROR(ParseCommon(m, &c.common));
      RETURN_IF_ERROR(GetInRange(m, "escalate_steps", 1, 100000, &c.escalate_steps));
      return GetInRange(m, "z", 0.1, 1000.0, &c.z);
    });
  }));
  return root.Child("incidents", [&](YamlMap& m) {
    auto& c = t->incidents;
    RETURN_IF_ERROR(GetInRange(m, "relearn_steps", 0, 100000000, &c.relearn_steps));
    return GetInRange(m, "loss_band_z", 0.1, 1000.0, &c.loss_band_z);
  });
}

absl::Status ParseRule(YamlMap& m, SignalRule* rule) {
  RETURN_IF_ERROR(m.Get("name", &rule->name));
  if (!m.Has("name") || !ValidSignalName(rule->name)) {
    return m.Error("name", "expected a rule name of 1-128 characters from A-Z a-z 0-9 _ . / : -");
  }
  RETURN_IF_ERROR(m.Get("signal", &rule->signal));
  if (!m.Has("signal")) {
    return m.Error("signal", "expected the named scalar the rule watches");
  }
  RETURN_IF_ERROR(GetSignalName(m, "signal", &rule->signal));
  std::string direction = "above";
  RETURN_IF_ERROR(m.Get("direction", &direction));
  if (direction != "above" && direction != "below") {
    return m.Error("direction", absl::StrCat("expected above or below, got '", direction, "'"));
  }
  rule->above = direction == "above";
  rule->has_bound = m.Has("bound");
  RETURN_IF_ERROR(m.Get("bound", &rule->bound));
  if (rule->has_bound && !std::isfinite(rule->bound)) {
    return m.Error("bound", "expected a finite number");
  }
  rule->has_z = m.Has("z");
  if (rule->has_z) {
    RETURN_IF_ERROR(GetInRange(m, "z", 0.1, 1000.0, &rule->z));
  }
  if (!rule->has_bound && !rule->has_z) {
    return m.Error("signal",
                   "expected a rule with a bound (absolute) or a z (against the baseline)");
  }
  return ParseCommon(m, &rule->common);
}

}  // namespace

bool ValidSignalName(absl::string_view name) {
  if (name.empty() || name.size() > 128) {
    return false;
  }
  for (char ch : name) {
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                    (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == '/' || ch == ':' ||
                    ch == '-';
    if (!ok) {
      return false;
    }
  }
  return true;
}

absl::Status ParseAnalysisConfig(YamlMap& node, AnalysisConfig* out) {
  RETURN_IF_ERROR(ParseThresholds(node, &out->base));
  std::vector<AnalysisOverride> overrides;
  RETURN_IF_ERROR(node.ChildList("overrides", [&](YamlMap& m, size_t) {
    AnalysisOverride o;
    RETURN_IF_ERROR(m.Get("run", &o.run_glob));
    if (o.run_glob.empty()) {
      return m.Error("run", "expected a non-empty run-id glob");
    }
    o.thresholds = out->base;
    RETURN_IF_ERROR(ParseThresholds(m, &o.thresholds));
    overrides.push_back(std::move(o));
    return absl::OkStatus();
  }));
  out->overrides = std::move(overrides);
  std::vector<SignalRule> rules;
  RETURN_IF_ERROR(node.ChildList("rules", [&](YamlMap& m, size_t) {
    SignalRule rule;
    RETURN_IF_ERROR(ParseRule(m, &rule));
    for (const SignalRule& other : rules) {
      if (other.name == rule.name) {
        return m.Error("name", absl::StrCat("rule name '", rule.name, "' is used twice"));
      }
    }
    rules.push_back(std::move(rule));
    return absl::OkStatus();
  }));
  out->rules = std::move(rules);
  return node.CheckNoUnknownKeys();
}

}  // namespace entrowatch::config
