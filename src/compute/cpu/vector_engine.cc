#include "compute/cpu/vector_engine.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "compute/cpu/vector_kernels.h"
#include "compute/entropy_math.h"
#include "compute/input_checks.h"
#include "compute/sampling_view.h"

namespace entrowatch::compute {
namespace {

// A chunk below this many columns costs more in scheduling than it saves.
constexpr int64_t kMinChunkColumns = 16384;
// Tasks per thread, so that uneven progress (other processes on the cores)
// evens out.
constexpr int64_t kTasksPerThread = 4;
constexpr int64_t kQueriesPerTask = 16;

void FinishRow(const LogitsInput& in, int64_t r, const ChunkPartial& partial,
               std::vector<double>& scratch, RowEntropy& out) {
  out = RowEntropy();
  if (partial.non_finite) {
    out.status = RowStatus::kNonFinite;
    return;
  }
  if (partial.acc.d == 0) {
    out.status = RowStatus::kAllMasked;
    return;
  }
  const float scale2 = Log2Scale(1.0f / in.temperature);
  const EntropyStats stats = Finalize(partial.acc, in.valid_vocab);
  out.entropy = stats.entropy;
  out.normalized = stats.normalized;
  out.top1_prob = stats.top1_prob;
  if (!in.target_ids.empty()) {
    const float z = common::LoadAsFloat(in.logits.dtype, in.logits.row(r), in.target_ids[r]);
    out.surprisal = Surprisal(partial.acc, z, scale2);
  }
  if (in.sampling()) {
    const SampledStats sampled = SamplingView(in, r, scratch);
    out.final_entropy = sampled.entropy;
    out.effective_vocab = sampled.effective_vocab;
    out.final_top1_prob = sampled.top1_prob;
  }
}

// Converts `count` elements to float.
std::vector<float> ToFloat(common::DType dtype, const void* data, int64_t count) {
  std::vector<float> out(count);
  if (dtype == common::DType::kFloat32) {
    std::copy_n(static_cast<const float*>(data), count, out.begin());
  } else {
    for (int64_t i = 0; i < count; ++i) {
      out[i] = common::LoadAsFloat(dtype, data, i);
    }
  }
  return out;
}

}  // namespace

VectorEngine::VectorEngine(int threads) : pool_(std::max(1, threads)) {}

absl::Status VectorEngine::TokenEntropy(const LogitsInput& in, absl::Span<RowEntropy> out) {
  RETURN_IF_ERROR(CheckLogitsInput(in, out.size()));
  const int64_t rows = in.logits.rows;
  if (rows == 0) {
    return absl::OkStatus();
  }
  const float scale2 = Log2Scale(1.0f / in.temperature);
  const int64_t wanted_tasks = kTasksPerThread * pool_.threads();
  if (rows >= pool_.threads()) {
    const int64_t tasks = std::min(rows, wanted_tasks);
    pool_.ParallelFor(tasks, [&](int64_t task) {
      const int64_t begin = rows * task / tasks;
      const int64_t end = rows * (task + 1) / tasks;
      std::vector<double> scratch;
      for (int64_t r = begin; r < end; ++r) {
        const ChunkPartial partial =
            AccumulateLogits(in.logits.dtype, in.logits.row(r), 0, in.valid_vocab, scale2);
        FinishRow(in, r, partial, scratch, out[r]);
      }
    });
    return absl::OkStatus();
  }
  // Few rows: split each row's vocabulary into chunks, merge in order.
  const int64_t chunks = std::max<int64_t>(
      1, std::min((wanted_tasks + rows - 1) / rows, in.valid_vocab / kMinChunkColumns));
  std::vector<ChunkPartial> partials(rows * chunks);
  pool_.ParallelFor(rows * chunks, [&](int64_t task) {
    const int64_t r = task / chunks;
    const int64_t c = task % chunks;
    // Chunk edges on multiples of 64 columns keep every chunk's loads whole.
    const int64_t begin = (in.valid_vocab * c / chunks) & ~int64_t{63};
    const int64_t end =
        c + 1 == chunks ? in.valid_vocab : (in.valid_vocab * (c + 1) / chunks) & ~int64_t{63};
    partials[task] = AccumulateLogits(in.logits.dtype, in.logits.row(r), begin, end, scale2);
  });
  pool_.ParallelFor(rows, [&](int64_t r) {
    ChunkPartial merged;
    for (int64_t c = 0; c < chunks; ++c) {
      const ChunkPartial& part = partials[r * chunks + c];
      merged.non_finite = merged.non_finite || part.non_finite;
      merged.acc = Merge(merged.acc, part.acc, scale2);
    }
    std::vector<double> scratch;
    FinishRow(in, r, merged, scratch, out[r]);
  });
  return absl::OkStatus();
}

absl::Status VectorEngine::AttentionEntropy(const AttentionInput& in, AttentionOutput* out) {
  RETURN_IF_ERROR(CheckAttentionInput(in));
  const int64_t d = in.head_dim;
  const std::vector<float> q = ToFloat(in.dtype, in.q, in.heads * in.nq * d);
  const std::vector<float> k = ToFloat(in.dtype, in.k, in.kv_heads * in.nk * d);
  for (const std::vector<float>* v : {&q, &k}) {
    for (size_t i = 0; i < v->size(); ++i) {
      if (!std::isfinite((*v)[i])) {
        return absl::InvalidArgumentError(
            absl::StrCat("attention ", v == &q ? "q" : "k", " element ", i, " is not finite"));
      }
    }
  }
  // Keys in blocks of kAttentionKeyBlock, each block transposed, so that one
  // vector holds the same dimension of consecutive keys and a query's pass
  // over a block reads it front to back.
  const int64_t blocks_per_head = (in.nk + kAttentionKeyBlock - 1) / kAttentionKeyBlock;
  const int64_t head_floats = blocks_per_head * d * kAttentionKeyBlock;
  std::vector<float> k_blocks(in.kv_heads * head_floats, 0.0f);
  for (int64_t g = 0; g < in.kv_heads; ++g) {
    for (int64_t j = 0; j < in.nk; ++j) {
      float* block =
          k_blocks.data() + g * head_floats + (j / kAttentionKeyBlock) * d * kAttentionKeyBlock;
      for (int64_t c = 0; c < d; ++c) {
        block[c * kAttentionKeyBlock + j % kAttentionKeyBlock] = k[(g * in.nk + j) * d + c];
      }
    }
  }
  const float scale = EffectiveScale(in);
  const int64_t group = in.heads / in.kv_heads;
  const int64_t blocks = (in.nq + kQueriesPerTask - 1) / kQueriesPerTask;
  out->shannon.assign(in.heads * in.nq, 0.0f);
  out->renyi2.assign(in.heads * in.nq, 0.0f);
  // Per task, the largest score of its queries (acc.h.m, the running maximum
  // of the same pass); reduced per head below.
  std::vector<float> task_max(in.heads * blocks, -INFINITY);
  pool_.ParallelFor(in.heads * blocks, [&](int64_t task) {
    const int64_t h = task / blocks;
    const int64_t first = (task % blocks) * kQueriesPerTask;
    const int64_t last = std::min(in.nq, first + kQueriesPerTask);
    const float* keys = k_blocks.data() + (h / group) * head_floats;
    for (int64_t i = first; i < last; ++i) {
      const int64_t visible = in.causal ? in.nk - in.nq + i + 1 : in.nk;
      AttentionAccumulator<float> acc;
      AccumulateAttentionScores(q.data() + (h * in.nq + i) * d, keys, visible, d, scale, &acc);
      task_max[task] = std::max(task_max[task], acc.h.m);
      const AttentionStats stats = FinalizeAttention(acc, visible);
      out->shannon[h * in.nq + i] = static_cast<float>(stats.shannon);
      out->renyi2[h * in.nq + i] = static_cast<float>(stats.renyi2);
    }
  });
  out->max_logit.assign(in.heads, -INFINITY);
  for (int64_t task = 0; task < in.heads * blocks; ++task) {
    float& head_max = out->max_logit[task / blocks];
    head_max = std::max(head_max, task_max[task]);
  }
  return absl::OkStatus();
}

}  // namespace entrowatch::compute
