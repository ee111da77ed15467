#include "daemon/run_table.h"

#include "absl/strings/str_cat.h"

namespace entrowatch::daemon {

absl::StatusOr<std::shared_ptr<Run>> RunTable::FindOrAdd(
    const std::string& run_id, absl::FunctionRef<std::unique_ptr<Run>()> make, bool* created) {
  absl::MutexLock lock(&mu_);
  *created = false;
  auto it = runs_.find(run_id);
  if (it != runs_.end()) {
    return it->second;
  }
  if (static_cast<int>(runs_.size()) >= max_runs_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot track run '", run_id, "': ", max_runs_,
                     " runs already tracked (runs.max_runs); finished or idle runs expire after "
                     "runs.idle_expiry_seconds"));
  }
  *created = true;
  std::shared_ptr<Run> run = make();
  runs_.emplace(run_id, run);
  return run;
}

std::shared_ptr<Run> RunTable::Find(const std::string& run_id) const {
  absl::MutexLock lock(&mu_);
  auto it = runs_.find(run_id);
  return it == runs_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<Run>> RunTable::All() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::shared_ptr<Run>> out;
  out.reserve(runs_.size());
  for (const auto& [id, run] : runs_) {
    out.push_back(run);
  }
  return out;
}

std::vector<std::shared_ptr<Run>> RunTable::RemoveIdle(absl::Duration now, absl::Duration idle) {
  std::vector<std::shared_ptr<Run>> removed;
  absl::MutexLock lock(&mu_);
  for (auto it = runs_.begin(); it != runs_.end();) {
    if (it->second->IdleAt(now, idle)) {
      removed.push_back(it->second);
      it = runs_.erase(it);
    } else {
      ++it;
    }
  }
  return removed;
}

size_t RunTable::size() const {
  absl::MutexLock lock(&mu_);
  return runs_.size();
}

void RunTable::set_max_runs(int max_runs) {
  absl::MutexLock lock(&mu_);
  max_runs_ = max_runs;
}

}  // namespace entrowatch::daemon
