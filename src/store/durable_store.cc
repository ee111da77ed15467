#include "store/durable_store.h"

#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"
#include "store/legacy_contribution.h"

namespace entrowatch::store {
namespace {

constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS runs(
  run_id TEXT PRIMARY KEY, world_size INTEGER NOT NULL, finished INTEGER NOT NULL,
  last_report_ns INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS contributions(
  id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, step INTEGER NOT NULL,
  data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS contributions_by_step ON contributions(run_id, step);
CREATE TABLE IF NOT EXISTS steps(
  run_id TEXT NOT NULL, step INTEGER NOT NULL, summary BLOB NOT NULL,
  PRIMARY KEY(run_id, step));
CREATE TABLE IF NOT EXISTS seqs(
  run_id TEXT NOT NULL, rank INTEGER NOT NULL, seq INTEGER NOT NULL,
  PRIMARY KEY(run_id, rank, seq));
)sql";

constexpr char kReasonUrl[] = "type.entrowatch.dev/store.failure_reason";

int64_t FileBytes(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : 0;
}

int64_t ToNanos(absl::Time t) {
  return t == absl::InfinitePast() ? INT64_MIN : absl::ToUnixNanos(t);
}

absl::Time FromNanos(int64_t ns) {
  return ns == INT64_MIN ? absl::InfinitePast() : absl::FromUnixNanos(ns);
}

// A prepared statement that finalizes itself.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) { sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr); }
  ~Statement() { sqlite3_finalize(stmt_); }
  bool ok() const { return stmt_ != nullptr; }
  Statement& Bind(int i, const std::string& text) {
    sqlite3_bind_text(stmt_, i, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& Bind(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  Statement& BindBlob(int i, const std::string& blob) {
    sqlite3_bind_blob(stmt_, i, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
    return *this;
  }
  int Step() { return sqlite3_step(stmt_); }
  sqlite3_stmt* get() { return stmt_; }

 private:
  sqlite3_stmt* stmt_ = nullptr;
};

std::string Column(sqlite3_stmt* s, int i) {
  const void* p = sqlite3_column_blob(s, i);
  return std::string(static_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(s, i)));
}

std::string Text(sqlite3_stmt* s, int i) {
  return reinterpret_cast<const char*>(sqlite3_column_text(s, i));
}

}  // namespace

absl::string_view FailureReason(const absl::Status& status) {
  if (status.ok()) {
    return "";
  }
  const auto reason = status.GetPayload(kReasonUrl);
  if (!reason.has_value()) {
    return "other";
  }
  for (absl::string_view known : {"full", "io", "other"}) {
    if (*reason == known) {
      return known;
    }
  }
  return "other";
}

absl::StatusOr<std::unique_ptr<DurableStore>> DurableStore::Open(const std::string& dir) {
  if (mkdir(dir.c_str(), 0750) != 0 && errno != EEXIST) {
    return absl::FailedPreconditionError(
        absl::StrCat("state_dir '", dir, "': cannot create: ", std::strerror(errno)));
  }
  const std::string path = dir + "/entrowatch.db";
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
      SQLITE_OK) {
    std::string error = db != nullptr ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return absl::FailedPreconditionError(
        absl::StrCat("state_dir: cannot open '", path, "': ", error));
  }
  std::unique_ptr<DurableStore> store(new DurableStore(db, dir, path));
  for (const char* sql :
       {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA busy_timeout=5000"}) {
    if (absl::Status s = store->Exec(sql); !s.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("state_dir: cannot initialize '", path, "': ", s.message()));
    }
  }
  if (absl::Status s = store->Migrate(); !s.ok()) {
    return s;
  }
  {
    absl::MutexLock db_lock(&store->db_mu_);
    Statement page_size(db, "PRAGMA page_size");
    Statement max_pages(db, "PRAGMA max_page_count");
    if (page_size.Step() != SQLITE_ROW || max_pages.Step() != SQLITE_ROW) {
      return absl::FailedPreconditionError(
          absl::StrCat("state_dir: cannot initialize '", path, "': ", sqlite3_errmsg(db)));
    }
    store->page_size_ = sqlite3_column_int64(page_size.get(), 0);
    store->unlimited_pages_ = sqlite3_column_int64(max_pages.get(), 0);
  }
  store->writer_ = std::thread([s = store.get()] { s->WriterLoop(); });
  return store;
}

DurableStore::DurableStore(sqlite3* db, std::string dir, std::string path)
    : db_(db), dir_(std::move(dir)), path_(std::move(path)) {}

DurableStore::~DurableStore() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (writer_.joinable()) {
    writer_.join();
  }
  sqlite3_close(db_);
}

absl::Status DurableStore::Exec(const char* sql) {
  char* error = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &error) != SQLITE_OK) {
    absl::Status s = absl::UnavailableError(error != nullptr ? error : "sqlite error");
    sqlite3_free(error);
    return s;
  }
  return absl::OkStatus();
}

