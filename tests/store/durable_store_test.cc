// The durable store in-process: write and reopen, the migration of a database
// written by entrowatchd 0.1.0 (tests/store/data), refusal of a newer schema,
// refused writes (size cap, file size limit) and corrupt records.

#include "store/durable_store.h"

#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "analysis/contribution_proto.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace entrowatch::store {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

class TempDir {
 public:
  TempDir() {
    char path[] = "/tmp/entrowatch-store-XXXXXX";
    path_ = mkdtemp(path) != nullptr ? path : "";
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }
  std::string db() const { return path_ + "/entrowatch.db"; }

 private:
  std::string path_;
};

// A connection of the test's own, beside the store's, to look at or tamper
// with the file.
class Sql {
 public:
  explicit Sql(const std::string& path) {
    EXPECT_EQ(
        sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr),
        SQLITE_OK);
  }
  ~Sql() { sqlite3_close(db_); }
  void Exec(const std::string& sql) {
    char* error = nullptr;
    EXPECT_EQ(sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error), SQLITE_OK)
        << sql << ": " << (error != nullptr ? error : "");
    sqlite3_free(error);
  }
  // The first column of every row.
  std::vector<std::string> Column(const std::string& sql) {
    sqlite3_stmt* stmt = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK)
        << sql << ": " << sqlite3_errmsg(db_);
    std::vector<std::string> out;
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      const void* p = sqlite3_column_blob(stmt, 0);
      out.emplace_back(static_cast<const char*>(p), sqlite3_column_bytes(stmt, 0));
    }
    sqlite3_finalize(stmt);
    return out;
  }
  // Runs `sql` with `blob` bound to its one parameter.
  void SetBlob(const std::string& sql, const std::string& blob) {
    sqlite3_stmt* stmt = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK)
        << sql << ": " << sqlite3_errmsg(db_);
    sqlite3_bind_blob(stmt, 1, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
    EXPECT_EQ(sqlite3_step(stmt), SQLITE_DONE) << sqlite3_errmsg(db_);
    sqlite3_finalize(stmt);
  }
  int64_t Int(const std::string& sql) {
    const std::vector<std::string> rows = Column(sql);
    return rows.empty() ? -1 : std::stoll(rows.front());
  }

 private:
  sqlite3* db_ = nullptr;
};

std::string FileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

// A copy of the committed version 1 database in `dir`.
void CopyFixture(const TempDir& dir) {
  std::filesystem::copy_file(std::string(ENTROWATCH_STORE_TEST_DATA) + "/v1_state.db", dir.db());
}

analysis::ReportContribution Tokens(uint32_t rank, uint64_t step, int tokens) {
  analysis::ReportContribution c;
  c.rank = rank;
  c.world_size = 2;
  c.step = step;
  for (int i = 0; i < tokens; ++i) {
    c.entropies.push_back(0.001f * static_cast<float>(i));
    c.normalized.push_back(0.0001f * static_cast<float>(i));
    c.generated.push_back(i % 3 == 0);
  }
  c.layers[2] = {{1.5, 3}, {0.25, 1}};
  c.has_grad = true;
  c.grad_norm = 2.5;
  c.scalars["reward"] = 0.75;
  c.max_logits[2] = 11.0;
  return c;
}

WriteBatch Report(const std::string& run, uint64_t seq, const analysis::ReportContribution& c) {
  WriteBatch b;
  b.run_id = run;
  b.world_size = c.world_size;
  b.last_report_time = absl::FromUnixSeconds(1700000000) + absl::Seconds(seq);
  b.has_report = true;
  b.rank = c.rank;
  b.seq = seq;
  b.contribution = analysis::ToProto(c);
  return b;
}

entrowatch::v1::StepSummary Summary(uint64_t step) {
  entrowatch::v1::StepSummary s;
  s.set_step(step);
  s.set_token_count(10 * step);
  s.set_entropy_mean(0.5 * static_cast<double>(step));
  return s;
}

