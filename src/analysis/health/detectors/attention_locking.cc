// ATTENTION_LOCKING: a head's (or a layer's mean) attention entropy frozen
// over window_steps steps. The rolling windows fill during warm-up; the
// judgement waits for it.

#include <cmath>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "analysis/health/detector.h"
#include "analysis/health/detectors/factories.h"

namespace entrowatch::analysis::detectors {
namespace {

namespace v1 = ::entrowatch::v1;

// Bounds the rolling attention series a run keeps, whatever layer numbers a
// client sends.
constexpr size_t kMaxAttentionSeries = 1 << 14;

class AttentionLocking final : public Detector {
 public:
  v1::Pattern pattern() const override { return v1::ATTENTION_LOCKING; }
  const config::DetectorCommon& common(const StepContext& ctx, absl::string_view) const override {
    return ctx.thresholds.attention_locking.common;
  }

  void Observe(const StepContext& ctx, std::vector<Finding>* out) override {
    const auto& c = ctx.thresholds.attention_locking;
    const size_t window = static_cast<size_t>(c.window_steps);
    auto push = [&](uint32_t layer, int head, double value) {
      const auto key = std::make_pair(layer, head);
      auto it = history_.find(key);
      if (it == history_.end()) {
        if (history_.size() >= kMaxAttentionSeries) {
          return;
        }
        it = history_.emplace(key, std::deque<double>()).first;
      }
      it->second.push_back(value);
      while (it->second.size() > window) {
        it->second.pop_front();
      }
    };
    for (const auto& layer : ctx.step.layers()) {
      push(layer.layer(), -1, layer.mean_entropy());
      for (int h = 0; h < layer.head_mean_entropy_size(); ++h) {
        push(layer.layer(), h, layer.head_mean_entropy(h));
      }
    }
    if (ctx.step.layers_size() == 0 || !ctx.attention_warm) {
      return;
    }
    Finding f;
    f.subject = "attention";
    f.outcome = Outcome::kFalse;
    std::vector<std::string> frozen;
    double smallest_std = 0;
    for (const auto& [key, values] : history_) {
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
        frozen.push_back(key.second < 0 ? absl::StrCat("layer ", key.first, " mean at ",
                                                       FormatNumber(mean), " nats")
                                        : absl::StrCat("layer ", key.first, " head ", key.second,
                                                       " at ", FormatNumber(mean), " nats"));
      }
    }
    if (!frozen.empty()) {
      f.outcome = Outcome::kTrue;
      f.reason = absl::StrCat("attention entropy frozen over ", window, " steps (rolling std < ",
                              FormatNumber(c.epsilon_nats), " nats): ", NameSubjects(frozen));
      f.evidence.push_back(
          MakeEvidence("attention_entropy_rolling_std", smallest_std, c.epsilon_nats, "<"));
    }
    out->push_back(std::move(f));
  }

 private:
  // Rolling per-(layer, head) entropies; head -1 is the layer mean.
  std::map<std::pair<uint32_t, int>, std::deque<double>> history_;
};

}  // namespace

std::unique_ptr<Detector> NewAttentionLocking() { return std::make_unique<AttentionLocking>(); }

}  // namespace entrowatch::analysis::detectors
