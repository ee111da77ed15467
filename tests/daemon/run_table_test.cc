#include "daemon/run_table.h"

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace entrowatch::daemon {
namespace {

using ::testing::HasSubstr;

class RunTableTest : public ::testing::Test {
 protected:
  absl::StatusOr<std::shared_ptr<daemon::Run>> FindOrAdd(const std::string& id, bool* created) {
    return table_.FindOrAdd(
        id,
        [&] {
          ++made_;
          return std::make_unique<daemon::Run>(id, RunSettings(),
                                               std::vector<std::unique_ptr<exporter::RunSink>>(),
                                               &clock_, nullptr);
        },
        created);
  }

  common::FakeClock clock_;
  RunTable table_{2};
  int made_ = 0;
};

TEST_F(RunTableTest, AddsEachRunOnceAndFindsIt) {
  bool created = false;
  auto a = FindOrAdd("a", &created);
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(created);
  auto again = FindOrAdd("a", &created);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(created);
  EXPECT_EQ(a->get(), again->get());
  EXPECT_EQ(made_, 1);
  EXPECT_EQ(table_.Find("a").get(), a->get());
  EXPECT_EQ(table_.Find("b"), nullptr);
}

TEST_F(RunTableTest, RefusesRunsPastMaxRunsUntilTheLimitIsRaised) {
  bool created = false;
  ASSERT_TRUE(FindOrAdd("b", &created).ok());
  ASSERT_TRUE(FindOrAdd("a", &created).ok());
  auto refused = FindOrAdd("c", &created);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.status().message(), HasSubstr("runs.max_runs"));
  EXPECT_EQ(made_, 2);
  table_.set_max_runs(3);
  EXPECT_TRUE(FindOrAdd("c", &created).ok());
  std::vector<std::string> ids;
  for (const auto& run : table_.All()) {
    ids.push_back(run->id());
  }
  EXPECT_THAT(ids, ::testing::ElementsAre("a", "b", "c"));
}

TEST_F(RunTableTest, RemovesOnlyIdleRuns) {
  bool created = false;
  ASSERT_TRUE(FindOrAdd("old", &created).ok());
  clock_.Advance(absl::Seconds(50));
  ASSERT_TRUE(FindOrAdd("new", &created).ok());
  clock_.Advance(absl::Seconds(50));
  auto removed = table_.RemoveIdle(clock_.Monotonic(), absl::Seconds(100));
  ASSERT_EQ(removed.size(), 1u);
  EXPECT_EQ(removed[0]->id(), "old");
  EXPECT_EQ(table_.size(), 1u);
  EXPECT_EQ(table_.Find("old"), nullptr);
  EXPECT_TRUE(table_.RemoveIdle(clock_.Monotonic(), absl::Seconds(100)).empty());
}

}  // namespace
}  // namespace entrowatch::daemon
