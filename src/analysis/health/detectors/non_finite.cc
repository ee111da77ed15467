// NON_FINITE: a NaN or infinite loss or grad norm, pooled or on any rank.
// Critical from the first such step: the run is already lost or about to be.

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "analysis/health/detector.h"
#include "analysis/health/detectors/factories.h"

namespace entrowatch::analysis::detectors {
namespace {

namespace v1 = ::entrowatch::v1;

class NonFinite final : public Detector {
 public:
  v1::Pattern pattern() const override { return v1::NON_FINITE; }
  const config::DetectorCommon& common(const StepContext& ctx, absl::string_view) const override {
    return ctx.thresholds.non_finite.common;
  }

  void Observe(const StepContext& ctx, std::vector<Finding>* out) override {
    const v1::StepSummary& step = ctx.step;
    if (!step.has_loss() && !step.has_grad_norm() && step.ranks_size() == 0) {
      return;
    }
    std::vector<std::string> bad;
    if (step.has_loss() && !std::isfinite(step.loss())) {
      bad.push_back(absl::StrCat("loss ", step.loss()));
    }
    if (step.has_grad_norm() && !std::isfinite(step.grad_norm())) {
      bad.push_back(absl::StrCat("grad norm ", step.grad_norm()));
    }
    for (const auto& rank : step.ranks()) {
      if (rank.has_loss() && !std::isfinite(rank.loss()) && std::isfinite(step.loss())) {
        bad.push_back(absl::StrCat("rank ", rank.rank(), " loss ", rank.loss()));
      }
      if (rank.has_grad_norm() && !std::isfinite(rank.grad_norm()) &&
          std::isfinite(step.grad_norm())) {
        bad.push_back(absl::StrCat("rank ", rank.rank(), " grad norm ", rank.grad_norm()));
      }
    }
    Finding f;
    f.subject = absl::StrCat("step ", PhaseIndexName(ctx.phase));
    f.outcome = bad.empty() ? Outcome::kFalse : Outcome::kTrue;
    if (!bad.empty()) {
      f.extreme = true;
      f.reason =
          absl::StrCat("non-finite values at step ", step.step(), ": ", absl::StrJoin(bad, ", "));
      if (step.has_loss() && !std::isfinite(step.loss())) {
        f.evidence.push_back(MakeEvidence("loss", step.loss(), 0, "finite"));
      }
      if (step.has_grad_norm() && !std::isfinite(step.grad_norm())) {
        f.evidence.push_back(MakeEvidence("grad_norm", step.grad_norm(), 0, "finite"));
      }
    }
    out->push_back(std::move(f));
  }
};

}  // namespace

std::unique_ptr<Detector> NewNonFinite() { return std::make_unique<NonFinite>(); }

}  // namespace entrowatch::analysis::detectors