bool SameMessage(const google::protobuf::Message& a, const google::protobuf::Message& b) {
  return google::protobuf::util::MessageDifferencer::Equals(a, b);
}

TEST(DurableStoreTest, NewDatabaseRecordsTheSchemaVersion) {
  TempDir dir;
  ASSERT_TRUE(DurableStore::Open(dir.path()).ok());
  EXPECT_EQ(Sql(dir.db()).Int("PRAGMA user_version"), kSchemaVersion);
}

TEST(DurableStoreTest, CommittedBatchesSurviveReopen) {
  TempDir dir;
  const analysis::ReportContribution pending = Tokens(1, 6, 5);
  {
    auto store = DurableStore::Open(dir.path());
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE((*store)->Commit(Report("r", 1, Tokens(0, 5, 4))).ok());
    ASSERT_TRUE((*store)->Commit(Report("r", 2, Tokens(1, 5, 4))).ok());
    WriteBatch finalize;  // step 5 finalized: its summary replaces its contributions
    finalize.run_id = "r";
    finalize.world_size = 2;
    finalize.finalized = {Summary(5)};
    ASSERT_TRUE((*store)->Commit(finalize).ok());
    ASSERT_TRUE((*store)->Commit(Report("r", 3, pending)).ok());
    EXPECT_EQ((*store)->commits(), 4u);
  }
  auto store = DurableStore::Open(dir.path());
  ASSERT_TRUE(store.ok()) << store.status();
  auto runs = (*store)->LoadAll(100);
  ASSERT_TRUE(runs.ok()) << runs.status();
  ASSERT_EQ(runs->size(), 1u);
  const StoredRun& run = runs->front();
  EXPECT_EQ(run.run_id, "r");
  EXPECT_EQ(run.world_size, 2u);
  EXPECT_FALSE(run.finished);
  EXPECT_EQ(run.last_report_time, absl::FromUnixSeconds(1700000003));
  ASSERT_EQ(run.steps.size(), 1u);
  EXPECT_TRUE(SameMessage(run.steps[0], Summary(5)));
  ASSERT_EQ(run.pending.size(), 1u);
  EXPECT_TRUE(SameMessage(run.pending[0], analysis::ToProto(pending)));
  EXPECT_THAT(run.seqs, ElementsAre(Pair(0, ElementsAre(1)), Pair(1, ElementsAre(2, 3))));

  auto one = (*store)->LoadRun("r", 1);
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_THAT(one->seqs, ElementsAre(Pair(0, ElementsAre(1)), Pair(1, ElementsAre(3))));
  EXPECT_TRUE(absl::IsNotFound((*store)->LoadRun("other", 1).status()));
  ASSERT_TRUE((*store)->ForgetRun("r").ok());
  EXPECT_TRUE(absl::IsNotFound((*store)->LoadRun("r", 1).status()));
}

// Softmax statistics of one logits row in float64.
struct RowReference {
  double entropy = 0;
  double top1 = 0;
  double surprisal = 0;
};

RowReference Reference(const std::vector<double>& z, int target) {
  double max = z[0];
  for (double v : z) {
    max = std::max(max, v);
  }
  double sum = 0;
  for (double v : z) {
    sum += std::exp(v - max);
  }
  RowReference r;
  for (double v : z) {
    const double p = std::exp(v - max) / sum;
    r.entropy -= p * std::log(p);
    r.top1 = std::max(r.top1, p);
  }
  r.surprisal = -(z[target] - max - std::log(sum));
  return r;
}

// What v1_reports.jsonl fed into the run table, as the old daemon stored it.
struct Fixture {
  std::map<std::string, int64_t> last_report_ns;  // runs.last_report_ns
  std::vector<std::string> summaries;             // steps.summary, by run and step
};

Fixture ReadFixture(const std::string& db) {
  Sql sql(db);
  Fixture f;
  for (const std::string run : {"fixture-a", "fixture-b"}) {
    f.last_report_ns[run] =
        sql.Int(absl::StrCat("SELECT last_report_ns FROM runs WHERE run_id = '", run, "'"));
  }
  f.summaries = sql.Column("SELECT summary FROM steps ORDER BY run_id, step");
  return f;
}