absl::Status DurableStore::Migrate() {
  absl::MutexLock db_lock(&db_mu_);
  int64_t found = 0;
  // `cause` is a string of its own: ROLLBACK replaces the connection's error message.
  auto fail = [&](const std::string& cause) {
    Exec("ROLLBACK").IgnoreError();
    return absl::FailedPreconditionError(
        absl::StrCat("state_dir: cannot migrate '", path_, "' from schema version ", found, " to ",
                     kSchemaVersion, " (the database is unchanged): ", cause));
  };
  if (absl::Status s = Exec("BEGIN IMMEDIATE"); !s.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("state_dir: cannot initialize '", path_, "': ", s.message()));
  }
  {
    Statement version(db_, "PRAGMA user_version");
    Statement tables(db_, "SELECT count(*) FROM sqlite_master WHERE name = 'contributions'");
    if (version.Step() != SQLITE_ROW || tables.Step() != SQLITE_ROW) {
      return fail(sqlite3_errmsg(db_));
    }
    found = sqlite3_column_int64(version.get(), 0);
    if (found == 0 && sqlite3_column_int64(tables.get(), 0) != 0) {
      found = 1;  // written before the version was recorded
    }
  }
  if (found > kSchemaVersion) {
    Exec("ROLLBACK").IgnoreError();
    return absl::FailedPreconditionError(absl::StrCat(
        "state_dir: the state database '", path_, "' has schema version ", found,
        ", newer than version ", kSchemaVersion,
        " that this entrowatchd reads; run the release that wrote it, or a newer one"));
  }
  if (found == kSchemaVersion) {
    return Exec("COMMIT").ok() ? absl::OkStatus() : fail(sqlite3_errmsg(db_));
  }
  if (absl::Status s = Exec(kSchema); !s.ok()) {
    return fail(std::string(s.message()));
  }
  int64_t migrated = 0;
  if (found == 1) {
    std::vector<std::pair<int64_t, std::string>> rows;
    Statement read(db_, "SELECT id, data FROM contributions ORDER BY id");
    int rc;
    while ((rc = read.Step()) == SQLITE_ROW) {
      rows.emplace_back(sqlite3_column_int64(read.get(), 0), Column(read.get(), 1));
    }
    if (rc != SQLITE_DONE) {
      return fail(sqlite3_errmsg(db_));
    }
    for (const auto& [id, data] : rows) {
      auto contribution = DecodeLegacyContribution(data);
      if (!contribution.ok()) {
        return fail(
            absl::StrCat("contribution record ", id, ": ", contribution.status().message()));
      }
      Statement update(db_, "UPDATE contributions SET data = ?2 WHERE id = ?1");
      update.Bind(1, id).BindBlob(2, contribution->SerializeAsString());
      if (update.Step() != SQLITE_DONE) {
        return fail(sqlite3_errmsg(db_));
      }
    }
    migrated = static_cast<int64_t>(rows.size());
  }
  if (absl::Status s = Exec(absl::StrCat("PRAGMA user_version = ", kSchemaVersion).c_str());
      !s.ok()) {
    return fail(std::string(s.message()));
  }
  if (!Exec("COMMIT").ok()) {
    return fail(sqlite3_errmsg(db_));
  }
  if (found != 0) {
    spdlog::info(
        "migrated the state database '{}' from schema version {} to {} ({} contribution "
        "records rewritten)",
        path_, found, kSchemaVersion, migrated);
  }
  return absl::OkStatus();
}

