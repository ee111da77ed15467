#include "store/durable_store.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

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

class Writer {
 public:
  template <typename T>
  void Put(T v) {
    out_.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  template <typename T>
  void PutVector(const std::vector<T>& v) {
    Put<uint64_t>(v.size());
    out_.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(const std::string& in) : in_(in) {}
  template <typename T>
  bool Get(T* v) {
    if (pos_ + sizeof(T) > in_.size()) {
      return false;
    }
    std::memcpy(v, in_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  template <typename T>
  bool GetVector(std::vector<T>* v) {
    uint64_t n = 0;
    if (!Get(&n) || n > (in_.size() - pos_) / sizeof(T)) {
      return false;
    }
    v->resize(n);
    std::memcpy(v->data(), in_.data() + pos_, n * sizeof(T));
    pos_ += n * sizeof(T);
    return true;
  }
  bool done() const { return pos_ == in_.size(); }

 private:
  const std::string& in_;
  size_t pos_ = 0;
};

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

}  // namespace

std::string EncodeContribution(const analysis::ReportContribution& c) {
  Writer w;
  w.Put<uint32_t>(c.rank);
  w.Put<uint32_t>(c.world_size);
  w.Put<uint64_t>(c.step);
  w.Put<int32_t>(c.phase);
  w.PutVector(c.entropies);
  w.PutVector(c.normalized);
  std::vector<uint8_t> generated(c.generated.begin(), c.generated.end());
  w.PutVector(generated);
  w.Put<double>(c.top1_sum);
  w.Put<int64_t>(c.top1_count);
  w.Put<double>(c.surprisal_sum);
  w.Put<int64_t>(c.surprisal_count);
  w.Put<uint64_t>(c.layers.size());
  for (const auto& [layer, heads] : c.layers) {
    w.Put<uint32_t>(layer);
    w.PutVector(heads);
  }
  w.Put<uint8_t>(c.has_grad);
  w.Put<double>(c.grad_norm);
  w.Put<uint8_t>(c.has_loss);
  w.Put<double>(c.loss);
  w.Put<double>(c.learning_rate);
  return w.Take();
}

absl::StatusOr<analysis::ReportContribution> DecodeContribution(const std::string& bytes) {
  analysis::ReportContribution c;
  Reader r(bytes);
  int32_t phase = 0;
  std::vector<uint8_t> generated;
  uint64_t layers = 0;
  bool ok = r.Get(&c.rank) && r.Get(&c.world_size) && r.Get(&c.step) && r.Get(&phase) &&
            r.GetVector(&c.entropies) && r.GetVector(&c.normalized) && r.GetVector(&generated) &&
            r.Get(&c.top1_sum) && r.Get(&c.top1_count) && r.Get(&c.surprisal_sum) &&
            r.Get(&c.surprisal_count) && r.Get(&layers);
  for (uint64_t i = 0; ok && i < layers; ++i) {
    uint32_t layer = 0;
    ok = r.Get(&layer) && r.GetVector(&c.layers[layer]);
  }
  uint8_t has_grad = 0;
  uint8_t has_loss = 0;
  ok = ok && r.Get(&has_grad) && r.Get(&c.grad_norm) && r.Get(&has_loss) && r.Get(&c.loss) &&
       r.Get(&c.learning_rate) && r.done();
  if (!ok || generated.size() != c.entropies.size() || c.normalized.size() != c.entropies.size()) {
    return absl::DataLossError("corrupt contribution record in the state database");
  }
  c.phase = static_cast<entrowatch::v1::Phase>(phase);
  c.generated.assign(generated.begin(), generated.end());
  c.has_grad = has_grad != 0;
  c.has_loss = has_loss != 0;
  return c;
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
  std::unique_ptr<DurableStore> store(new DurableStore(db, path));
  for (const char* sql : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL",
                          "PRAGMA busy_timeout=5000", kSchema}) {
    if (absl::Status s = store->Exec(sql); !s.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("state_dir: cannot initialize '", path, "': ", s.message()));
    }
  }
  store->writer_ = std::thread([s = store.get()] { s->WriterLoop(); });
  return store;
}

DurableStore::DurableStore(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}

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
    absl::Status status;
    {
      absl::MutexLock db_lock(&db_mu_);
      status = Exec("BEGIN IMMEDIATE");
      for (const auto& p : group) {
        if (status.ok()) {
          status = WriteOne(p->batch);
        }
      }
      status = status.ok() ? Exec("COMMIT") : status;
      if (!status.ok()) {
        Exec("ROLLBACK").IgnoreError();
        status = absl::UnavailableError(
            absl::StrCat("cannot write the state database '", path_,
                         "' (disk full or not writable?): ", status.message()));
      }
    }
    absl::MutexLock lock(&mu_);
    (status.ok() ? commits_ : failures_) += 1;
    for (const auto& p : group) {
      p->status = status;
      p->done = true;
    }
  }
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
    return absl::UnavailableError(sqlite3_errmsg(db_));
  }
  if (b.has_report) {
    Statement add(db_, "INSERT INTO contributions(run_id, step, data) VALUES(?, ?, ?)");
    add.Bind(1, b.run_id)
        .Bind(2, static_cast<int64_t>(b.contribution.step))
        .BindBlob(3, EncodeContribution(b.contribution));
    if (add.Step() != SQLITE_DONE) {
      return absl::UnavailableError(sqlite3_errmsg(db_));
    }
    if (b.seq != 0) {
      Statement seq(db_, "INSERT OR IGNORE INTO seqs(run_id, rank, seq) VALUES(?, ?, ?)");
      seq.Bind(1, b.run_id).Bind(2, int64_t{b.rank}).Bind(3, static_cast<int64_t>(b.seq));
      if (seq.Step() != SQLITE_DONE) {
        return absl::UnavailableError(sqlite3_errmsg(db_));
      }
    }
  }
  for (const auto& step : b.finalized) {
    Statement put(db_, "INSERT OR REPLACE INTO steps(run_id, step, summary) VALUES(?, ?, ?)");
    put.Bind(1, b.run_id)
        .Bind(2, static_cast<int64_t>(step.step()))
        .BindBlob(3, step.SerializeAsString());
    Statement drop(db_, "DELETE FROM contributions WHERE run_id = ? AND step = ?");
    drop.Bind(1, b.run_id).Bind(2, static_cast<int64_t>(step.step()));
    if (put.Step() != SQLITE_DONE || drop.Step() != SQLITE_DONE) {
      return absl::UnavailableError(sqlite3_errmsg(db_));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<StoredRun>> DurableStore::LoadAll(int64_t seqs_per_rank) {
  absl::MutexLock db_lock(&db_mu_);
  std::vector<StoredRun> runs;
  std::map<std::string, size_t> index;
  Statement r(db_, "SELECT run_id, world_size, finished, last_report_ns FROM runs ORDER BY run_id");
  while (r.Step() == SQLITE_ROW) {
    StoredRun run;
    run.run_id = reinterpret_cast<const char*>(sqlite3_column_text(r.get(), 0));
    run.world_size = static_cast<uint32_t>(sqlite3_column_int64(r.get(), 1));
    run.finished = sqlite3_column_int64(r.get(), 2) != 0;
    run.last_report_time = FromNanos(sqlite3_column_int64(r.get(), 3));
    index[run.run_id] = runs.size();
    runs.push_back(std::move(run));
  }
  Statement s(db_, "SELECT run_id, summary FROM steps ORDER BY run_id, step");
  while (s.Step() == SQLITE_ROW) {
    auto it = index.find(reinterpret_cast<const char*>(sqlite3_column_text(s.get(), 0)));
    entrowatch::v1::StepSummary summary;
    if (it == index.end() || !summary.ParseFromString(Column(s.get(), 1))) {
      return absl::DataLossError("corrupt step record in the state database");
    }
    runs[it->second].steps.push_back(std::move(summary));
  }
  Statement c(db_, "SELECT run_id, data FROM contributions ORDER BY id");
  while (c.Step() == SQLITE_ROW) {
    auto it = index.find(reinterpret_cast<const char*>(sqlite3_column_text(c.get(), 0)));
    if (it == index.end()) {
      return absl::DataLossError("contribution of an unknown run in the state database");
    }
    auto contribution = DecodeContribution(Column(c.get(), 1));
    if (!contribution.ok()) {
      return contribution.status();
    }
    runs[it->second].pending.push_back(*std::move(contribution));
  }
  Statement q(db_,
              "SELECT run_id, rank, seq FROM (SELECT run_id, rank, seq, row_number() OVER "
              "(PARTITION BY run_id, rank ORDER BY seq DESC) AS n FROM seqs) WHERE n <= ? "
              "ORDER BY run_id, rank, seq");
  q.Bind(1, seqs_per_rank);
  while (q.Step() == SQLITE_ROW) {
    auto it = index.find(reinterpret_cast<const char*>(sqlite3_column_text(q.get(), 0)));
    if (it != index.end()) {
      runs[it->second].seqs[static_cast<uint32_t>(sqlite3_column_int64(q.get(), 1))].push_back(
          static_cast<uint64_t>(sqlite3_column_int64(q.get(), 2)));
    }
  }
  return runs;
}

absl::Status DurableStore::ForgetRun(const std::string& run_id) {
  absl::MutexLock db_lock(&db_mu_);
  for (const char* sql :
       {"DELETE FROM runs WHERE run_id = ?", "DELETE FROM steps WHERE run_id = ?",
        "DELETE FROM contributions WHERE run_id = ?", "DELETE FROM seqs WHERE run_id = ?"}) {
    Statement s(db_, sql);
    s.Bind(1, run_id);
    if (s.Step() != SQLITE_DONE) {
      return absl::UnavailableError(sqlite3_errmsg(db_));
    }
  }
  return absl::OkStatus();
}

uint64_t DurableStore::commits() const {
  absl::MutexLock lock(&mu_);
  return commits_;
}

uint64_t DurableStore::failures() const {
  absl::MutexLock lock(&mu_);
  return failures_;
}

}  // namespace entrowatch::store