TEST(DurableStoreTest, MigratesADatabaseOfTheFirstRelease) {
  TempDir dir;
  CopyFixture(dir);
  const Fixture before = ReadFixture(dir.db());
  ASSERT_EQ(Sql(dir.db()).Int("PRAGMA user_version"), 0);
  ASSERT_EQ(before.summaries.size(), 4u);

  auto store = DurableStore::Open(dir.path());
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ(Sql(dir.db()).Int("PRAGMA user_version"), kSchemaVersion);
  auto runs = (*store)->LoadAll(100);
  ASSERT_TRUE(runs.ok()) << runs.status();
  ASSERT_EQ(runs->size(), 2u);

  const StoredRun& a = (*runs)[0];
  EXPECT_EQ(a.run_id, "fixture-a");
  EXPECT_EQ(a.world_size, 2u);
  EXPECT_FALSE(a.finished);
  EXPECT_EQ(absl::ToUnixNanos(a.last_report_time), before.last_report_ns.at("fixture-a"));
  EXPECT_THAT(a.seqs, ElementsAre(Pair(0, ElementsAre(1, 3, 5, 6)), Pair(1, ElementsAre(2, 4))));
  // Steps 1 and 2 were finalized: their summaries are unchanged.
  ASSERT_EQ(a.steps.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(a.steps[i].SerializeAsString(), before.summaries[i]) << "step " << i + 1;
  }
  EXPECT_EQ(a.steps[0].step(), 1u);
  EXPECT_EQ(a.steps[0].token_count(), 6u);
  EXPECT_NEAR(a.steps[0].entropy_mean(), (2.5 + 2.25 + 0.5 + 3.5 + 2.25 + 0.5) / 6, 1e-12);
  EXPECT_EQ(a.steps[1].step(), 2u);

  // Steps 3 and 4 were pending (rank 0 of 2 only): their contributions were
  // rewritten as Contribution messages with the values the reports carried.
  ASSERT_EQ(a.pending.size(), 2u);
  const analysis::ReportContribution step3 = analysis::FromProto(a.pending[0]);
  EXPECT_EQ(step3.rank, 0u);
  EXPECT_EQ(step3.world_size, 2u);
  EXPECT_EQ(step3.step, 3u);
  EXPECT_EQ(step3.phase, entrowatch::v1::EVAL);
  const RowReference row0 = Reference({2.0, 1.0, 0.5, -1.0}, 1);
  const RowReference row1 = Reference({0.0, 3.0, 0.0, -2.0}, 3);
  ASSERT_EQ(step3.entropies.size(), 2u);
  EXPECT_NEAR(step3.entropies[0], row0.entropy, 1e-5);
  EXPECT_NEAR(step3.entropies[1], row1.entropy, 1e-5);
  ASSERT_EQ(step3.normalized.size(), 2u);
  EXPECT_NEAR(step3.normalized[0], row0.entropy / std::log(4.0), 1e-5);
  EXPECT_NEAR(step3.normalized[1], row1.entropy / std::log(4.0), 1e-5);
  EXPECT_EQ(step3.generated, std::vector<bool>({false, true}));  // PROMPT, GENERATED
  EXPECT_NEAR(step3.top1_sum, row0.top1 + row1.top1, 1e-6);
  EXPECT_EQ(step3.top1_count, 2);
  EXPECT_NEAR(step3.surprisal_sum, row0.surprisal + row1.surprisal, 1e-5);
  EXPECT_EQ(step3.surprisal_count, 2);
  ASSERT_EQ(step3.layers.size(), 2u);
  ASSERT_EQ(step3.layers.at(0).size(), 2u);
  EXPECT_EQ(step3.layers.at(0)[0].sum, 1.25);
  EXPECT_EQ(step3.layers.at(0)[0].count, 1);
  EXPECT_EQ(step3.layers.at(0)[1].sum, 2.5);
  EXPECT_EQ(step3.layers.at(0)[1].count, 1);
  ASSERT_EQ(step3.layers.at(3).size(), 1u);
  EXPECT_EQ(step3.layers.at(3)[0].sum, 0.125);
  EXPECT_EQ(step3.layers.at(3)[0].count, 1);
  EXPECT_TRUE(step3.has_grad);
  EXPECT_EQ(step3.grad_norm, 1.5);
  EXPECT_TRUE(step3.has_loss);
  EXPECT_EQ(step3.loss, 2.75);
  EXPECT_EQ(step3.learning_rate, 0.0005);
  EXPECT_THAT(step3.scalars, ElementsAre(Pair("kl", 0.0625), Pair("reward", 0.5)));
  EXPECT_THAT(step3.max_logits, ElementsAre(Pair(0, 7.5), Pair(3, -2.0)));

  const analysis::ReportContribution step4 = analysis::FromProto(a.pending[1]);
  EXPECT_EQ(step4.rank, 0u);
  EXPECT_EQ(step4.step, 4u);
  EXPECT_EQ(step4.phase, entrowatch::v1::TRAIN);
  EXPECT_EQ(step4.entropies, std::vector<float>({0.25f, 3.0f, 1.75f}));
  ASSERT_EQ(step4.normalized.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_FLOAT_EQ(step4.normalized[i], step4.entropies[i] / std::log(50000.0)) << i;
  }
  EXPECT_EQ(step4.generated, std::vector<bool>({true, false, true}));
  EXPECT_EQ(step4.top1_count, 0);
  EXPECT_TRUE(step4.layers.empty());
  EXPECT_FALSE(step4.has_grad);
  EXPECT_FALSE(step4.has_loss);
  EXPECT_THAT(step4.scalars, ElementsAre(Pair("reward", -1.5)));
  EXPECT_TRUE(step4.max_logits.empty());

  const StoredRun& b = (*runs)[1];
  EXPECT_EQ(b.run_id, "fixture-b");
  EXPECT_EQ(b.world_size, 1u);
  EXPECT_TRUE(b.finished);
  EXPECT_EQ(absl::ToUnixNanos(b.last_report_time), before.last_report_ns.at("fixture-b"));
  EXPECT_THAT(b.seqs, ElementsAre(Pair(0, ElementsAre(1, 2))));
  ASSERT_EQ(b.steps.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(b.steps[i].SerializeAsString(), before.summaries[2 + i]) << "step " << i + 1;
    EXPECT_EQ(b.steps[i].token_count(), 2u);
  }
  EXPECT_TRUE(b.pending.empty());
}