std::shared_ptr<DurableStore::Pending> DurableStore::Enqueue(WriteBatch batch) {
  auto pending = std::make_shared<Pending>();
  pending->batch = std::move(batch);
  absl::MutexLock lock(&mu_);
  if (stopping_) {
    pending->status = absl::UnavailableError("state store is closed");
    pending->done = true;
  } else {
    queue_.push_back(pending);
  }
  return pending;
}

absl::Status DurableStore::Wait(const std::shared_ptr<Pending>& pending) {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(&pending->done));
  return pending->status;
}

void DurableStore::WriterLoop() {
  for (;;) {
    std::deque<std::shared_ptr<Pending>> group;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() { return stopping_ || !queue_.empty(); };
      mu_.Await(absl::Condition(&ready));
      if (queue_.empty()) {
        return;
      }
      group.swap(queue_);
    }
    std::vector<absl::Status> results(group.size());
    std::vector<bool> written(group.size(), false);
    absl::Status status;
    {
      absl::MutexLock db_lock(&db_mu_);
      status = Exec("BEGIN IMMEDIATE").ok() ? absl::OkStatus() : WriteFailure();
      for (size_t i = 0; i < group.size(); ++i) {
        const WriteBatch& batch = group[i]->batch;
        auto voided = voided_.find(batch.run_id);
        if (voided != voided_.end() && batch.epoch <= voided->second.epoch) {
          results[i] = voided->second.status;
          continue;
        }
        written[i] = true;
        if (status.ok()) {
          status = WriteOne(batch);
        }
      }
      if (status.ok() && !Exec("COMMIT").ok()) {
        status = WriteFailure();
      }
      if (!status.ok()) {
        Exec("ROLLBACK").IgnoreError();  // SQLite may have rolled back already
        rows_.clear();
        for (size_t i = 0; i < group.size(); ++i) {
          if (written[i]) {
            Voided& v = voided_[group[i]->batch.run_id];
            v.epoch = std::max(v.epoch, group[i]->batch.epoch);
            v.status = status;
          }
        }
      }
      // One log line per kind of failure, not one per refused report.
      const std::string condition(FailureReason(status));
      if (!status.ok() && condition != failing_) {
        spdlog::error("{}; reports are refused with UNAVAILABLE until it is writable again",
                      std::string(status.message()));
      } else if (status.ok() && !failing_.empty()) {
        spdlog::info("the state database '{}' is writable again", path_);
      }
      failing_ = condition;
    }
    absl::MutexLock lock(&mu_);
    (status.ok() ? commits_ : failures_) += 1;
    for (size_t i = 0; i < group.size(); ++i) {
      group[i]->status = written[i] ? status : results[i];
      group[i]->done = true;
    }
  }
}

absl::Status DurableStore::WriteFailure() {
  const int code = sqlite3_extended_errcode(db_);
  const std::string error = sqlite3_errmsg(db_);
  const char* reason = "other";
  std::string message;
  switch (code & 0xff) {
    case SQLITE_FULL: {
      reason = "full";
      struct statvfs fs {};
      const std::string space =
          statvfs(dir_.c_str(), &fs) == 0
              ? absl::StrCat(static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize, " bytes free")
              : std::string("free space unknown");
      message = absl::StrCat("the state database '", path_,
                             "' is full (store.max_db_bytes=", limits_.max_db_bytes,
                             limits_.max_db_bytes == 0 ? ", unlimited" : "", "; ", space,
                             " on its file system): ", error);
      break;
    }
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM: {
      reason = "io";
      const int os_error = sqlite3_system_errno(db_);
      message = absl::StrCat("cannot write the state database '", path_, "': ", error,
                             os_error != 0 ? absl::StrCat(" (", std::strerror(os_error), ")") : "");
      break;
    }
    default:
      message = absl::StrCat("cannot write the state database '", path_, "': ", error);
  }
  absl::Status status = absl::UnavailableError(message);
  status.SetPayload(kReasonUrl, absl::Cord(reason));
  return status;
}

