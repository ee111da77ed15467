#include "config/config.h"

#include <fstream>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace entrowatch::config {
namespace {

using ::testing::HasSubstr;

std::string Message(const absl::StatusOr<Config>& c) { return std::string(c.status().message()); }

TEST(ConfigTest, ShippedFileParsesToTheBuiltInDefaults) {
  auto file = LoadConfigFile(ENTROWATCH_DEFAULT_CONFIG);
  ASSERT_TRUE(file.ok()) << file.status();
  const Config d;
  const Config& c = *file;
  EXPECT_EQ(c.grpc.listen, d.grpc.listen);
  EXPECT_EQ(c.grpc.max_message_bytes, d.grpc.max_message_bytes);
  EXPECT_EQ(c.grpc.reflection, d.grpc.reflection);
  EXPECT_EQ(c.metrics.listen, d.metrics.listen);
  EXPECT_EQ(c.metrics.entropy_buckets, d.metrics.entropy_buckets);
  EXPECT_EQ(c.metrics.per_head_series, d.metrics.per_head_series);
  EXPECT_EQ(c.state_dir, d.state_dir);
  EXPECT_EQ(c.store.retention_steps, d.store.retention_steps);
  EXPECT_EQ(c.store.max_db_bytes, d.store.max_db_bytes);
  EXPECT_EQ(c.ingest.workers, d.ingest.workers);
  EXPECT_EQ(c.ingest.queue_max_reports, d.ingest.queue_max_reports);
  EXPECT_EQ(c.ingest.queue_max_bytes, d.ingest.queue_max_bytes);
  EXPECT_EQ(c.ingest.memory_limit_bytes, d.ingest.memory_limit_bytes);
  EXPECT_EQ(c.ingest.max_waiting_reports, d.ingest.max_waiting_reports);
  EXPECT_EQ(c.ingest.memory_budget_bytes, d.ingest.memory_budget_bytes);
  EXPECT_EQ(c.ingest.max_rows_per_report, d.ingest.max_rows_per_report);
  EXPECT_EQ(c.ingest.max_elements_per_report, d.ingest.max_elements_per_report);
  EXPECT_EQ(c.ingest.skip_nonfinite_rows, d.ingest.skip_nonfinite_rows);
  EXPECT_EQ(c.compute.backend, d.compute.backend);
  EXPECT_EQ(c.compute.threads, d.compute.threads);
  EXPECT_EQ(c.compute.cuda_pool_bytes, d.compute.cuda_pool_bytes);
  EXPECT_EQ(c.aggregation.step_timeout_seconds, d.aggregation.step_timeout_seconds);
  EXPECT_EQ(c.aggregation.history_steps, d.aggregation.history_steps);
  EXPECT_EQ(c.aggregation.high_entropy_threshold, d.aggregation.high_entropy_threshold);
  EXPECT_EQ(c.runs.max_runs, d.runs.max_runs);
  EXPECT_EQ(c.runs.idle_expiry_seconds, d.runs.idle_expiry_seconds);
  EXPECT_EQ(c.runs.dedup_window, d.runs.dedup_window);
  EXPECT_EQ(c.log.level, d.log.level);
  EXPECT_EQ(c.log.format, d.log.format);
}

TEST(ConfigTest, EmptyDocumentGivesDefaults) {
  auto c = ParseConfig("");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->grpc.listen, "127.0.0.1:50551");
}

TEST(ConfigTest, ValuesAreRead) {
  auto c = ParseConfig(
      "grpc:\n  listen: \"0.0.0.0:7000\"\ningest:\n  workers: 4\n  skip_nonfinite_rows: true\n"
      "aggregation: {step_timeout_seconds: 2.5}\nlog: {level: debug, format: json}\n");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->grpc.listen, "0.0.0.0:7000");
  EXPECT_EQ(c->ingest.workers, 4);
  EXPECT_TRUE(c->ingest.skip_nonfinite_rows);
  EXPECT_EQ(c->aggregation.step_timeout_seconds, 2.5);
  EXPECT_EQ(c->log.format, "json");
}

TEST(ConfigTest, IngestMemoryBoundsAreRead) {
  auto c = ParseConfig(
      "grpc: {max_message_bytes: 1048576}\n"
      "ingest: {queue_max_bytes: 1048576, memory_limit_bytes: 2097152, max_waiting_reports: 3,\n"
      "         memory_budget_bytes: 2097152}\n");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->ingest.memory_limit_bytes, 2097152);
  EXPECT_EQ(c->ingest.max_waiting_reports, 3);
  EXPECT_EQ(c->ingest.memory_budget_bytes, 2097152);
  auto off = ParseConfig("ingest: {memory_budget_bytes: 0}\n");
  ASSERT_TRUE(off.ok()) << off.status();
  EXPECT_EQ(off->ingest.memory_budget_bytes, 0);
  const Config d;
  EXPECT_GE(d.ingest.memory_limit_bytes, d.ingest.queue_max_bytes + d.grpc.max_message_bytes)
      << "the defaults satisfy their own rule";
  EXPECT_GE(d.ingest.memory_budget_bytes, d.ingest.memory_limit_bytes);
}

