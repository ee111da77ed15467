// The CUDA kernels (src/compute/cuda/*.cu) on the emulated device against a
// float64 reference, in every thread order, plus the emulator's own checks:
// barrier misuse and deadlocks are fatal, shared memory starts poisoned,
// misaligned vector loads are fatal, stream work waits for a synchronize.

#include <sys/mman.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "common/half.h"
#include "compute/cuda/kernels.cuh"
#include "compute/entropy_math.h"
#include "gtest/gtest.h"
#include "mma.h"

namespace entrowatch::compute {
namespace {

using cuda::ElementType;

constexpr float kInf = std::numeric_limits<float>::infinity();

// Checks made against the reference, printed at exit.
long g_checks = 0;

class CountChecks : public ::testing::Environment {
 public:
  void TearDown() override {
    std::printf("emulated checks against float64: %ld (launches %ld, blocks %ld)\n", g_checks,
                emu::S().launches, emu::S().blocks);
  }
};
const auto* const g_count_checks = ::testing::AddGlobalTestEnvironment(new CountChecks);

// Device memory whose last byte touches an inaccessible page, so that a read
// past the end faults; starts as garbage. 16-byte aligned.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) {
    const size_t page = 4096;
    const size_t body = ((bytes + 15) / 16 * 16 + page - 1) / page * page;
    size_ = body + page;
    base_ = static_cast<uint8_t*>(
        mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (base_ == MAP_FAILED) std::abort();
    mprotect(base_ + body, page, PROT_NONE);
    data_ = base_ + body - (bytes + 15) / 16 * 16;
    std::memset(data_, 0xCD, (bytes + 15) / 16 * 16);
  }
  ~DeviceBuffer() { munmap(base_, size_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  template <typename T = uint8_t>
  T* get() const {
    return reinterpret_cast<T*>(data_);
  }

 private:
  uint8_t* base_;
  uint8_t* data_;
  size_t size_;
};

size_t ElementBytes(ElementType t) { return t == ElementType::kFloat32 ? 4 : 2; }

void StoreElement(ElementType t, void* base, int64_t i, float v) {
  auto* p = static_cast<uint8_t*>(base);
  if (t == ElementType::kFloat32) {
    std::memcpy(p + 4 * i, &v, 4);
    return;
  }
  const uint16_t h =
      t == ElementType::kFloat16 ? common::FloatToHalf(v) : common::FloatToBFloat16(v);
  std::memcpy(p + 2 * i, &h, 2);
}

float LoadElement(ElementType t, const void* base, int64_t i) {
  const auto* p = static_cast<const uint8_t*>(base);
  if (t == ElementType::kFloat32) {
    float f;
    std::memcpy(&f, p + 4 * i, 4);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, p + 2 * i, 2);
  return t == ElementType::kFloat16 ? common::HalfToFloat(h) : common::BFloat16ToFloat(h);
}

const char* TypeName(ElementType t) {
  return t == ElementType::kFloat32 ? "f32" : t == ElementType::kFloat16 ? "f16" : "bf16";
}

// ---- token entropy ---------------------------------------------------------

struct RefRow {
  int32_t status = cuda::kRowOk;
  double entropy = 0, normalized = 0, top1 = 0, surprisal = 0;
};

// Float64, straight from entropy_math.h's definitions (as the reference
// engine computes it).
RefRow ReferenceRow(ElementType t, const void* row, int64_t valid, float temperature,
                    int32_t target) {
  const double scale2 = Log2Scale(1.0 / static_cast<double>(temperature));
  RefRow out;
  EntropyAccumulator<double> acc;
  for (int64_t c = 0; c < valid; ++c) {
    const float z = LoadElement(t, row, c);
    if (std::isnan(z) || z == kInf) {
      out.status = cuda::kRowNonFinite;
      return out;
    }
    AccumulateOne(acc, static_cast<double>(z), scale2);
  }
  if (acc.d == 0) {
    out.status = cuda::kRowAllMasked;
    return out;
  }
  const EntropyStats stats = Finalize(acc, valid);
  out.entropy = stats.entropy;
  out.normalized = stats.normalized;
  out.top1 = stats.top1_prob;
  if (target >= 0) {
    out.surprisal = Surprisal(acc, static_cast<double>(LoadElement(t, row, target)), scale2);
  }
  return out;
}

enum Pattern {
  kNormal,
  kPeaked,
  kFlat,
  kNanLate,
  kInfMiddle,
  kAllMasked,
  kMaskedTarget,
  kHuge,
  kOneHot,
  kPatterns
};

float PatternValue(Pattern p, ElementType t, int64_t c, int64_t valid, std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.0f, p == kPeaked ? 30.0f : 3.0f);
  const float huge = t == ElementType::kFloat32   ? 3e38f
                     : t == ElementType::kFloat16 ? 65504.0f
                                                  : 3e38f;
  switch (p) {
    case kNormal:
    case kPeaked:
      return normal(rng);
    case kFlat:
      return 1e4f;
    case kNanLate:
      return c == valid - 1 - valid / 9 ? std::nanf("") : normal(rng);
    case kInfMiddle:
      return c == valid / 2 ? kInf : normal(rng);
    case kAllMasked:
      return -kInf;
    case kMaskedTarget:
      return c % 3 == 0 ? -kInf : normal(rng);
    case kHuge:
      return c % 5 == 1 ? huge : (c % 5 == 2 ? -huge : normal(rng));
    case kOneHot:
      return c == valid / 3 ? 100.0f : (c % 2 ? -kInf : -100.0f);
    case kPatterns:
      break;
  }
  return 0;
}

struct TokenCase {
  ElementType type;
  int64_t rows, cols, valid;
  float temperature;
  int splits;
  bool targets;
  uint64_t seed;
};

std::string Describe(const TokenCase& c) {
  return std::string(TypeName(c.type)) + " rows " + std::to_string(c.rows) + " cols " +
         std::to_string(c.cols) + " valid " + std::to_string(c.valid) + " T " +
         std::to_string(c.temperature) + " splits " + std::to_string(c.splits) + " seed " +
         std::to_string(c.seed);
}

void Near(double got, double want, double rel, const std::string& what) {
  ++g_checks;
  if (std::isinf(want)) {
    EXPECT_EQ(got, want) << what;
    return;
  }
  EXPECT_NEAR(got, want, rel * std::max(1.0, std::fabs(want))) << what;
}

// Launches the token kernels on `logits` (device memory, rows x cols) and
// compares every row with the float64 reference.
void CheckTokenRows(const TokenCase& c, const uint8_t* logits, const std::vector<int32_t>& targets,
                    int64_t row_stride_bytes) {
  DeviceBuffer d_targets(std::max<size_t>(1, c.rows * sizeof(int32_t)));
  if (c.targets) std::memcpy(d_targets.get(), targets.data(), c.rows * sizeof(int32_t));
  DeviceBuffer partials(c.rows * c.splits * sizeof(cuda::DevicePartial));
  DeviceBuffer out(c.rows * sizeof(cuda::DeviceRow));
  std::memset(out.get(), 0xff, c.rows * sizeof(cuda::DeviceRow));
  const float scale2 = Log2Scale(1.0f / c.temperature);
  const cudaError_t error = cuda::LaunchTokenEntropy(
      c.type, logits, c.rows, c.cols, c.valid, scale2,
      c.targets ? d_targets.get<int32_t>() : nullptr, c.splits, partials.get<cuda::DevicePartial>(),
      out.get<cuda::DeviceRow>(), nullptr);
  ASSERT_EQ(error, cudaSuccess) << Describe(c);
  const auto* rows = out.get<cuda::DeviceRow>();
  for (int64_t r = 0; r < c.rows; ++r) {
    const RefRow want = ReferenceRow(c.type, logits + r * row_stride_bytes, c.valid, c.temperature,
                                     c.targets ? targets[r] : -1);
    const std::string where = Describe(c) + " row " + std::to_string(r);
    ++g_checks;
    ASSERT_EQ(rows[r].status, want.status) << where;
    if (want.status != cuda::kRowOk) continue;
    Near(rows[r].entropy, want.entropy, 1e-5, where + " entropy");
    Near(rows[r].normalized, want.normalized, 1e-5, where + " normalized");
    Near(rows[r].top1_prob, want.top1, 1e-5, where + " top1");
    if (c.targets) Near(rows[r].surprisal, want.surprisal, 1e-5, where + " surprisal");
  }
}

void RunTokenCase(const TokenCase& c) {
  std::mt19937_64 rng(c.seed);
  const size_t esize = ElementBytes(c.type);
  DeviceBuffer logits(c.rows * c.cols * esize);
  std::vector<int32_t> targets(c.rows);
  for (int64_t r = 0; r < c.rows; ++r) {
    const auto pattern = static_cast<Pattern>((c.seed + r) % kPatterns);
    void* row = logits.get() + r * c.cols * esize;
    for (int64_t col = 0; col < c.valid; ++col) {
      StoreElement(c.type, row, col, PatternValue(pattern, c.type, col, c.valid, rng));
    }
    // Padding columns hold values that would poison a row if read.
    for (int64_t col = c.valid; col < c.cols; ++col) {
      StoreElement(c.type, row, col, col % 2 ? std::nanf("") : kInf);
    }
    std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(c.valid) - 1);
    targets[r] = pick(rng);
    if (pattern == kMaskedTarget) targets[r] = 0;  // column 0 is -inf
  }
  CheckTokenRows(c, logits.get(), targets, c.cols * static_cast<int64_t>(esize));
}

class TokenKernelTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override { emu::SetOrder(GetParam()); }
  void TearDown() override { emu::SetOrder(0); }
};

