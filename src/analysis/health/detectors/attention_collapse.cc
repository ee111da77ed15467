// ENTROPY_COLLAPSE on attention, per layer: the fraction of heads at or
// below the floor (from the first step), or the layer's mean attention
// entropy a relative drop below its baseline of window_steps steps ago
// (after warm-up), whichever comes first. The subject names the layer, the
// reason the heads.

#include <algorithm>
#include <cmath>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "analysis/health/detector.h"
#include "analysis/health/detectors/factories.h"

namespace entrowatch::analysis::detectors {
namespace {

namespace v1 = ::entrowatch::v1;

// Bounds the layers a run keeps, whatever layer numbers a client sends.
constexpr size_t kMaxLayers = 1 << 12;

class AttentionCollapse final : public Detector {
 public:
  v1::Pattern pattern() const override { return v1::ENTROPY_COLLAPSE; }
  const config::DetectorCommon& common(const StepContext& ctx, absl::string_view) const override {
    return ctx.thresholds.entropy_collapse.common;
  }

  void Observe(const StepContext& ctx, std::vector<Finding>* out) override {
    const auto& c = ctx.thresholds.entropy_collapse;
    for (const auto& layer : ctx.step.layers()) {
      if (layer.head_mean_entropy_size() == 0) {
        continue;
      }
      auto it = layers_.find(layer.layer());
      if (it == layers_.end()) {
        if (layers_.size() >= kMaxLayers) {
          continue;
        }
        it = layers_.emplace(layer.layer(), LayerState{}).first;
      }
      LayerState& state = it->second;
      Finding f;
      f.subject = absl::StrCat("layer ", layer.layer());
      f.outcome = Outcome::kFalse;
      std::vector<std::string> floor_heads;
      for (int h = 0; h < layer.head_mean_entropy_size(); ++h) {
        if (layer.head_mean_entropy(h) <= c.attention_floor_nats) {
          floor_heads.push_back(absl::StrCat(h));
        }
      }
      const int heads = layer.head_mean_entropy_size();
      const double fraction = static_cast<double>(floor_heads.size()) / heads;
      if (fraction >= c.attention_head_fraction) {
        f.outcome = Outcome::kTrue;
        f.reason =
            absl::StrCat("layer ", layer.layer(), ": ", floor_heads.size(), " of ", heads,
                         " heads near one-hot (at or below ", FormatNumber(c.attention_floor_nats),
                         " nats): heads ", NameSubjects(floor_heads));
        f.evidence.push_back(MakeEvidence("attention_heads_near_one_hot_fraction", fraction,
                                          c.attention_head_fraction, ">="));
      } else if (ctx.attention_warm &&
                 state.history.size() >= static_cast<size_t>(c.window_steps) &&
                 state.history.front() > 0) {
        const double reference = state.history.front();
        const double drop = (reference - layer.mean_entropy()) / reference;
        if (drop >= c.attention_relative_drop) {
          std::vector<std::string> low;
          for (int h = 0; h < heads; ++h) {
            if (layer.head_mean_entropy(h) <= (1 - c.attention_relative_drop) * reference) {
              low.push_back(absl::StrCat(h));
            }
          }
          f.outcome = Outcome::kTrue;
          f.reason = absl::StrCat(
              "layer ", layer.layer(), ": mean attention entropy ",
              FormatNumber(layer.mean_entropy()), " nats is ", FormatNumber(100 * drop),
              "% below its baseline of ", state.history.size(), " steps ago (",
              FormatNumber(reference), " nats); heads below ",
              FormatNumber((1 - c.attention_relative_drop) * reference),
              " nats: ", low.empty() ? std::string("none alone") : NameSubjects(low));
          f.evidence.push_back(MakeEvidence("attention_entropy_relative_drop", drop,
                                            c.attention_relative_drop, ">="));
          f.evidence.push_back(MakeEvidence("attention_entropy_mean_nats", layer.mean_entropy(),
                                            reference, "baseline"));
        }
      }
      if (std::isfinite(layer.mean_entropy()) &&
          (!ctx.frozen || !state.baseline.warm(ctx.params)) && f.outcome != Outcome::kTrue) {
        state.baseline.Update(layer.mean_entropy(), ctx.params);
      }
      state.history.push_back(state.baseline.mean());
      while (state.history.size() > static_cast<size_t>(c.window_steps)) {
        state.history.pop_front();
      }
      out->push_back(std::move(f));
    }
  }

  void Rebase() override { layers_.clear(); }

 private:
  struct LayerState {
    EwBaseline baseline;         // layer mean attention entropy
    std::deque<double> history;  // baseline mean after each step
  };
  std::map<uint32_t, LayerState> layers_;
};

}  // namespace

std::unique_ptr<Detector> NewAttentionCollapse() { return std::make_unique<AttentionCollapse>(); }

}  // namespace entrowatch::analysis::detectors