absl::Status DurableStore::SetLimits(const StoreLimits& limits) {
  absl::MutexLock db_lock(&db_mu_);
  const int64_t pages = limits.max_db_bytes > 0
                            ? std::max<int64_t>(1, limits.max_db_bytes / page_size_)
                            : unlimited_pages_;
  if (absl::Status s = Exec(absl::StrCat("PRAGMA max_page_count = ", pages).c_str()); !s.ok()) {
    return absl::UnavailableError(
        absl::StrCat("cannot limit the state database '", path_, "': ", s.message()));
  }
  limits_ = limits;
  rows_.clear();  // counts were not kept while no limit applied
  return absl::OkStatus();
}

absl::Status DurableStore::Trim(const std::string& run_id, int64_t rank, int64_t added,
                                int64_t keep) {
  if (keep <= 0 || added == 0) {
    return absl::OkStatus();
  }
  const bool steps = rank < 0;
  auto [rows, fresh] = rows_.try_emplace({run_id, rank}, 0);
  if (fresh) {
    Statement count(db_, steps ? "SELECT count(*) FROM steps WHERE run_id = ?1"
                               : "SELECT count(*) FROM seqs WHERE run_id = ?1 AND rank = ?2");
    count.Bind(1, run_id);
    if (!steps) {
      count.Bind(2, rank);
    }
    if (count.Step() != SQLITE_ROW) {
      rows_.erase(rows);
      return WriteFailure();
    }
    rows->second = sqlite3_column_int64(count.get(), 0);
  } else {
    rows->second += added;
  }
  if (rows->second <= keep) {
    return absl::OkStatus();
  }
  Statement drop(db_, steps
                          ? "DELETE FROM steps WHERE run_id = ?1 AND step IN (SELECT step FROM "
                            "steps WHERE run_id = ?1 ORDER BY step LIMIT ?3)"
                          : "DELETE FROM seqs WHERE run_id = ?1 AND rank = ?2 AND seq IN (SELECT "
                            "seq FROM seqs WHERE run_id = ?1 AND rank = ?2 ORDER BY seq LIMIT ?3)");
  drop.Bind(1, run_id).Bind(3, rows->second - keep);
  if (!steps) {
    drop.Bind(2, rank);
  }
  if (drop.Step() != SQLITE_DONE) {
    return WriteFailure();
  }
  rows->second = keep;
  return absl::OkStatus();
}

