#include "compute/engine_bench.h"

#include <nlohmann/json.hpp>

#include "gtest/gtest.h"

namespace entrowatch::compute {
namespace {

TEST(EngineBenchTest, EntropyReportsThroughputAndJson) {
  EntropyBenchOptions options;
  options.rows = 8;
  options.vocab = 4096;
  options.dtype = common::DType::kBFloat16;
  options.threads = 2;
  options.min_seconds = 0;
  absl::StatusOr<BenchResult> result = RunEntropyBench(options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->backend, "cpu");
  EXPECT_EQ(result->iterations, 3);
  EXPECT_GT(result->ms, 0);
  EXPECT_NEAR(result->gb_per_s, 8 * 4096 * 2 / (result->ms * 1e6), 1e-9);
  EXPECT_NEAR(result->items_per_s, 8 / (result->ms * 1e-3), 1e-6);
  const std::string text = BenchResultToJson(*result);
  EXPECT_EQ(text.find('\n'), std::string::npos) << text;
  const nlohmann::json json = nlohmann::json::parse(text);
  EXPECT_EQ(json["kind"], "entropy");
  EXPECT_EQ(json["backend"], "cpu");
  EXPECT_EQ(json["dtype"], "bf16");
  EXPECT_EQ(json["shape"], "8x4096");
  EXPECT_EQ(json["degraded"], false);
  EXPECT_EQ(json["iterations"], 3);
  EXPECT_DOUBLE_EQ(json["ms"].get<double>(), result->ms);
  EXPECT_DOUBLE_EQ(json["gb_per_s"].get<double>(), result->gb_per_s);
  EXPECT_DOUBLE_EQ(json["rows_per_s"].get<double>(), result->items_per_s);
}

TEST(EngineBenchTest, AttentionReportsQueriesPerSecond) {
  AttentionBenchOptions options;
  options.heads = 4;
  options.kv_heads = 2;
  options.seq = 64;
  options.head_dim = 32;
  options.causal = true;
  options.min_seconds = 0;
  absl::StatusOr<BenchResult> result = RunAttentionBench(options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->shape, "H4/KV2 N64 d32 causal");
  EXPECT_NEAR(result->items_per_s, 4 * 64 / (result->ms * 1e-3), 1e-6);
  EXPECT_TRUE(nlohmann::json::parse(BenchResultToJson(*result)).contains("queries_per_s"));
}

TEST(EngineBenchTest, JsonEscapesTheFreeTextReason) {
  BenchResult result;
  result.kind = "entropy";
  result.degraded = true;
  result.fallback_reason = "cudaErrorNoDevice: \"no\\device\"\n\tline 2";
  const nlohmann::json json = nlohmann::json::parse(BenchResultToJson(result));
  EXPECT_EQ(json["fallback_reason"], result.fallback_reason);
  EXPECT_EQ(json["degraded"], true);
}

TEST(EngineBenchTest, CudaRequestReportsWhatRan) {
  EntropyBenchOptions options;
  options.backend = "cuda";
  options.rows = 2;
  options.vocab = 128;
  options.min_seconds = 0;
  absl::StatusOr<BenchResult> result = RunEntropyBench(options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->degraded, result->backend != "cuda");
}

TEST(EngineBenchTest, RejectsBadOptions) {
  EXPECT_FALSE(ParseBenchDType("int8").ok());
  EXPECT_EQ(*ParseBenchDType("bf16"), common::DType::kBFloat16);
  EntropyBenchOptions options;
  options.rows = 0;
  EXPECT_EQ(RunEntropyBench(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.rows = 1;
  options.backend = "gpu";
  EXPECT_EQ(RunEntropyBench(options).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace entrowatch::compute
