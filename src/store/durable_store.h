#pragma once

// Durable run state in SQLite (WAL mode) under state_dir. The log of accepted
// report contributions is the source of truth for steps still pending; a
// step's summary replaces its contributions in the same transaction when it
// is finalized. On restart every run is rebuilt by replaying its retained
// finalized summaries (StoreLimits) through a fresh analyzer (baselines and
// detectors are deterministic functions of them) and re-adding its pending
// contributions.
//
// Writes are group-committed by one writer thread: Commit() blocks until the
// batch is durable, so a report is acknowledged only after its effect is on
// disk. A failed write is a status naming the database and the cause, never
// a silent loss; the first failure of a kind is logged, then the recovery.
// Thread-safe.
//
// Records are protobuf messages: contributions are store::v1::Contribution
// (store/store.proto), step summaries entrowatch::v1::StepSummary. The
// database records its schema version (PRAGMA user_version); Open() migrates
// an older database and refuses a newer one.

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "entrowatch/v1/entrowatch.pb.h"
#include "store/store.pb.h"

struct sqlite3;

namespace entrowatch::store {

// The schema this build reads and writes. 1: databases written before the
// version was recorded (user_version 0), contributions in a host-endian
// binary layout; 2: contributions as store::v1::Contribution.
inline constexpr int kSchemaVersion = 2;

// Everything one accepted report changes.
struct WriteBatch {
  std::string run_id;
  // The run's in-memory generation. A failed commit voids every batch of the
  // run queued with an epoch up to its own: they were built on in-memory
  // state that included the refused changes. The caller rebuilds the run
  // (LoadRun) and queues later batches with a higher epoch.
  uint64_t epoch = 0;
  uint32_t world_size = 1;
  absl::Time last_report_time = absl::InfinitePast();
  bool has_report = false;  // false: only finalized steps / finished flag
  uint32_t rank = 0;
  uint64_t seq = 0;  // 0: no seq to remember
  v1::Contribution contribution;
  std::vector<entrowatch::v1::StepSummary> finalized;
  bool finished = false;
};

struct StoredRun {
  std::string run_id;
  uint32_t world_size = 1;
  bool finished = false;
  absl::Time last_report_time = absl::InfinitePast();
  std::vector<entrowatch::v1::StepSummary> steps;  // finalized, in order
  std::vector<v1::Contribution> pending;           // in acceptance order
  std::map<uint32_t, std::vector<uint64_t>> seqs;  // per rank, ascending
};

// Bounds on the database (config `store:`); 0 means none.
struct StoreLimits {
  // Finalized step summaries kept per run; the oldest are deleted in the
  // transaction that adds new ones.
  int64_t retention_steps = 0;
  // Seqs kept per (run, rank), the newest.
  int64_t seqs_per_rank = 0;
  // Size of the database file (PRAGMA max_page_count). A write that would
  // grow it further fails as "full", like a full disk.
  int64_t max_db_bytes = 0;
};

// Why a write failed, for a status returned by Wait(), Commit() or
// ForgetRun(): "full" (disk full or max_db_bytes reached), "io" (I/O error,
// file size limit, not writable) or "other"; "" when it did not fail.
absl::string_view FailureReason(const absl::Status& status);

class DurableStore {
 public:
  // Creates the directory if needed and opens (or creates) the database.
  // A database of an older schema version is migrated to kSchemaVersion in
  // one transaction (on failure it is left as it was). Fails with a message
  // naming the path when it is not writable, when a record cannot be
  // migrated, or when its schema version is newer than kSchemaVersion.
  static absl::StatusOr<std::unique_ptr<DurableStore>> Open(const std::string& dir);
  ~DurableStore();
  DurableStore(const DurableStore&) = delete;
  DurableStore& operator=(const DurableStore&) = delete;

  struct Pending;
  // Queues a batch without blocking; batches are written in queue order, so
  // callers queue under the lock that ordered their in-memory changes.
  std::shared_ptr<Pending> Enqueue(WriteBatch batch);
  // Blocks until the queued batch is committed (with others written
  // meanwhile). A failure is UNAVAILABLE with a message naming the database,
  // and FailureReason() tells its kind; nothing of the batch was written.
  absl::Status Wait(const std::shared_ptr<Pending>& pending);
  absl::Status Commit(WriteBatch batch) { return Wait(Enqueue(std::move(batch))); }

  // Applies new limits; they hold from the next transaction. A size cap
  // below the current size keeps the database at its current size.
  absl::Status SetLimits(const StoreLimits& limits);

  // Every run, for start-up: at most seqs_per_rank newest seqs per rank.
  // DataLoss naming the database for a record that does not parse or a
  // contribution whose per-token arrays differ in length.
  absl::StatusOr<std::vector<StoredRun>> LoadAll(int64_t seqs_per_rank);
  // One run as committed; NotFound when nothing of it is stored.
  absl::StatusOr<StoredRun> LoadRun(const std::string& run_id, int64_t seqs_per_rank);

  // Deletes a run (idle expiry).
  absl::Status ForgetRun(const std::string& run_id);

  // Bytes of the database file and its WAL on disk.
  int64_t DiskBytes() const;

  const std::string& path() const { return path_; }
  uint64_t commits() const;
  uint64_t failures() const;

 private:
  struct Voided {
    uint64_t epoch = 0;
    absl::Status status;
  };

  DurableStore(sqlite3* db, std::string dir, std::string path);
  void WriterLoop();
  absl::Status WriteOne(const WriteBatch& batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(db_mu_);
  // Keeps the newest `keep` rows of a run's steps (rank -1) or of a (run,
  // rank)'s seqs, `added` rows having just been inserted; 0 keeps all.
  absl::Status Trim(const std::string& run_id, int64_t rank, int64_t added, int64_t keep)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(db_mu_);
  // The status of a failed transaction, from the connection's last error.
  absl::Status WriteFailure() ABSL_EXCLUSIVE_LOCKS_REQUIRED(db_mu_);
  absl::StatusOr<std::vector<StoredRun>> Load(const std::string* only_run, int64_t seqs_per_rank)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(db_mu_);
  absl::Status Exec(const char* sql);
  // Brings the schema to kSchemaVersion (Open).
  absl::Status Migrate();

  sqlite3* const db_;
  const std::string dir_;
  const std::string path_;
  absl::Mutex db_mu_;  // one SQLite connection
  StoreLimits limits_ ABSL_GUARDED_BY(db_mu_);
  int64_t page_size_ ABSL_GUARDED_BY(db_mu_) = 4096;
  int64_t unlimited_pages_ ABSL_GUARDED_BY(db_mu_) = 0;  // SQLite's own max_page_count
  // Rows per (run, rank) (rank -1: steps), counted once and kept up to date
  // while limits apply; forgotten when a transaction fails.
  std::map<std::pair<std::string, int64_t>, int64_t> rows_ ABSL_GUARDED_BY(db_mu_);
  // Per run: batches up to this epoch fail with this status.
  std::map<std::string, Voided> voided_ ABSL_GUARDED_BY(db_mu_);
  std::string failing_ ABSL_GUARDED_BY(db_mu_);  // the logged failure, until a commit succeeds
  mutable absl::Mutex mu_;
  std::deque<std::shared_ptr<Pending>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t commits_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t failures_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread writer_;
};

struct DurableStore::Pending {
  WriteBatch batch;
  absl::Status status;
  bool done = false;
};

}  // namespace entrowatch::store
