#pragma once

// Durable run state in SQLite (WAL mode) under state_dir. The log of accepted
// report contributions is the source of truth for steps still pending; a
// step's summary replaces its contributions in the same transaction when it
// is finalized. On restart every run is rebuilt by replaying its finalized
// summaries through a fresh analyzer (baselines and detectors are
// deterministic functions of them) and re-adding its pending contributions.
//
// Writes are group-committed by one writer thread: Commit() blocks until the
// batch is durable, so a report is acknowledged only after its effect is on
// disk. Thread-safe.

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "analysis/step_aggregator.h"
#include "entrowatch/v1/entrowatch.pb.h"

struct sqlite3;

namespace entrowatch::store {

// Everything one accepted report changes.
struct WriteBatch {
  std::string run_id;
  uint32_t world_size = 1;
  absl::Time last_report_time = absl::InfinitePast();
  bool has_report = false;  // false: only finalized steps / finished flag
  uint32_t rank = 0;
  uint64_t seq = 0;  // 0: no seq to remember
  analysis::ReportContribution contribution;
  std::vector<entrowatch::v1::StepSummary> finalized;
  bool finished = false;
};

struct StoredRun {
  std::string run_id;
  uint32_t world_size = 1;
  bool finished = false;
  absl::Time last_report_time = absl::InfinitePast();
  std::vector<entrowatch::v1::StepSummary> steps;     // finalized, in order
  std::vector<analysis::ReportContribution> pending;  // in acceptance order
  std::map<uint32_t, std::vector<uint64_t>> seqs;     // per rank, ascending
};

class DurableStore {
 public:
  // Creates the directory if needed and opens (or creates) the database.
  // Fails with a message naming the path when it is not writable.
  static absl::StatusOr<std::unique_ptr<DurableStore>> Open(const std::string& dir);
  ~DurableStore();
  DurableStore(const DurableStore&) = delete;
  DurableStore& operator=(const DurableStore&) = delete;

  struct Pending;
  // Queues a batch without blocking; batches are written in queue order, so
  // callers queue under the lock that ordered their in-memory changes.
  std::shared_ptr<Pending> Enqueue(WriteBatch batch);
  // Blocks until the queued batch is committed (with others written meanwhile).
  absl::Status Wait(const std::shared_ptr<Pending>& pending);
  absl::Status Commit(WriteBatch batch) { return Wait(Enqueue(std::move(batch))); }

  // Every run, for start-up.
  absl::StatusOr<std::vector<StoredRun>> LoadAll(int64_t seqs_per_rank);

  // Deletes a run (idle expiry).
  absl::Status ForgetRun(const std::string& run_id);

  const std::string& path() const { return path_; }
  uint64_t commits() const;
  uint64_t failures() const;

 private:
  DurableStore(sqlite3* db, std::string path);
  void WriterLoop();
  absl::Status WriteOne(const WriteBatch& batch);
  absl::Status Exec(const char* sql);

  sqlite3* const db_;
  const std::string path_;
  absl::Mutex db_mu_;  // one SQLite connection
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

// Compact binary form of a contribution (exposed for tests).
std::string EncodeContribution(const analysis::ReportContribution& c);
absl::StatusOr<analysis::ReportContribution> DecodeContribution(const std::string& bytes);

}  // namespace entrowatch::store