// Odd and aligned vocabularies, rows that start misaligned (cols not a
// multiple of the vector), one to three rows, forced and computed
// split-vocab chunks, temperatures 1e-3 .. 50, every row pattern.
TEST_P(TokenKernelTest, SweepAgainstFloat64) {
  uint64_t seed = 100 * GetParam();
  const float temperatures[] = {1e-3f, 0.7f, 1.0f, 50.0f};
  for (ElementType type : {ElementType::kFloat32, ElementType::kFloat16, ElementType::kBFloat16}) {
    for (int64_t valid : {1, 2, 7, 8, 9, 17, 255, 4099, 40000}) {
      for (int64_t pad : {0, 3}) {
        for (int64_t rows : {1, 2, 3}) {
          const int64_t cols = valid + pad;
          for (int splits : {1, 3, cuda::TokenSplits(rows, cols, 132)}) {
            TokenCase c{type,   rows,          cols, valid, temperatures[seed % 4],
                        splits, seed % 3 != 0, seed};
            ++seed;
            SCOPED_TRACE(Describe(c));
            RunTokenCase(c);
            if (HasFatalFailure()) return;
          }
        }
      }
    }
  }
}

// The vocabularies of real models, split into chunks that start and end
// mid-vector, with a NaN or +Inf in a later chunk on some rows.
TEST_P(TokenKernelTest, ModelVocabularies) {
  uint64_t seed = 7 + GetParam();
  for (ElementType type : {ElementType::kFloat32, ElementType::kBFloat16}) {
    for (int64_t valid : {100003, 152063, 152064}) {
      for (int64_t rows : {1, 3}) {
        const int64_t cols = valid + (valid % 2);
        const int splits = cuda::TokenSplits(rows, cols, 132);
        ASSERT_GT(splits, 1);
        TokenCase c{type, rows, cols, valid, 1.0f, splits, true, seed};
        seed += 3;
        SCOPED_TRACE(Describe(c));
        RunTokenCase(c);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Orders, TokenKernelTest, ::testing::Values(0, 1, 2),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return std::string(info.param == 0   ? "forward"
                                              : info.param == 1 ? "reverse"
                                                                : "random");
                         });

// rows x cols beyond 2^31 elements (and 2^32 bytes): the kernels' row
// offsets must be 64-bit. Only the first columns of each row are valid and
// touched; the rest of the reservation is never backed by memory.
TEST(TokenKernelIndexTest, RowOffsetsBeyond32Bits) {
  const int64_t rows = 3;
  const int64_t cols = (int64_t{1} << 30) + 3;  // bf16: 2 GiB + 6 bytes per row
  const int64_t valid = 5000;
  const size_t bytes = static_cast<size_t>(rows * cols * 2);
  ASSERT_GT(rows * cols, int64_t{1} << 31);
  void* reserved = mmap(nullptr, bytes + 4096, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (reserved == MAP_FAILED) {
    GTEST_SKIP() << "cannot reserve " << bytes << " bytes of address space";
  }
  auto* logits = static_cast<uint8_t*>(reserved);
  std::mt19937_64 rng(5);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<int32_t> targets;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < valid; ++c) {
      StoreElement(ElementType::kBFloat16, logits + r * cols * 2, c, normal(rng) + 0.001f * r);
    }
    targets.push_back(static_cast<int32_t>(valid - 1 - r));
  }
  TokenCase c{ElementType::kBFloat16, rows, cols, valid, 1.0f, 2, true, 0};
  CheckTokenRows(c, logits, targets, cols * 2);
  munmap(reserved, bytes + 4096);
}

// ---- attention entropy -----------------------------------------------------

struct AttentionCase {
  ElementType type;
  int64_t heads, kv_heads, nq, nk, d;
  bool causal;
  float q_scale;  // 0: flat scores; large: peaked
  uint64_t seed;
  float scale = 0;  // 0: 1 / sqrt(d)
};

std::string Describe(const AttentionCase& c) {
  return std::string(TypeName(c.type)) + " heads " + std::to_string(c.heads) + "/" +
         std::to_string(c.kv_heads) + " nq " + std::to_string(c.nq) + " nk " +
         std::to_string(c.nk) + " d " + std::to_string(c.d) + (c.causal ? " causal" : "") +
         " q_scale " + std::to_string(c.q_scale) + " scale " + std::to_string(c.scale);
}

void RunAttentionCase(const AttentionCase& c) {
  std::mt19937_64 rng(c.seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const size_t esize = ElementBytes(c.type);
  const int64_t q_count = c.heads * c.nq * c.d;
  const int64_t k_count = c.kv_heads * c.nk * c.d;
  DeviceBuffer q(q_count * esize), k(k_count * esize);
  for (int64_t i = 0; i < q_count; ++i) StoreElement(c.type, q.get(), i, c.q_scale * normal(rng));
  for (int64_t i = 0; i < k_count; ++i) StoreElement(c.type, k.get(), i, normal(rng));
  const int64_t outputs = c.heads * c.nq;
  DeviceBuffer shannon(outputs * 4), renyi2(outputs * 4), row_max(outputs * 4);
  for (DeviceBuffer* b : {&shannon, &renyi2, &row_max}) std::memset(b->get(), 0xff, outputs * 4);
  const float scale = c.scale != 0 ? c.scale : 1.0f / std::sqrt(static_cast<float>(c.d));
  const cudaError_t error = cuda::LaunchAttentionEntropy(
      c.type, q.get(), k.get(), c.heads, c.kv_heads, c.nq, c.nk, c.d, c.causal, scale,
      shannon.get<float>(), renyi2.get<float>(), row_max.get<float>(), nullptr);
  ASSERT_EQ(error, cudaSuccess) << Describe(c);
  // Float64 reference from the stored (rounded) inputs.
  std::vector<double> qd(q_count), kd(k_count);
  for (int64_t i = 0; i < q_count; ++i) qd[i] = LoadElement(c.type, q.get(), i);
  for (int64_t i = 0; i < k_count; ++i) kd[i] = LoadElement(c.type, k.get(), i);
  const int64_t group = c.heads / c.kv_heads;
  int failures = 0;
  for (int64_t h = 0; h < c.heads && failures < 10; ++h) {
    for (int64_t i = 0; i < c.nq && failures < 10; ++i) {
      const int64_t keys = c.causal ? c.nk - c.nq + i + 1 : c.nk;
      AttentionAccumulator<double> acc;
      double max_score = -INFINITY;
      double magnitude = 0;  // sum |q_c k_c| bounds the float rounding of a score
      for (int64_t j = 0; j < keys; ++j) {
        double dot = 0, abs_dot = 0;
        for (int64_t x = 0; x < c.d; ++x) {
          const double p = qd[(h * c.nq + i) * c.d + x] * kd[((h / group) * c.nk + j) * c.d + x];
          dot += p;
          abs_dot += std::fabs(p);
        }
        const double score = static_cast<double>(scale) * dot;
        AccumulateOne(acc, score);
        if (score > max_score) {
          max_score = score;
          magnitude = std::fabs(static_cast<double>(scale)) * abs_dot;
        }
      }
      const AttentionStats want = FinalizeAttention(acc, keys);
      const int64_t o = h * c.nq + i;
      const std::string where =
          Describe(c) + " head " + std::to_string(h) + " query " + std::to_string(i);
      g_checks += 3;
      const double got_h = shannon.get<float>()[o];
      const double got_h2 = renyi2.get<float>()[o];
      const double got_max = row_max.get<float>()[o];
      const bool ok = std::fabs(got_h - want.shannon) <= 2e-5 * std::max(1.0, want.shannon) &&
                      std::fabs(got_h2 - want.renyi2) <= 2e-5 * std::max(1.0, want.renyi2) &&
                      std::fabs(got_max - max_score) <= 1e-6 * std::max(1.0, magnitude) + 1e-6;
      if (!ok) {
        ++failures;
        ADD_FAILURE() << where << ": shannon " << got_h << " want " << want.shannon << ", renyi2 "
                      << got_h2 << " want " << want.renyi2 << ", max " << got_max << " want "
                      << max_score;
      }
    }
  }
}

class AttentionKernelTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override { emu::SetOrder(GetParam()); }
  void TearDown() override { emu::SetOrder(0); }
};

// Every head dimension the issue lists, every dtype, causal with nq < nk,
// GQA, partial query and key tiles, flat and peaked scores.
TEST_P(AttentionKernelTest, HeadDimsAndShapes) {
  uint64_t seed = 1000 + GetParam();
  for (ElementType type : {ElementType::kFloat32, ElementType::kFloat16, ElementType::kBFloat16}) {
    for (int64_t d : {1, 3, 64, 80, 96, 128, 256}) {
      RunAttentionCase({type, 4, 2, 37, 70, d, true, 1.0f, seed++});
      RunAttentionCase({type, 2, 1, 5, 131, d, true, 1.0f, seed++});
      RunAttentionCase({type, 2, 2, 66, 66, d, false, 1.0f, seed++});
      if (HasFailure()) return;
    }
  }
}

TEST_P(AttentionKernelTest, PeakedAndFlatScores) {
  uint64_t seed = 2000 + GetParam();
  for (ElementType type : {ElementType::kFloat32, ElementType::kFloat16, ElementType::kBFloat16}) {
    for (float q_scale : {0.0f, 8.0f}) {
      RunAttentionCase({type, 3, 1, 70, 129, 64, true, q_scale, seed++});
      RunAttentionCase({type, 2, 2, 17, 65, 96, false, q_scale, seed++});
    }
  }
}

// A negative scale (the tensor-core kernel negates Q instead) and a large
// one; both head-dim paths (16-byte and element copies).
TEST_P(AttentionKernelTest, NegativeAndLargeScales) {
  uint64_t seed = 3000 + GetParam();
  for (ElementType type : {ElementType::kFloat32, ElementType::kFloat16, ElementType::kBFloat16}) {
    for (int64_t d : {3, 64}) {
      for (float scale : {-0.5f, 3.0f}) {
        AttentionCase c{type, 2, 1, 40, 90, d, true, 1.0f, seed++};
        c.scale = scale;
        RunAttentionCase(c);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Orders, AttentionKernelTest, ::testing::Values(0, 1, 2),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return std::string(info.param == 0   ? "forward"
                                              : info.param == 1 ? "reverse"
                                                                : "random");
                         });

// Long sequences (many key tiles, causal tiles skipped) once, random order.
TEST(AttentionKernelLongTest, SequencesOf1024) {
  emu::SetOrder(2);
  RunAttentionCase({ElementType::kBFloat16, 2, 1, 1024, 1024, 128, true, 1.0f, 31});
  RunAttentionCase({ElementType::kFloat16, 2, 2, 100, 1100, 64, true, 1.0f, 32});
  RunAttentionCase({ElementType::kFloat32, 1, 1, 1024, 1024, 64, true, 1.0f, 33});
  emu::SetOrder(0);
}

// ---- the emulator's own checks ---------------------------------------------

__global__ void BarrierInDivergentCode(int* out) {
  if (threadIdx.x < 16) {
    __syncthreads();
  }
  out[threadIdx.x] = 1;
}

__global__ void BarriersAtDifferentCalls(int* out) {
  if (threadIdx.x % 2) {
    out[threadIdx.x] = 1;
    __syncthreads();
    out[threadIdx.x] += 10;
  } else {
    __syncthreads();
    out[threadIdx.x] = 2;
  }
}

__global__ void WarpBarrierAgainstBlockBarrier(int* out) {
  if (threadIdx.x == 0) {
    __syncwarp();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1;
}

__global__ void MisalignedVectorLoad(const uint8_t* in, float* out) {
  const float4 v = __ldg(reinterpret_cast<const float4*>(in + 4));
  out[threadIdx.x] = v.x;
}

// Thread t writes slot t, then reads slot t + 1 without a barrier.
__global__ void MissingBarrier(int* out) {
  int* slots = emu::DynShared<int>();  // extern __shared__ int slots[];
  slots[threadIdx.x] = static_cast<int>(threadIdx.x);
  const unsigned next = (threadIdx.x + 1) % blockDim.x;
  out[threadIdx.x] = slots[next];
}

__global__ void ReadsSharedBeforeWriting(unsigned* out) {
  unsigned* words = emu::DynShared<unsigned>();
  out[threadIdx.x] = words[threadIdx.x];
}

namespace wmma = nvcuda::wmma;
using HalfA = wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major>;

// Half the warp leaves before a warp-collective WMMA load.
__global__ void WmmaFromAPartialWarp(const __half* tile) {
  if (threadIdx.x >= 16) {
    return;
  }
  HalfA a;
  wmma::load_matrix_sync(a, tile, 16);
}

// Lanes pass different pointers to one collective load.
__global__ void WmmaWithDivergentPointers(const __half* tile) {
  HalfA a;
  wmma::load_matrix_sync(a, tile + (threadIdx.x % 2) * 256, 16);
}

// A 16 x 16 x 16 product through fragments spread over the lanes.
__global__ void WmmaProduct(const __half* a_tile, const __half* b_tile, float* out) {
  HalfA a;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> b;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> c;
  wmma::fill_fragment(c, 1.0f);
  wmma::load_matrix_sync(a, a_tile, 16);
  wmma::load_matrix_sync(b, b_tile, 16);
  wmma::mma_sync(c, a, b, c);
  wmma::store_matrix_sync(out, c, 16, wmma::mem_row_major);
}

// Lane l sends l * 10 to lane l ^ 3.
__global__ void ShuffleXor(int* out) {
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, static_cast<int>(threadIdx.x) * 10, 3);
}

template <typename K, typename... A>
void LaunchOne(K kernel, unsigned threads, size_t smem, A... args) {
  kernel* emu::Config(1, threads, smem, nullptr) * emu::Args(args...);
}

using EmulatorDeathTest = ::testing::Test;

TEST(EmulatorDeathTest, BarrierUnderDivergenceIsFatal) {
  std::vector<int> out(64);
  EXPECT_EXIT(LaunchOne(BarrierInDivergentCode, 64, 0, out.data()), ::testing::ExitedWithCode(86),
              "EMU FATAL: __syncthreads reached by a block with");
  EXPECT_EXIT(LaunchOne(BarriersAtDifferentCalls, 64, 0, out.data()), ::testing::ExitedWithCode(86),
              "EMU FATAL: threads of a block at different");
}

TEST(EmulatorDeathTest, DeadlockIsFatal) {
  std::vector<int> out(64);
  EXPECT_EXIT(LaunchOne(WarpBarrierAgainstBlockBarrier, 64, 0, out.data()),
              ::testing::ExitedWithCode(86), "EMU FATAL: deadlock");
}

TEST(EmulatorDeathTest, MisalignedVectorLoadIsFatal) {
  std::vector<float> out(32);
  alignas(16) uint8_t in[64] = {};
  EXPECT_EXIT(LaunchOne(MisalignedVectorLoad, 32, 0, in, out.data()), ::testing::ExitedWithCode(86),
              "EMU FATAL: misaligned vector load");
}

TEST(EmulatorDeathTest, WmmaMisuseIsFatal) {
  alignas(32) __half tile[512] = {};
  EXPECT_EXIT(LaunchOne(WmmaFromAPartialWarp, 32, 0, static_cast<const __half*>(tile)),
              ::testing::ExitedWithCode(86), "EMU FATAL: warp-collective operation in a warp");
  EXPECT_EXIT(LaunchOne(WmmaWithDivergentPointers, 32, 0, static_cast<const __half*>(tile)),
              ::testing::ExitedWithCode(86), "EMU FATAL: wmma: lanes of a warp passed different");
  EXPECT_EXIT(LaunchOne(WmmaWithDivergentPointers, 32, 0, static_cast<const __half*>(tile + 1)),
              ::testing::ExitedWithCode(86), "EMU FATAL: wmma: pointer not 32-byte aligned");
}

TEST(EmulatorTest, WmmaProductMatchesFloat64) {
  alignas(32) __half a[256], b[256];
  alignas(32) float out[256];
  std::mt19937_64 rng(3);
  std::uniform_int_distribution<int> small(-8, 8);
  for (int i = 0; i < 256; ++i) {
    a[i].bits = common::FloatToHalf(small(rng) * 0.25f);
    b[i].bits = common::FloatToHalf(small(rng) * 0.5f);
  }
  LaunchOne(WmmaProduct, 32, 0, static_cast<const __half*>(a), static_cast<const __half*>(b),
            static_cast<float*>(out));
  for (int r = 0; r < 16; ++r) {
    for (int c = 0; c < 16; ++c) {
      double want = 1.0;  // the filled accumulator
      for (int k = 0; k < 16; ++k) {
        // a row-major [r][k]; b column-major: element (k, c) at c * 16 + k.
        want += static_cast<double>(common::HalfToFloat(a[r * 16 + k].bits)) *
                common::HalfToFloat(b[c * 16 + k].bits);
      }
      EXPECT_EQ(out[r * 16 + c], want) << r << "," << c;  // exact: small dyadic values
    }
  }
}

TEST(EmulatorTest, ShuffleXorExchangesLanes) {
  std::vector<int> out(64, -1);
  LaunchOne(ShuffleXor, 64, 0, out.data());
  for (int t = 0; t < 64; ++t) EXPECT_EQ(out[t], ((t % 32) ^ 3) * 10 + (t / 32) * 320) << t;
}

TEST(EmulatorTest, ThreadOrdersExposeAMissingBarrier) {
  int wrong[3] = {};
  for (int order = 0; order < 3; ++order) {
    emu::SetOrder(order);
    std::vector<int> out(64, -1);
    LaunchOne(MissingBarrier, 64, 64 * sizeof(int), out.data());
    for (int t = 0; t < 64; ++t) wrong[order] += out[t] != (t + 1) % 64;
  }
  emu::SetOrder(0);
  // Forward order: each thread reads its successor's slot before the
  // successor ran; reverse order: after. Random: some of each.
  EXPECT_EQ(wrong[0], 63);
  EXPECT_EQ(wrong[1], 1);
  EXPECT_GT(wrong[2], 0);
}

TEST(EmulatorTest, SharedMemoryStartsPoisoned) {
  std::vector<unsigned> out(32, 0);
  LaunchOne(ReadsSharedBeforeWriting, 32, 32 * sizeof(unsigned), out.data());
  for (unsigned v : out) EXPECT_EQ(v, 0xA5A5A5A5u);
}

TEST(EmulatorTest, StreamWorkWaitsForSynchronize) {
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  int source = 42, target = 0;
  ASSERT_EQ(cudaMemcpyAsync(&target, &source, sizeof(int), cudaMemcpyDeviceToHost, stream),
            cudaSuccess);
  std::vector<int> out(32, -1);
  MissingBarrier* emu::Config(1, 32, 32 * sizeof(int), stream) * emu::Args(out.data());
  EXPECT_EQ(target, 0);  // nothing ran yet
  EXPECT_EQ(out[0], -1);
  cudaEvent_t event;
  ASSERT_EQ(cudaEventCreate(&event), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(event, stream), cudaSuccess);
  ASSERT_EQ(cudaEventSynchronize(event), cudaSuccess);
  EXPECT_EQ(target, 42);
  EXPECT_NE(out[0], -1);
  cudaEventDestroy(event);
  cudaStreamDestroy(stream);
}

TEST(EmulatorTest, LaunchLimitsAreChecked) {
  std::vector<int> out(64);
  LaunchOne(MissingBarrier, 64, 64 * 1024, out.data());  // above 48 KiB without opt-in
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  LaunchOne(MissingBarrier, 2048, 0, out.data());
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

}  // namespace
}  // namespace entrowatch::compute
