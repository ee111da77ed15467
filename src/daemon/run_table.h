#pragma once

// The runs the daemon tracks, by id: at most max_runs at once; runs idle for
// runs.idle_expiry are taken out by the sweeper. Thread-safe; the table's
// lock is taken before a run's.

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "daemon/run.h"

namespace entrowatch::daemon {

class RunTable {
 public:
  explicit RunTable(int max_runs) : max_runs_(max_runs) {}
  RunTable(const RunTable&) = delete;
  RunTable& operator=(const RunTable&) = delete;

  // The run with this id; when unknown, the one `make` builds (called under
  // the table's lock, so at most once per id), with *created set.
  // ResourceExhausted naming runs.max_runs when that many are tracked.
  absl::StatusOr<std::shared_ptr<Run>> FindOrAdd(const std::string& run_id,
                                                 absl::FunctionRef<std::unique_ptr<Run>()> make,
                                                 bool* created);
  // nullptr when unknown.
  std::shared_ptr<Run> Find(const std::string& run_id) const;
  // Every run, ordered by id.
  std::vector<std::shared_ptr<Run>> All() const;
  // Takes out the runs idle for `idle` at `now` (monotonic) and returns them.
  std::vector<std::shared_ptr<Run>> RemoveIdle(absl::Duration now, absl::Duration idle);
  size_t size() const;
  // A lower limit refuses new runs until enough expire; none is removed.
  void set_max_runs(int max_runs);

 private:
  mutable absl::Mutex mu_;
  int max_runs_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<Run>> runs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace entrowatch::daemon
