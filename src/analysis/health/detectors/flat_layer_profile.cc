// FLAT_LAYER_PROFILE: the layers' mean attention entropies barely differ.
// Waits for warm-up.

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "analysis/health/detector.h"
#include "analysis/health/detectors/factories.h"

namespace entrowatch::analysis::detectors {
namespace {

namespace v1 = ::entrowatch::v1;

class FlatLayerProfile final : public Detector {
 public:
  v1::Pattern pattern() const override { return v1::FLAT_LAYER_PROFILE; }
  const config::DetectorCommon& common(const StepContext& ctx, absl::string_view) const override {
    return ctx.thresholds.flat_layer_profile.common;
  }

  void Observe(const StepContext& ctx, std::vector<Finding>* out) override {
    const auto& c = ctx.thresholds.flat_layer_profile;
    const v1::StepSummary& step = ctx.step;
    if (!ctx.attention_warm || step.layers_size() < c.min_layers) {
      return;
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
      return;
    }
    Finding f;
    f.subject = "attention";
    const double spread = (hi - lo) / mean;
    f.outcome = spread <= c.max_relative_spread ? Outcome::kTrue : Outcome::kFalse;
    if (f.outcome == Outcome::kTrue) {
      f.reason = absl::StrCat(
          "layer entropy profile is flat: (max - min) / mean = ", FormatNumber(spread),
          " <= ", FormatNumber(c.max_relative_spread), " over ", step.layers_size(), " layers");
      f.evidence.push_back(
          MakeEvidence("layer_entropy_relative_spread", spread, c.max_relative_spread, "<="));
    }
    out->push_back(std::move(f));
  }
};

}  // namespace

std::unique_ptr<Detector> NewFlatLayerProfile() { return std::make_unique<FlatLayerProfile>(); }

}  // namespace entrowatch::analysis::detectors
