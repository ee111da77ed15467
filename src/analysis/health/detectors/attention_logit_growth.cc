// ATTENTION_LOGIT_GROWTH: a layer's maximum attention logit (max over heads
// and queries of q.k x scale) at least growth_factor times its value
// window_steps steps ago and at least min_logit, sustained for for_steps
// steps (small logits grow several-fold while a model learns). Unbounded logit
// growth precedes attention entropy collapse. Waits for warm-up.

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

constexpr size_t kMaxLayers = 1 << 12;

class AttentionLogitGrowth final : public Detector {
 public:
  v1::Pattern pattern() const override { return v1::ATTENTION_LOGIT_GROWTH; }
  const config::DetectorCommon& common(const StepContext& ctx, absl::string_view) const override {
    return ctx.thresholds.attention_logit_growth.common;
  }

  void Observe(const StepContext& ctx, std::vector<Finding>* out) override {
    const auto& c = ctx.thresholds.attention_logit_growth;
    for (const auto& layer : ctx.step.layers()) {
      if (!layer.has_max_logit() || !std::isfinite(layer.max_logit())) {
        continue;
      }
      auto it = history_.find(layer.layer());
      if (it == history_.end()) {
        if (history_.size() >= kMaxLayers) {
          continue;
        }
        it = history_.emplace(layer.layer(), std::deque<double>()).first;
      }
      std::deque<double>& h = it->second;
      h.push_back(layer.max_logit());
      while (h.size() > static_cast<size_t>(c.window_steps) + 1) {
        h.pop_front();
      }
      if (!ctx.attention_warm || h.size() <= static_cast<size_t>(c.window_steps)) {
        continue;
      }
      Finding f;
      f.subject = absl::StrCat("layer ", layer.layer());
      const double then = h.front();
      const double now = h.back();
      f.outcome = (then > 0 && now >= c.growth_factor * then && now >= c.min_logit)
                      ? Outcome::kTrue
                      : Outcome::kFalse;
      if (f.outcome == Outcome::kTrue) {
        f.reason = absl::StrCat("layer ", layer.layer(), ": max attention logit ",
                                FormatNumber(now), " is ", FormatNumber(now / then), "x its value ",
                                c.window_steps, " steps ago (", FormatNumber(then),
                                ") and >= ", FormatNumber(c.min_logit));
        f.evidence.push_back(
            MakeEvidence("attention_max_logit_growth", now / then, c.growth_factor, ">="));
        f.evidence.push_back(MakeEvidence("attention_max_logit", now, then, "window ago"));
      }
      out->push_back(std::move(f));
    }
  }

  void Rebase() override { history_.clear(); }

 private:
  std::map<uint32_t, std::deque<double>> history_;
};

}  // namespace

std::unique_ptr<Detector> NewAttentionLogitGrowth() {
  return std::make_unique<AttentionLogitGrowth>();
}

}  // namespace entrowatch::analysis::detectors
