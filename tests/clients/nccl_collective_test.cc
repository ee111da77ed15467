// The NCCL collective on the devices present (world size = device count, at
// least 1), checked against CpuCollectiveGroup on the same inputs. Skips
// without a CUDA device.

#include "entrowatch/client/nccl_collective.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cmath>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "entrowatch/client/collective.h"
#include "entrowatch/client/step_aggregator.h"
#include "gtest/gtest.h"

namespace entrowatch::client {
namespace {

int DeviceCount() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

// One NCCL communicator and stream per local device (ncclCommInitAll), and
// one thread per rank to drive them, since each call blocks until the
// collective completes.
class NcclCollectiveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const int devices = DeviceCount();
    if (devices == 0) {
      GTEST_SKIP() << "no CUDA device: the NCCL collective was compiled, not run";
    }
    world_size_ = std::min(devices, 8);
    comms_.resize(world_size_);
    streams_.resize(world_size_);
    std::vector<int> device_ids(world_size_);
    for (int d = 0; d < world_size_; ++d) {
      device_ids[d] = d;
    }
    ASSERT_EQ(ncclCommInitAll(comms_.data(), world_size_, device_ids.data()), ncclSuccess);
    for (int d = 0; d < world_size_; ++d) {
      ASSERT_EQ(cudaSetDevice(d), cudaSuccess);
      ASSERT_EQ(cudaStreamCreate(&streams_[d]), cudaSuccess);
      auto collective = NcclCollective::Create(comms_[d], streams_[d]);
      ASSERT_TRUE(collective.ok()) << collective.status();
      ASSERT_EQ((*collective)->rank(), d);
      ASSERT_EQ((*collective)->world_size(), world_size_);
      collectives_.push_back(*std::move(collective));
    }
    cpu_ = CpuCollectiveGroup::Create(world_size_).value();
    // Rank 0's aggregator needs a client; Aggregate() never enqueues on it,
    // so it never connects.
    StreamClientOptions client_options;
    client_options.target = "127.0.0.1:1";
    client_ = StreamClient::Create(client_options).value();
  }

  void TearDown() override {
    collectives_.clear();
    for (int d = 0; d < static_cast<int>(comms_.size()); ++d) {
      if (streams_[d] != nullptr) {
        cudaSetDevice(d);
        cudaStreamDestroy(streams_[d]);
      }
      if (comms_[d] != nullptr) {
        ncclCommDestroy(comms_[d]);
      }
    }
  }

  // Runs body(rank, nccl, cpu) on one thread per rank, its device current.
  template <typename Body>
  void OnEveryRank(const Body& body) {
    std::vector<std::thread> threads;
    for (int r = 0; r < world_size_; ++r) {
      threads.emplace_back([&, r] {
        ASSERT_EQ(cudaSetDevice(r), cudaSuccess);
        body(r, collectives_[r].get(), cpu_->member(r));
      });
    }
    for (std::thread& t : threads) {
      t.join();
    }
  }

  int world_size_ = 0;
  std::vector<ncclComm_t> comms_;
  std::vector<cudaStream_t> streams_;
  std::vector<std::unique_ptr<NcclCollective>> collectives_;
  std::unique_ptr<CpuCollectiveGroup> cpu_;
  std::unique_ptr<StreamClient> client_;
};