TEST(DurableStoreTest, ReopeningAMigratedDatabaseChangesNothing) {
  TempDir dir;
  CopyFixture(dir);
  std::vector<StoredRun> first;
  {
    auto store = DurableStore::Open(dir.path());
    ASSERT_TRUE(store.ok()) << store.status();
    auto runs = (*store)->LoadAll(100);
    ASSERT_TRUE(runs.ok()) << runs.status();
    first = *std::move(runs);
  }
  // The last connection checkpointed the WAL into the file on close.
  const std::string migrated = FileBytes(dir.db());
  ASSERT_FALSE(std::filesystem::exists(dir.db() + "-wal"));
  {
    auto store = DurableStore::Open(dir.path());
    ASSERT_TRUE(store.ok()) << store.status();
    EXPECT_EQ(std::filesystem::file_size(dir.db() + "-wal"), 0u) << "the second open wrote";
    auto runs = (*store)->LoadAll(100);
    ASSERT_TRUE(runs.ok()) << runs.status();
    ASSERT_EQ(runs->size(), first.size());
    for (size_t r = 0; r < first.size(); ++r) {
      ASSERT_EQ((*runs)[r].pending.size(), first[r].pending.size());
      for (size_t i = 0; i < first[r].pending.size(); ++i) {
        EXPECT_TRUE(SameMessage((*runs)[r].pending[i], first[r].pending[i]));
      }
      EXPECT_EQ((*runs)[r].steps.size(), first[r].steps.size());
    }
  }
  EXPECT_TRUE(FileBytes(dir.db()) == migrated) << "the second open wrote to the database";
}

