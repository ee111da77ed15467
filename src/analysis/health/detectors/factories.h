#pragma once

// One factory per detector file; detector_registry.cc lists them.

#include <memory>

#include "analysis/health/detector.h"

namespace entrowatch::analysis::detectors {

std::unique_ptr<Detector> NewTokenCollapse();
std::unique_ptr<Detector> NewAttentionCollapse();
std::unique_ptr<Detector> NewEntropicOverload();
std::unique_ptr<Detector> NewEntropyDrift();
std::unique_ptr<Detector> NewAttentionLocking();
std::unique_ptr<Detector> NewHeadRedundancy();
std::unique_ptr<Detector> NewFlatLayerProfile();
std::unique_ptr<Detector> NewGeneratedEntropySpike();
std::unique_ptr<Detector> NewNonFinite();
std::unique_ptr<Detector> NewGradNormSpike();
std::unique_ptr<Detector> NewLossSpike();
std::unique_ptr<Detector> NewAttentionLogitGrowth();
std::unique_ptr<Detector> NewRewardHacking();
std::unique_ptr<Detector> NewKlExplosion();
std::unique_ptr<Detector> NewRankOutlier();
std::unique_ptr<Detector> NewSignalRules();

}  // namespace entrowatch::analysis::detectors