TEST(ConfigTest, StoreLimitsAreRead) {
  auto c = ParseConfig(
      "state_dir: /var/lib/ew\nstore:\n  retention_steps: 0\n"
      "  max_db_bytes: 1073741824\n");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->state_dir, "/var/lib/ew");
  EXPECT_EQ(c->store.retention_steps, 0);
  EXPECT_EQ(c->store.max_db_bytes, int64_t{1} << 30);
  auto defaults = ParseConfig("store: {}\n");
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  EXPECT_EQ(defaults->store.retention_steps, 100000);
  EXPECT_EQ(defaults->store.max_db_bytes, 0);
}

struct BadCase {
  const char* yaml;
  const char* expected;  // substring of the error
};

class BadConfigTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadConfigTest, ErrorNamesKeyLineAndExpectation) {
  auto c = ParseConfig(GetParam().yaml, "test.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(c), HasSubstr(GetParam().expected));
  EXPECT_THAT(Message(c), HasSubstr("test.yaml"));
}

INSTANTIATE_TEST_SUITE_P(
    Rules, BadConfigTest,
    ::testing::Values(
        BadCase{"grpc:\n  lisen: x\n", "unknown key 'grpc.lisen' (line 2); known here: "},
        BadCase{"bogus: 1\n", "unknown key 'bogus' (line 1)"},
        BadCase{"ingest:\n  workers: many\n", "ingest.workers (line 2): expected an integer"},
        BadCase{"ingest:\n  workers: 0\n", "ingest.workers (line 2): expected a value in [1, 256]"},
        BadCase{"grpc: {listen: localhost}\n", "grpc.listen (line 1): expected host:port"},
        BadCase{"grpc: {listen: \"h:70000\"}\n", "port in 0..65535"},
        BadCase{"compute: {backend: tpu}\n", "expected auto, cuda, cpu or cpu-reference"},
        BadCase{"log: {level: loud}\n", "log.level (line 1)"},
        BadCase{"metrics: {entropy_buckets: [1, 0.5]}\n", "strictly increasing"},
        BadCase{"aggregation: {high_entropy_threshold: 1.5}\n", "high_entropy_threshold"},
        BadCase{"aggregation: {step_timeout_seconds: .nan}\n", "expected a finite number"},
        BadCase{"grpc: 5\n", "grpc (line 1): expected a mapping"},
        BadCase{"store:\n  retention_steps: -1\n",
                "store.retention_steps (line 2): expected a value in [0, "},
        BadCase{"store:\n  max_db_bytes: -4096\n",
                "store.max_db_bytes (line 2): expected a value in [0, "},
        BadCase{"store:\n  max_db_bytes: 4096\n",
                "store.max_db_bytes (line 2): expected 0 (unlimited) or at least 65536, got 4096"},
        BadCase{"store:\n  retention: 5\n", "unknown key 'store.retention' (line 2)"},
        BadCase{"store: 5\n", "store (line 1): expected a mapping"},
        BadCase{"ingest: {memory_budget_bytes: 671088639}\n",
                "ingest.memory_budget_bytes: must be 0 (no budget) or at least "
                "ingest.memory_limit_bytes (671088640)"},
        BadCase{"ingest: {max_waiting_reports: 0}\n",
                "ingest.max_waiting_reports (line 1): expected a value in [1, "},
        BadCase{"ingest: {memory_limit_bytes: 536870912}\n",
                "ingest.memory_limit_bytes: must be at least ingest.queue_max_bytes + "
                "grpc.max_message_bytes (603979776)"},
        BadCase{"grpc: {max_message_bytes: 1048576}\n"
                "ingest: {queue_max_bytes: 1048576, memory_limit_bytes: 2097151}\n",
                "(2097152) and at most 2^42, got 2097151"},
        BadCase{"grpc: {listen: \"a:1\"}\ngrpc: {listen: \"b:2\"}\n",
                "duplicate key 'grpc' (line 2)"},
        BadCase{"grpc: [\n", "not valid YAML"},
        BadCase{"- 1\n- 2\n", "expected a mapping at the top level"}));

TEST(ConfigTest, MissingFileIsNotFound) {
  auto c = LoadConfigFile("/nonexistent/entrowatch.yaml");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Message(c), HasSubstr("/nonexistent/entrowatch.yaml"));
}

}  // namespace
}  // namespace entrowatch::config
