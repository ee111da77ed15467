#pragma once

#include <cstdint>

namespace entrowatch::analysis {

// How an EwBaseline weighs and guards its observations.
struct BaselineParams {
  double half_life_steps = 50;  // weight of an observation halves after this many more
  int warmup_steps = 50;        // observations before the baseline is trusted
  double winsorize_z = 4;       // after warm-up, observations are clipped to mean +- this*sigma
  double min_relative_sigma = 0.02;  // sigma floor relative to |mean|
};

// Exponentially weighted mean and variance of one signal. During the first
// observations the weight is 1/n (a plain running mean), so the warm-up
// estimate is not biased towards the first value. After warm-up each
// observation is winsorized, so a pathology moves the baseline slowly and is
// not absorbed within a few steps. Not thread-safe; a value type.
class EwBaseline {
 public:
  // Folds x in. Callers pass finite values only.
  void Update(double x, const BaselineParams& params);

  int64_t count() const { return count_; }
  bool warm(const BaselineParams& params) const { return count_ >= params.warmup_steps; }
  double mean() const { return mean_; }
  // Standard deviation, floored at min_relative_sigma * |mean| (and a tiny
  // absolute floor) so that a noise-free signal does not turn every small
  // change into a huge z-score.
  double sigma(const BaselineParams& params) const;
  // (x - mean) / sigma.
  double ZScore(double x, const BaselineParams& params) const;

 private:
  int64_t count_ = 0;
  double mean_ = 0;
  double variance_ = 0;
};

}  // namespace entrowatch::analysis
