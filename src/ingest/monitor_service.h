#pragma once

// The gRPC Monitor service (callback API). Handlers are thin: validate,
// enqueue, and answer once a worker has processed the report. No compute on
// gRPC threads.

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_set>

#include "absl/status/statusor.h"
#include "entrowatch/v1/entrowatch.grpc.pb.h"
#include "ingest/auth.h"
#include "ingest/memory_guard.h"
#include "ingest/validate.h"
#include "ingest/work_queue.h"

namespace entrowatch::ingest {

// What the service needs from the rest of the daemon. Implementations are
// thread-safe; calls come from gRPC threads.
class RunDirectory {
 public:
  virtual ~RunDirectory() = default;
  virtual absl::StatusOr<entrowatch::v1::RunStatus> GetRun(
      const entrowatch::v1::GetRunRequest& request) = 0;
  virtual entrowatch::v1::ListRunsResponse ListRuns() = 0;
  virtual absl::StatusOr<entrowatch::v1::RunStatus> EndRun(const std::string& run_id) = 0;
  // Accepts the run's current regime (clears its incidents, rebases its
  // baselines); NOT_FOUND for an unknown run.
  virtual absl::StatusOr<entrowatch::v1::RunStatus> EndIncident(const std::string& run_id,
                                                                const std::string& reason) = 0;
};

// Counts every outcome. Thread-safe.
class IngestObserver {
 public:
  virtual ~IngestObserver() = default;
  // A report arrived (before validation).
  virtual void OnReceived(int64_t bytes) = 0;
  // Its final outcome, as sent (Ack.code, duplicate, late).
  virtual void OnOutcome(const entrowatch::v1::Ack& ack) = 0;
  // A stream was refused, or ended early, because the daemon is over its
  // memory budget.
  virtual void OnStreamShed() {}
};

class StreamReactor;

class MonitorService final : public entrowatch::v1::Monitor::CallbackService {
 public:
  // All pointers must outlive the service; memory_guard may be null (off).
  MonitorService(const ValidationLimits& limits, WorkQueue* queue, RunDirectory* runs,
                 IngestObserver* observer, MemoryGuard* memory_guard = nullptr);
  MonitorService(const MonitorService&) = delete;
  MonitorService& operator=(const MonitorService&) = delete;

  grpc::ServerBidiReactor<entrowatch::v1::Report, entrowatch::v1::Ack>* Stream(
      grpc::CallbackServerContext* context) override;
  grpc::ServerUnaryReactor* Submit(grpc::CallbackServerContext* context,
                                   const entrowatch::v1::Report* request,
                                   entrowatch::v1::Ack* response) override;
  grpc::ServerUnaryReactor* GetRun(grpc::CallbackServerContext* context,
                                   const entrowatch::v1::GetRunRequest* request,
                                   entrowatch::v1::RunStatus* response) override;
  grpc::ServerUnaryReactor* ListRuns(grpc::CallbackServerContext* context,
                                     const entrowatch::v1::ListRunsRequest* request,
                                     entrowatch::v1::ListRunsResponse* response) override;
  grpc::ServerUnaryReactor* EndRun(grpc::CallbackServerContext* context,
                                   const entrowatch::v1::EndRunRequest* request,
                                   entrowatch::v1::EndRunResponse* response) override;
  grpc::ServerUnaryReactor* EndIncident(grpc::CallbackServerContext* context,
                                        const entrowatch::v1::EndIncidentRequest* request,
                                        entrowatch::v1::EndIncidentResponse* response) override;

  void set_limits(const ValidationLimits& limits);
  // Replaces the token grants (start-up and reload). Never null.
  void set_authorizer(std::shared_ptr<const Authorizer> authorizer);
  std::shared_ptr<const Authorizer> authorizer() const;

  // Validation shared by both ingest paths (limits may change on reload).
  absl::Status Admit(const entrowatch::v1::Report& report);
  WorkQueue* queue() { return queue_; }
  // True (and counted) while the daemon is over its memory budget; then the
  // streams with a read outstanding are ended first (ShedReaders).
  bool OverMemoryBudget();
  absl::Status OverBudget() const { return memory_guard_->OverBudget(); }
  IngestObserver* observer() { return observer_; }

  // Streams with a read outstanding: each one may be receiving a whole
  // message into gRPC's buffers, which no ingest bound counts yet.
  void AddReader(StreamReactor* stream);
  void RemoveReader(StreamReactor* stream);
  // How many streams have a read outstanding now.
  int64_t reading_streams();

 private:
  // Ends every stream with a read outstanding (RESOURCE_EXHAUSTED), so that
  // gRPC drops what it holds of their messages; clients resend.
  void ShedReaders();

  mutable absl::Mutex mu_;
  ValidationLimits limits_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const Authorizer> authorizer_ ABSL_GUARDED_BY(mu_);
  WorkQueue* const queue_;
  RunDirectory* const runs_;
  IngestObserver* const observer_;
  MemoryGuard* const memory_guard_;
  absl::Mutex readers_mu_;
  std::unordered_set<StreamReactor*> readers_ ABSL_GUARDED_BY(readers_mu_);
};

// An Ack naming its report (run, rank, seq, step), to be filled.
entrowatch::v1::Ack AckFor(const entrowatch::v1::Report& report);
// An Ack for a report refused before processing.
entrowatch::v1::Ack RejectionAck(const entrowatch::v1::Report& report, const absl::Status& status);

}  // namespace entrowatch::ingest