absl::Status DurableStore::WriteOne(const WriteBatch& b) {
  Statement run(db_,
                "INSERT INTO runs(run_id, world_size, finished, last_report_ns) VALUES(?, ?, ?, ?) "
                "ON CONFLICT(run_id) DO UPDATE SET world_size = excluded.world_size, "
                "finished = max(finished, excluded.finished), "
                "last_report_ns = max(last_report_ns, excluded.last_report_ns)");
  run.Bind(1, b.run_id)
      .Bind(2, b.world_size)
      .Bind(3, int64_t{b.finished})
      .Bind(4, ToNanos(b.last_report_time));
  if (run.Step() != SQLITE_DONE) {
    return WriteFailure();
  }
  if (b.has_report) {
    Statement add(db_, "INSERT INTO contributions(run_id, step, data) VALUES(?, ?, ?)");
    add.Bind(1, b.run_id)
        .Bind(2, static_cast<int64_t>(b.contribution.step()))
        .BindBlob(3, b.contribution.SerializeAsString());
    if (add.Step() != SQLITE_DONE) {
      return WriteFailure();
    }
    if (b.seq != 0) {
      Statement seq(db_, "INSERT OR IGNORE INTO seqs(run_id, rank, seq) VALUES(?, ?, ?)");
      seq.Bind(1, b.run_id).Bind(2, int64_t{b.rank}).Bind(3, static_cast<int64_t>(b.seq));
      if (seq.Step() != SQLITE_DONE) {
        return WriteFailure();
      }
      if (absl::Status s = Trim(b.run_id, b.rank, sqlite3_changes(db_), limits_.seqs_per_rank);
          !s.ok()) {
        return s;
      }
    }
  }
  int64_t added = 0;
  for (const auto& step : b.finalized) {
    const std::string summary = step.SerializeAsString();
    Statement put(db_, "INSERT OR IGNORE INTO steps(run_id, step, summary) VALUES(?, ?, ?)");
    put.Bind(1, b.run_id).Bind(2, static_cast<int64_t>(step.step())).BindBlob(3, summary);
    if (put.Step() != SQLITE_DONE) {
      return WriteFailure();
    }
    if (sqlite3_changes(db_) == 1) {
      ++added;
    } else {
      Statement replace(db_, "UPDATE steps SET summary = ?3 WHERE run_id = ?1 AND step = ?2");
      replace.Bind(1, b.run_id).Bind(2, static_cast<int64_t>(step.step())).BindBlob(3, summary);
      if (replace.Step() != SQLITE_DONE) {
        return WriteFailure();
      }
    }
    Statement drop(db_, "DELETE FROM contributions WHERE run_id = ? AND step = ?");
    drop.Bind(1, b.run_id).Bind(2, static_cast<int64_t>(step.step()));
    if (drop.Step() != SQLITE_DONE) {
      return WriteFailure();
    }
  }
  return Trim(b.run_id, -1, added, limits_.retention_steps);
}

absl::StatusOr<std::vector<StoredRun>> DurableStore::LoadAll(int64_t seqs_per_rank) {
  absl::MutexLock db_lock(&db_mu_);
  return Load(nullptr, seqs_per_rank);
}

absl::StatusOr<StoredRun> DurableStore::LoadRun(const std::string& run_id, int64_t seqs_per_rank) {
  absl::MutexLock db_lock(&db_mu_);
  auto runs = Load(&run_id, seqs_per_rank);
  if (!runs.ok()) {
    return runs.status();
  }
  if (runs->empty()) {
    return absl::NotFoundError(absl::StrCat("run '", run_id, "' is not in the state database"));
  }
  return std::move(runs->front());
}

