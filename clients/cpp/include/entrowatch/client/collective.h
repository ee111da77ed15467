#pragma once

// Collective operations across the ranks of a training job, as the job's own
// communicator provides them. The step aggregator (step_aggregator.h) needs
// three: a sum all-reduce, a max all-reduce and an all-gather, on small host
// vectors of doubles.
//
// Contract shared by every implementation: each of the world_size ranks
// makes the same sequence of calls with the same sizes (as with NCCL or MPI);
// a call returns once every rank's contribution is in, and every rank then
// holds bit-identical results. A rank that never makes its call leaves the
// others waiting (CpuCollectiveGroup bounds that wait; see its options).
//
// Implementations:
//   CpuCollectiveGroup (below): threads of one process sharing memory; for
//     tests and single-process multi-threaded trainers.
//   NcclCollective (nccl_collective.h): the caller's ncclComm_t and
//     cudaStream_t; built when CMake finds NCCL.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace entrowatch::client {

// One rank's handle on a communicator. Not thread-safe: one thread of a rank
// calls it at a time (as with a ncclComm_t).
class Collective {
 public:
  virtual ~Collective() = default;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;

  // In place: values[i] becomes the sum (or maximum) over ranks of values[i].
  virtual absl::Status AllReduceSum(absl::Span<double> values) = 0;
  virtual absl::Status AllReduceSum(absl::Span<float> values) = 0;
  virtual absl::Status AllReduceMax(absl::Span<double> values) = 0;

  // out.size() must be send.size() * world_size(); out[r * send.size() + i]
  // becomes send[i] of rank r.
  virtual absl::Status AllGather(absl::Span<const double> send, absl::Span<double> out) = 0;
  virtual absl::Status AllGather(absl::Span<const float> send, absl::Span<float> out) = 0;
};

struct CpuCollectiveOptions {
  // How long a rank waits for the others at one call before it returns
  // DeadlineExceeded (a rank that stopped calling must not hang the rest).
  absl::Duration timeout = absl::Seconds(60);
};

// A communicator for `world_size` threads of one process. Every reduction
// adds (or compares) the ranks' values in rank order 0..world_size-1, so
// results are deterministic and identical on all ranks. Ranks disagreeing on
// a call's size (or operation, or output size) all get InvalidArgument and
// the group goes on. After a timeout the group is broken: every later call on
// every rank returns DeadlineExceeded at once.
//
// The group must outlive its members; member(r) is used by rank r's thread.
class CpuCollectiveGroup {
 public:
  static absl::StatusOr<std::unique_ptr<CpuCollectiveGroup>> Create(
      int world_size, CpuCollectiveOptions options = {});
  ~CpuCollectiveGroup();

  CpuCollectiveGroup(const CpuCollectiveGroup&) = delete;
  CpuCollectiveGroup& operator=(const CpuCollectiveGroup&) = delete;

  int world_size() const { return static_cast<int>(members_.size()); }
  Collective* member(int rank) const;

 private:
  class Member;
  enum class Op { kSum, kMax, kGather };

  CpuCollectiveGroup(int world_size, CpuCollectiveOptions options);

  // Runs one collective for `rank`: publishes (op, send) and, once all ranks
  // have, computes this rank's `out` from every rank's send in rank order.
  template <typename T>
  absl::Status Run(int rank, Op op, absl::Span<const T> send, absl::Span<T> out);
  // Waits until every rank arrived at the current phase; false on timeout
  // (the group is then broken).
  bool Arrive(absl::Time deadline) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const CpuCollectiveOptions options_;
  std::vector<std::unique_ptr<Member>> members_;

  absl::Mutex mu_;
  int arrived_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  absl::CondVar all_arrived_;
  // What each rank published for the current call; read by all ranks between
  // the two barriers of a call, written only by its rank before the first.
  struct Slot {
    Op op = Op::kSum;
    bool is_double = true;
    const void* data = nullptr;
    size_t size = 0;
    bool out_size_ok = true;
  };
  std::vector<Slot> slots_;
};

}  // namespace entrowatch::client