TEST(DurableStoreTest, MigratesOldRecordsWithoutNamedScalarsOrMaxLogits) {
  TempDir dir;
  CopyFixture(dir);
  // Step 4's record ends with its named scalars ({"reward": -1.5}: count,
  // name length, name, value) and an empty max-logit list (count): 38 bytes
  // that the oldest records do not have.
  Sql(dir.db()).Exec(
      "UPDATE contributions SET data = substr(data, 1, length(data) - 38) WHERE step = 4");
  auto store = DurableStore::Open(dir.path());
  ASSERT_TRUE(store.ok()) << store.status();
  auto run = (*store)->LoadRun("fixture-a", 100);
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_EQ(run->pending.size(), 2u);
  const v1::Contribution& step4 = run->pending[1];
  EXPECT_EQ(step4.step(), 4u);
  EXPECT_EQ(step4.entropies_size(), 3);
  EXPECT_TRUE(step4.scalars().empty());
  EXPECT_TRUE(step4.max_logits().empty());
  EXPECT_EQ(run->pending[0].scalars().size(), 2u);
}

TEST(DurableStoreTest, AnUnreadableOldRecordLeavesTheDatabaseAsItWas) {
  TempDir dir;
  CopyFixture(dir);
  std::vector<std::string> before;
  {
    Sql sql(dir.db());
    // Cut the last contribution short: it is no longer one whole record.
    sql.Exec(
        "UPDATE contributions SET data = substr(data, 1, 40) WHERE id = "
        "(SELECT max(id) FROM contributions)");
    before = sql.Column("SELECT data FROM contributions ORDER BY id");
  }
  const int64_t id = Sql(dir.db()).Int("SELECT max(id) FROM contributions");
  auto store = DurableStore::Open(dir.path());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(store.status().message(),
              AllOf(HasSubstr(dir.db()), HasSubstr("from schema version 1 to 2"),
                    HasSubstr(absl::StrCat("contribution record ", id)), HasSubstr("unchanged")));
  Sql sql(dir.db());
  EXPECT_EQ(sql.Int("PRAGMA user_version"), 0);
  EXPECT_EQ(sql.Column("SELECT data FROM contributions ORDER BY id"), before);
}

TEST(DurableStoreTest, RefusesADatabaseOfANewerSchema) {
  TempDir dir;
  {
    Sql sql(dir.db());
    sql.Exec(absl::StrCat("CREATE TABLE future(x); PRAGMA user_version = ", kSchemaVersion + 1));
  }
  auto store = DurableStore::Open(dir.path());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(
      store.status().message(),
      AllOf(HasSubstr(dir.db()), HasSubstr(absl::StrCat("schema version ", kSchemaVersion + 1)),
            HasSubstr(absl::StrCat("newer than version ", kSchemaVersion))));
  Sql sql(dir.db());
  EXPECT_EQ(sql.Int("PRAGMA user_version"), kSchemaVersion + 1);
  EXPECT_EQ(sql.Int("SELECT count(*) FROM sqlite_master WHERE name = 'contributions'"), 0);
}