TEST_F(NcclCollectiveTest, MatchesTheCpuCollective) {
  constexpr size_t kSize = 2061;  // the aggregator's sum width with no attention
  OnEveryRank([&](int r, Collective* nccl, Collective* cpu) {
    std::vector<double> sums(kSize), maxima(kSize);
    std::vector<float> float_sums(kSize);
    for (size_t i = 0; i < kSize; ++i) {
      // Whole numbers: sums are exact in any order, so NCCL's order and the
      // CPU group's rank order agree bit for bit.
      sums[i] = static_cast<double>((i * 7 + r * 13) % 1000);
      maxima[i] = std::sin(static_cast<double>(i + 31 * r));
      float_sums[i] = static_cast<float>((i + r) % 64);
    }
    std::vector<double> cpu_sums = sums, cpu_maxima = maxima;
    std::vector<float> cpu_float_sums = float_sums;
    ASSERT_TRUE(nccl->AllReduceSum(absl::MakeSpan(sums)).ok());
    ASSERT_TRUE(nccl->AllReduceMax(absl::MakeSpan(maxima)).ok());
    ASSERT_TRUE(nccl->AllReduceSum(absl::MakeSpan(float_sums)).ok());
    ASSERT_TRUE(cpu->AllReduceSum(absl::MakeSpan(cpu_sums)).ok());
    ASSERT_TRUE(cpu->AllReduceMax(absl::MakeSpan(cpu_maxima)).ok());
    ASSERT_TRUE(cpu->AllReduceSum(absl::MakeSpan(cpu_float_sums)).ok());
    EXPECT_EQ(sums, cpu_sums) << "rank " << r;
    EXPECT_EQ(maxima, cpu_maxima) << "rank " << r;
    EXPECT_EQ(float_sums, cpu_float_sums) << "rank " << r;

    const std::vector<double> own = {1.0 * r, -2.5 * r, 1e300, std::nan("")};
    std::vector<double> gathered(own.size() * world_size_), cpu_gathered(gathered.size());
    ASSERT_TRUE(nccl->AllGather(own, absl::MakeSpan(gathered)).ok());
    ASSERT_TRUE(cpu->AllGather(own, absl::MakeSpan(cpu_gathered)).ok());
    for (size_t i = 0; i < gathered.size(); ++i) {
      if (std::isnan(cpu_gathered[i])) {
        EXPECT_TRUE(std::isnan(gathered[i]));
      } else {
        EXPECT_EQ(gathered[i], cpu_gathered[i]) << "rank " << r << " index " << i;
      }
    }
    std::vector<double> wrong(gathered.size() + 1);
    EXPECT_EQ(nccl->AllGather(own, absl::MakeSpan(wrong)).code(),
              absl::StatusCode::kInvalidArgument);
  });
}

TEST_F(NcclCollectiveTest, StepAggregatorGivesTheSameReportAsOverTheCpuCollective) {
  StepAggregatorOptions options;
  options.run_id = "nccl";
  options.vocab_size = 32000;
  options.attention_layers = 2;
  options.attention_heads = 3;
  std::vector<std::string> nccl_reports(world_size_), cpu_reports(world_size_);
  OnEveryRank([&](int r, Collective* nccl, Collective* cpu) {
    // Entropies that are multiples of 1/64: sums are exact in any order.
    std::vector<float> entropies;
    for (int i = 0; i < 500 + 100 * r; ++i) {
      entropies.push_back(static_cast<float>((i * 37 + r) % 640) / 64.0f);
    }
    const std::vector<float> heads = {0.5f, 1.25f + r, 2.0f};
    RankStepInput in;
    in.step = 7;
    in.token_entropies = entropies;
    in.attention.push_back(LayerAttentionInput{1, heads, 3.5f * r});
    in.grad_norm = 2.0;
    in.loss = 1.0 + r;
    StreamClient* client = r == 0 ? client_.get() : nullptr;
    auto on_nccl = StepAggregator::Create(nccl, options, client);
    auto on_cpu = StepAggregator::Create(cpu, options, client);
    ASSERT_TRUE(on_nccl.ok()) << on_nccl.status();
    ASSERT_TRUE(on_cpu.ok()) << on_cpu.status();
    absl::StatusOr<v1::Report> a = (*on_nccl)->Aggregate(in);
    absl::StatusOr<v1::Report> b = (*on_cpu)->Aggregate(in);
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_EQ(a->summary().entropy(0).count(),
              500u * world_size_ + 100u * world_size_ * (world_size_ - 1) / 2);
    nccl_reports[r] = a->SerializeAsString();
    cpu_reports[r] = b->SerializeAsString();
  });
  for (int r = 0; r < world_size_; ++r) {
    EXPECT_EQ(nccl_reports[r], cpu_reports[r]) << "rank " << r;
  }
}

}  // namespace
}  // namespace entrowatch::client
