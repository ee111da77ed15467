#include "store/run_registry.h"

#include "absl/strings/str_cat.h"

namespace entrowatch::store {

bool SeqWindow::Contains(uint64_t seq) const {
  return (evicted_ && seq <= floor_) || recent_.count(seq) != 0;
}

void SeqWindow::Insert(uint64_t seq) {
  recent_.insert(seq);
  while (static_cast<int64_t>(recent_.size()) > capacity_) {
    floor_ = *recent_.begin();
    evicted_ = true;
    recent_.erase(recent_.begin());
  }
}

absl::StatusOr<std::shared_ptr<RunState>> RunRegistry::GetOrCreate(
    const std::string& run_id, const analysis::AggregationOptions& options, bool* created) {
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
  auto run = std::make_shared<RunState>(run_id, options);
  runs_.emplace(run_id, run);
  return run;
}

std::shared_ptr<RunState> RunRegistry::Find(const std::string& run_id) const {
  absl::MutexLock lock(&mu_);
  auto it = runs_.find(run_id);
  return it == runs_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<RunState>> RunRegistry::All() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::shared_ptr<RunState>> out;
  out.reserve(runs_.size());
  for (const auto& [id, run] : runs_) {
    out.push_back(run);
  }
  return out;
}

std::vector<std::shared_ptr<RunState>> RunRegistry::ExpireIdle(absl::Duration now,
                                                               absl::Duration idle) {
  std::vector<std::shared_ptr<RunState>> expired;
  absl::MutexLock lock(&mu_);
  for (auto it = runs_.begin(); it != runs_.end();) {
    bool stale;
    {
      absl::MutexLock run_lock(&it->second->mu);
      stale = now - it->second->last_activity >= idle;
    }
    if (stale) {
      expired.push_back(it->second);
      it = runs_.erase(it);
    } else {
      ++it;
    }
  }
  return expired;
}

size_t RunRegistry::size() const {
  absl::MutexLock lock(&mu_);
  return runs_.size();
}

void RunRegistry::set_max_runs(int max_runs) {
  absl::MutexLock lock(&mu_);
  max_runs_ = max_runs;
}

}  // namespace entrowatch::store