TEST(DurableStoreTest, ACorruptContributionIsDataLossNamingTheRecord) {
  TempDir dir;
  {
    auto store = DurableStore::Open(dir.path());
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE((*store)->Commit(Report("r", 1, Tokens(0, 1, 3))).ok());
  }
  // Three entropies, two normalized values: not one entry per token.
  v1::Contribution broken = analysis::ToProto(Tokens(0, 1, 3));
  broken.mutable_normalized()->RemoveLast();
  Sql(dir.db()).SetBlob("UPDATE contributions SET data = ?", broken.SerializeAsString());
  auto store = DurableStore::Open(dir.path());
  ASSERT_TRUE(store.ok()) << store.status();
  auto runs = (*store)->LoadAll(100);
  ASSERT_FALSE(runs.ok());
  EXPECT_EQ(runs.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(runs.status().message(),
              AllOf(HasSubstr("contribution record 1"), HasSubstr(dir.db())));
}

TEST(DurableStoreTest, AWriteOverTheSizeCapIsRefusedAndLeavesNothing) {
  TempDir dir;
  auto store = DurableStore::Open(dir.path());
  ASSERT_TRUE(store.ok()) << store.status();
  StoreLimits cap;
  cap.max_db_bytes = 65536;
  ASSERT_TRUE((*store)->SetLimits(cap).ok());
  ASSERT_TRUE((*store)->Commit(Report("r", 1, Tokens(0, 1, 16))).ok());
  // About 36 KiB per record: the second or third cannot fit in 64 KiB.
  uint64_t seq = 2;
  absl::Status refused;
  for (; seq < 10 && refused.ok(); ++seq) {
    refused = (*store)->Commit(Report("r", seq, Tokens(0, seq, 4096)));
  }
  ASSERT_FALSE(refused.ok()) << "64 KiB took " << seq - 1 << " records";
  const uint64_t refused_seq = seq - 1;
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(FailureReason(refused), "full");
  EXPECT_THAT(refused.message(),
              AllOf(HasSubstr(dir.db()), HasSubstr("is full"), HasSubstr("max_db_bytes=65536")));
  EXPECT_EQ((*store)->failures(), 1u);

  // A batch built on the refused state (same epoch) is refused too, even
  // after room was made; the next epoch is written.
  ASSERT_TRUE((*store)->SetLimits({}).ok());
  EXPECT_FALSE((*store)->Commit(Report("r", 100, Tokens(0, 100, 1))).ok());
  WriteBatch next = Report("r", 101, Tokens(0, 101, 1));
  next.epoch = 1;
  ASSERT_TRUE((*store)->Commit(std::move(next)).ok());

  auto run = (*store)->LoadRun("r", 1000);
  ASSERT_TRUE(run.ok()) << run.status();
  std::vector<uint64_t> steps;
  for (const v1::Contribution& c : run->pending) {
    steps.push_back(c.step());
  }
  std::vector<uint64_t> expected;
  for (uint64_t s = 1; s < refused_seq; ++s) {
    expected.push_back(s);
  }
  expected.push_back(101);
  EXPECT_EQ(steps, expected);
  ASSERT_EQ(run->seqs.count(0), 1u);
  EXPECT_EQ(run->seqs.at(0).back(), 101u);
  EXPECT_EQ(std::count(run->seqs.at(0).begin(), run->seqs.at(0).end(), refused_seq), 0);
}

TEST(DurableStoreTest, AWriteOverTheFileSizeLimitIsAnIoFailure) {
  TempDir dir;
  auto store = DurableStore::Open(dir.path());
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->Commit(Report("r", 1, Tokens(0, 1, 16))).ok());
  // EFBIG instead of SIGXFSZ, and a limit the WAL reaches with one record.
  struct sigaction ignore {};
  struct sigaction old_action {};
  ignore.sa_handler = SIG_IGN;
  ASSERT_EQ(sigaction(SIGXFSZ, &ignore, &old_action), 0);
  struct rlimit old_limit {};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  struct rlimit limit = old_limit;
  limit.rlim_cur = 128 * 1024;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &limit), 0);
  absl::Status refused;
  for (uint64_t seq = 2; seq < 10 && refused.ok(); ++seq) {
    refused = (*store)->Commit(Report("r", seq, Tokens(0, seq, 8192)));
  }
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &old_limit), 0);
  ASSERT_EQ(sigaction(SIGXFSZ, &old_action, nullptr), 0);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(FailureReason(refused), "io");
  EXPECT_THAT(refused.message(),
              AllOf(HasSubstr("cannot write the state database"), HasSubstr(dir.db())));
}

}  // namespace
}  // namespace entrowatch::store