absl::StatusOr<std::vector<StoredRun>> DurableStore::Load(const std::string* only_run,
                                                          int64_t seqs_per_rank) {
  const std::string where = only_run != nullptr ? " WHERE run_id = ?1" : "";
  auto query = [&](const std::string& sql) {
    auto statement = std::make_unique<Statement>(db_, sql.c_str());
    if (only_run != nullptr) {
      statement->Bind(1, *only_run);
    }
    return statement;
  };
  // A read that ends early must not pass for a smaller run.
  auto read_error = [&] {
    return absl::UnavailableError(
        absl::StrCat("cannot read the state database '", path_, "': ", sqlite3_errmsg(db_)));
  };
  std::vector<StoredRun> runs;
  std::map<std::string, size_t> index;
  auto r = query(absl::StrCat("SELECT run_id, world_size, finished, last_report_ns FROM runs",
                              where, " ORDER BY run_id"));
  int rc;
  while ((rc = r->Step()) == SQLITE_ROW) {
    StoredRun run;
    run.run_id = Text(r->get(), 0);
    run.world_size = static_cast<uint32_t>(sqlite3_column_int64(r->get(), 1));
    run.finished = sqlite3_column_int64(r->get(), 2) != 0;
    run.last_report_time = FromNanos(sqlite3_column_int64(r->get(), 3));
    index[run.run_id] = runs.size();
    runs.push_back(std::move(run));
  }
  if (rc != SQLITE_DONE) {
    return read_error();
  }
  auto s =
      query(absl::StrCat("SELECT run_id, summary FROM steps", where, " ORDER BY run_id, step"));
  while ((rc = s->Step()) == SQLITE_ROW) {
    auto it = index.find(Text(s->get(), 0));
    entrowatch::v1::StepSummary summary;
    if (it == index.end() || !summary.ParseFromString(Column(s->get(), 1))) {
      return absl::DataLossError(
          absl::StrCat("corrupt step record in the state database '", path_, "'"));
    }
    runs[it->second].steps.push_back(std::move(summary));
  }
  if (rc != SQLITE_DONE) {
    return read_error();
  }
  auto c = query(absl::StrCat("SELECT run_id, data, id FROM contributions", where, " ORDER BY id"));
  while ((rc = c->Step()) == SQLITE_ROW) {
    auto it = index.find(Text(c->get(), 0));
    if (it == index.end()) {
      return absl::DataLossError(
          absl::StrCat("contribution of an unknown run in the state database '", path_, "'"));
    }
    v1::Contribution contribution;
    if (!contribution.ParseFromString(Column(c->get(), 1)) ||
        contribution.normalized_size() != contribution.entropies_size() ||
        contribution.generated_size() != contribution.entropies_size()) {
      return absl::DataLossError(absl::StrCat("corrupt contribution record ",
                                              sqlite3_column_int64(c->get(), 2),
                                              " in the state database '", path_, "'"));
    }
    runs[it->second].pending.push_back(std::move(contribution));
  }
  if (rc != SQLITE_DONE) {
    return read_error();
  }
  auto q = query(
      absl::StrCat("SELECT run_id, rank, seq FROM (SELECT run_id, rank, seq, row_number() OVER "
                   "(PARTITION BY run_id, rank ORDER BY seq DESC) AS n FROM seqs",
                   where, ") WHERE n <= ?2 ORDER BY run_id, rank, seq"));
  q->Bind(2, seqs_per_rank);
  while ((rc = q->Step()) == SQLITE_ROW) {
    auto it = index.find(Text(q->get(), 0));
    if (it != index.end()) {
      runs[it->second].seqs[static_cast<uint32_t>(sqlite3_column_int64(q->get(), 1))].push_back(
          static_cast<uint64_t>(sqlite3_column_int64(q->get(), 2)));
    }
  }
  if (rc != SQLITE_DONE) {
    return read_error();
  }
  return runs;
}

absl::Status DurableStore::ForgetRun(const std::string& run_id) {
  absl::MutexLock db_lock(&db_mu_);
  absl::Status status = Exec("BEGIN IMMEDIATE").ok() ? absl::OkStatus() : WriteFailure();
  for (const char* sql :
       {"DELETE FROM runs WHERE run_id = ?", "DELETE FROM steps WHERE run_id = ?",
        "DELETE FROM contributions WHERE run_id = ?", "DELETE FROM seqs WHERE run_id = ?"}) {
    if (!status.ok()) {
      break;
    }
    Statement s(db_, sql);
    s.Bind(1, run_id);
    if (s.Step() != SQLITE_DONE) {
      status = WriteFailure();
    }
  }
  if (status.ok() && !Exec("COMMIT").ok()) {
    status = WriteFailure();
  }
  if (!status.ok()) {
    Exec("ROLLBACK").IgnoreError();
    rows_.clear();
    return status;
  }
  voided_.erase(run_id);
  rows_.erase(rows_.lower_bound({run_id, INT64_MIN}), rows_.upper_bound({run_id, INT64_MAX}));
  return absl::OkStatus();
}

int64_t DurableStore::DiskBytes() const { return FileBytes(path_) + FileBytes(path_ + "-wal"); }

uint64_t DurableStore::commits() const {
  absl::MutexLock lock(&mu_);
  return commits_;
}

uint64_t DurableStore::failures() const {
  absl::MutexLock lock(&mu_);
  return failures_;
}

}  // namespace entrowatch::store
