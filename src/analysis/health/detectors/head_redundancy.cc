// HEAD_REDUNDANCY: the heads of a layer have near-identical mean entropies.
// Waits for warm-up.

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "analysis/health/detector.h"
#include "analysis/health/detectors/factories.h"

namespace entrowatch::analysis::detectors {
namespace {

namespace v1 = ::entrowatch::v1;

class HeadRedundancy final : public Detector {
 public:
  v1::Pattern pattern() const override { return v1::HEAD_REDUNDANCY; }
  const config::DetectorCommon& common(const StepContext& ctx, absl::string_view) const override {
    return ctx.thresholds.head_redundancy.common;
  }

  void Observe(const StepContext& ctx, std::vector<Finding>* out) override {
    if (!ctx.attention_warm) {
      return;
    }
    const auto& c = ctx.thresholds.head_redundancy;
    Finding f;
    f.subject = "attention";
    std::vector<std::string> redundant;
    double largest = 0;
    for (const auto& layer : ctx.step.layers()) {
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
                              FormatNumber(c.max_relative_std), "): ", NameSubjects(redundant));
      f.evidence.push_back(
          MakeEvidence("head_entropy_relative_std", largest, c.max_relative_std, "<="));
    }
    out->push_back(std::move(f));
  }
};

}  // namespace

std::unique_ptr<Detector> NewHeadRedundancy() { return std::make_unique<HeadRedundancy>(); }

}  // namespace entrowatch::analysis::detectors
