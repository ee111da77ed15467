#include "entrowatch/client/collective.h"

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace entrowatch::client {

class CpuCollectiveGroup::Member final : public Collective {
 public:
  Member(CpuCollectiveGroup* group, int rank) : group_(group), rank_(rank) {}

  int rank() const override { return rank_; }
  int world_size() const override { return group_->world_size(); }

  absl::Status AllReduceSum(absl::Span<double> values) override {
    return group_->Run<double>(rank_, Op::kSum, values, values);
  }
  absl::Status AllReduceSum(absl::Span<float> values) override {
    return group_->Run<float>(rank_, Op::kSum, values, values);
  }
  absl::Status AllReduceMax(absl::Span<double> values) override {
    return group_->Run<double>(rank_, Op::kMax, values, values);
  }
  absl::Status AllGather(absl::Span<const double> send, absl::Span<double> out) override {
    return group_->Run<double>(rank_, Op::kGather, send, out);
  }
  absl::Status AllGather(absl::Span<const float> send, absl::Span<float> out) override {
    return group_->Run<float>(rank_, Op::kGather, send, out);
  }

 private:
  CpuCollectiveGroup* const group_;
  const int rank_;
};

absl::StatusOr<std::unique_ptr<CpuCollectiveGroup>> CpuCollectiveGroup::Create(
    int world_size, CpuCollectiveOptions options) {
  if (world_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("CpuCollectiveGroup: world_size must be >= 1, got ", world_size));
  }
  if (options.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("CpuCollectiveGroup: timeout must be positive");
  }
  return std::unique_ptr<CpuCollectiveGroup>(new CpuCollectiveGroup(world_size, options));
}

CpuCollectiveGroup::CpuCollectiveGroup(int world_size, CpuCollectiveOptions options)
    : options_(options), slots_(static_cast<size_t>(world_size)) {
  for (int r = 0; r < world_size; ++r) {
    members_.push_back(std::make_unique<Member>(this, r));
  }
}

CpuCollectiveGroup::~CpuCollectiveGroup() = default;

Collective* CpuCollectiveGroup::member(int rank) const {
  return members_.at(static_cast<size_t>(rank)).get();
}

bool CpuCollectiveGroup::Arrive(absl::Time deadline) {
  if (broken_) {
    return false;
  }
  const uint64_t generation = generation_;
  if (++arrived_ == world_size()) {
    arrived_ = 0;
    ++generation_;
    all_arrived_.SignalAll();
    return true;
  }
  while (generation_ == generation && !broken_) {
    if (all_arrived_.WaitWithDeadline(&mu_, deadline) && generation_ == generation) {
      broken_ = true;
      all_arrived_.SignalAll();
    }
  }
  return generation_ != generation;
}

template <typename T>
absl::Status CpuCollectiveGroup::Run(int rank, Op op, absl::Span<const T> send, absl::Span<T> out) {
  const size_t n = members_.size();
  const size_t expected_out = op == Op::kGather ? send.size() * n : send.size();
  const absl::Time deadline = absl::Now() + options_.timeout;
  const auto timed_out = [&] {
    return absl::DeadlineExceededError(absl::StrCat(
        "CpuCollectiveGroup: rank ", rank, " waited ", absl::FormatDuration(options_.timeout),
        " for the other ranks (or the group was broken by an earlier timeout)"));
  };
  {
    absl::MutexLock lock(&mu_);
    slots_[rank] =
        Slot{op, std::is_same_v<T, double>, send.data(), send.size(), out.size() == expected_out};
    if (!Arrive(deadline)) {
      return timed_out();
    }
  }
  // Between the two barriers every slot and every rank's send buffer are
  // read-only, so all ranks read them without the lock.
  absl::Status status;
  for (size_t r = 0; r < n && status.ok(); ++r) {
    const Slot& s = slots_[r];
    if (s.op != op || s.is_double != std::is_same_v<T, double> || s.size != send.size()) {
      status = absl::InvalidArgumentError(absl::StrCat(
          "CpuCollectiveGroup: ranks disagree on the call: rank ", rank, " has ", send.size(),
          " values, rank ", r, " has ", s.size, " (or another operation or type)"));
    } else if (!s.out_size_ok) {
      status = absl::InvalidArgumentError(
          absl::StrCat("CpuCollectiveGroup: rank ", r, " passed an output of the wrong size (want ",
                       op == Op::kGather ? s.size * n : s.size, ")"));
    }
  }
  std::vector<T> result;
  if (status.ok()) {
    result.resize(expected_out);
    for (size_t r = 0; r < n; ++r) {
      const T* in = static_cast<const T*>(slots_[r].data);
      for (size_t i = 0; i < send.size(); ++i) {
        switch (op) {
          case Op::kSum:
            result[i] = r == 0 ? in[i] : result[i] + in[i];
            break;
          case Op::kMax:
            // NaN wins, as a poisoned value must not vanish in a maximum.
            result[i] = r == 0 || std::isnan(in[i]) || in[i] > result[i] ? in[i] : result[i];
            break;
          case Op::kGather:
            result[r * send.size() + i] = in[i];
            break;
        }
      }
    }
  }
  {
    absl::MutexLock lock(&mu_);
    if (!Arrive(deadline)) {
      return timed_out();
    }
  }
  if (!status.ok()) {
    return status;
  }
  std::copy(result.begin(), result.end(), out.begin());
  return absl::OkStatus();
}

}  // namespace entrowatch::client
