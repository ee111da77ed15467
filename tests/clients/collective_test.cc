#include "entrowatch/client/collective.h"

#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace entrowatch::client {
namespace {

using ::testing::HasSubstr;

// Runs body(rank) on one thread per rank of `group` and waits for all.
void OnEveryRank(const CpuCollectiveGroup& group, const std::function<void(int)>& body) {
  std::vector<std::thread> threads;
  for (int r = 0; r < group.world_size(); ++r) {
    threads.emplace_back(body, r);
  }
  for (std::thread& t : threads) {
    t.join();
  }
}

std::unique_ptr<CpuCollectiveGroup> MakeGroup(int world_size,
                                              absl::Duration timeout = absl::Seconds(20)) {
  CpuCollectiveOptions options;
  options.timeout = timeout;
  return CpuCollectiveGroup::Create(world_size, options).value();
}

TEST(CpuCollectiveTest, SumMaxAndGatherMatchASerialReferenceOnEveryRank) {
  constexpr int kRanks = 4;
  constexpr size_t kSize = 37;
  auto group = MakeGroup(kRanks);
  // Values that make float addition order visible (1e16 + 1 - 1e16).
  auto value = [](int rank, size_t i) {
    return rank == 0 ? 1e16 : (rank == 1 ? 1.0 + i : (rank == 2 ? -1e16 : 0.25 * i - rank));
  };
  std::vector<double> want_sum(kSize, 0.0);
  std::vector<double> want_max(kSize, -std::numeric_limits<double>::infinity());
  for (int r = 0; r < kRanks; ++r) {
    for (size_t i = 0; i < kSize; ++i) {
      want_sum[i] += value(r, i);  // rank order, as the group promises
      want_max[i] = std::max(want_max[i], value(r, i));
    }
  }
  std::vector<std::vector<double>> sums(kRanks), maxima(kRanks), gathered(kRanks);
  std::vector<std::vector<float>> float_sums(kRanks);
  OnEveryRank(*group, [&](int r) {
    Collective* c = group->member(r);
    ASSERT_EQ(c->rank(), r);
    ASSERT_EQ(c->world_size(), kRanks);
    for (int round = 0; round < 3; ++round) {  // the group is reusable
      sums[r].assign(kSize, 0);
      for (size_t i = 0; i < kSize; ++i) {
        sums[r][i] = value(r, i);
      }
      maxima[r] = sums[r];
      float_sums[r].assign(kSize, static_cast<float>(r + 1));
      gathered[r].assign(kSize * kRanks, -1);
      ASSERT_TRUE(c->AllReduceSum(absl::MakeSpan(sums[r])).ok());
      ASSERT_TRUE(c->AllReduceMax(absl::MakeSpan(maxima[r])).ok());
      ASSERT_TRUE(c->AllReduceSum(absl::MakeSpan(float_sums[r])).ok());
      std::vector<double> own(kSize);
      for (size_t i = 0; i < kSize; ++i) {
        own[i] = 1000.0 * r + i;
      }
      ASSERT_TRUE(c->AllGather(own, absl::MakeSpan(gathered[r])).ok());
    }
  });
  for (int r = 0; r < kRanks; ++r) {
    EXPECT_EQ(sums[r], want_sum) << "rank " << r;  // bit-identical, not merely close
    EXPECT_EQ(maxima[r], want_max) << "rank " << r;
    EXPECT_EQ(float_sums[r], std::vector<float>(kSize, 10.0f)) << "rank " << r;
    for (int from = 0; from < kRanks; ++from) {
      for (size_t i = 0; i < kSize; ++i) {
        ASSERT_EQ(gathered[r][from * kSize + i], 1000.0 * from + i);
      }
    }
  }
}

TEST(CpuCollectiveTest, MaxKeepsNaN) {
  auto group = MakeGroup(3);
  std::vector<std::vector<double>> values(3);
  OnEveryRank(*group, [&](int r) {
    values[r] = {r == 1 ? std::nan("") : 1.0 * r, 5.0 - r};
    ASSERT_TRUE(group->member(r)->AllReduceMax(absl::MakeSpan(values[r])).ok());
  });
  for (int r = 0; r < 3; ++r) {
    EXPECT_TRUE(std::isnan(values[r][0]));
    EXPECT_EQ(values[r][1], 5.0);
  }
}

TEST(CpuCollectiveTest, SizeDisagreementFailsOnEveryRankAndTheGroupGoesOn) {
  auto group = MakeGroup(3);
  std::vector<absl::Status> first(3), second(3);
  std::vector<std::vector<double>> values(3);
  OnEveryRank(*group, [&](int r) {
    std::vector<double> v(r == 2 ? 5 : 4, 1.0);
    first[r] = group->member(r)->AllReduceSum(absl::MakeSpan(v));
    values[r].assign(4, 1.0);
    second[r] = group->member(r)->AllReduceSum(absl::MakeSpan(values[r]));
  });
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(first[r].code(), absl::StatusCode::kInvalidArgument) << first[r];
    EXPECT_THAT(first[r].message(), HasSubstr("disagree"));
    EXPECT_TRUE(second[r].ok()) << second[r];
    EXPECT_EQ(values[r], std::vector<double>(4, 3.0));
  }
}

TEST(CpuCollectiveTest, GatherWithAWrongOutputSizeFailsOnEveryRank) {
  auto group = MakeGroup(2);
  std::vector<absl::Status> status(2);
  OnEveryRank(*group, [&](int r) {
    const std::vector<double> own(3, 1.0);
    std::vector<double> out(r == 0 ? 6 : 5);
    status[r] = group->member(r)->AllGather(own, absl::MakeSpan(out));
  });
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(status[r].code(), absl::StatusCode::kInvalidArgument) << status[r];
    EXPECT_THAT(status[r].message(), HasSubstr("rank 1 passed an output of the wrong size"));
  }
}

TEST(CpuCollectiveTest, AMissingRankTimesOutAndBreaksTheGroup) {
  auto group = MakeGroup(3, absl::Milliseconds(50));
  std::vector<absl::Status> status(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {  // rank 2 never calls
    threads.emplace_back([&, r] {
      std::vector<double> v(2, 1.0);
      status[r] = group->member(r)->AllReduceSum(absl::MakeSpan(v));
    });
  }
  for (std::thread& t : threads) {
    t.join();
  }
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(status[r].code(), absl::StatusCode::kDeadlineExceeded) << status[r];
  }
  std::vector<double> v(2, 1.0);
  const absl::Status late = group->member(2)->AllReduceSum(absl::MakeSpan(v));
  EXPECT_EQ(late.code(), absl::StatusCode::kDeadlineExceeded) << late;
  EXPECT_THAT(late.message(), HasSubstr("broken"));
}

TEST(CpuCollectiveTest, CreateRejectsBadArguments) {
  EXPECT_EQ(CpuCollectiveGroup::Create(0).status().code(), absl::StatusCode::kInvalidArgument);
  CpuCollectiveOptions options;
  options.timeout = absl::ZeroDuration();
  EXPECT_EQ(CpuCollectiveGroup::Create(2, options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace entrowatch::client
