#include "ingest/monitor_service.h"

#include <deque>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "ingest/grpc_status.h"

namespace entrowatch::ingest {
namespace {

using entrowatch::v1::Ack;
using entrowatch::v1::Report;

// Bytes of an EndIncident reason (free text, logged).
constexpr size_t kMaxIncidentReason = 1024;

absl::Status QueueFull(const WorkQueue& queue) {
  return absl::ResourceExhaustedError(absl::StrCat("ingest queue full (", queue.reports(),
                                                   " reports, ", queue.bytes(),
                                                   " bytes queued): retry with backoff"));
}

absl::Status OverCapacity(const WorkQueue& queue, int64_t bytes) {
  return absl::ResourceExhaustedError(absl::StrCat(
      "entrowatchd is over capacity: the ingest queue is full and waiting would pass "
      "ingest.memory_limit_bytes=",
      queue.memory_limit_bytes(), " or ingest.max_waiting_reports=", queue.max_waiting(), " (",
      queue.bytes(), " bytes queued, ", queue.waiting_reports(), " reports of ",
      queue.waiting_bytes(), " bytes waiting, this report ", bytes,
      " bytes): reconnect and resend after backoff"));
}

absl::Status ShuttingDown() { return absl::UnavailableError("entrowatchd is shutting down"); }

}  // namespace

// One bidirectional stream. Reads one report at a time; while the work queue
// is full it stops reading (flow control reaches the client through HTTP/2)
// and its report waits for room. When waiting would pass the ingest memory
// bounds, the report is answered UNAVAILABLE and the stream ends with
// RESOURCE_EXHAUSTED after the queued reports are answered.
// Over the memory budget no read is started (the stream ends the same way),
// and a read outstanding is cut short (Shed): the stream ends at once with
// RESOURCE_EXHAUSTED, and the Acks of its queued reports are not sent (the
// client resends those reports; they are duplicates by then).
// Acks are written one at a time, in the order reports finish. Deletes itself
// once gRPC is done with it (OnDone) and no queued report refers to it.
class StreamReactor final : public grpc::ServerBidiReactor<Report, Ack> {
 public:
  StreamReactor(MonitorService* service, grpc::CallbackServerContext* context)
      : service_(service), authorizer_(service->authorizer()) {
    auto grant = authorizer_->Authenticate(*context);
    if (!grant.ok()) {
      finished_ = true;
      Finish(ToGrpcStatus(grant.status()));
      return;
    }
    grant_ = *grant;
    if (service_->OverMemoryBudget()) {
      // Shed before reading anything: the client retries after backoff.
      service_->observer()->OnStreamShed();
      finished_ = true;
      Finish(ToGrpcStatus(service_->OverBudget()));
      return;
    }
    ReadNext(/*checked_budget=*/true);
  }

  void OnReadDone(bool ok) override {
    service_->RemoveReader(this);
    if (!ok) {
      mu_.Lock();
      reads_done_ = true;
      return UnlockAndMaybeFinish();
    }
    auto report = std::make_unique<Report>();
    report->Swap(&request_);
    service_->observer()->OnReceived(static_cast<int64_t>(report->ByteSizeLong()));
    absl::Status status = Authorizer::CheckRun(grant_, report->run_id());
    if (status.ok()) {
      status = service_->Admit(*report);
    }
    if (!status.ok()) {
      Send(RejectionAck(*report, status), /*finished_work=*/false);
      ReadNext();
      return;
    }
    {
      absl::MutexLock lock(&mu_);
      ++inflight_;
    }
    parked_.bytes = ReportBytes(*report);
    parked_.report = report.get();
    parked_.owned = std::move(report);
    parked_.done = [this](Ack ack) { Send(std::move(ack), /*finished_work=*/true); };
    shard_ = service_->queue()->ShardOf(parked_.report->run_id(), parked_.report->rank());
    PushParked();
  }

  void OnWriteDone(bool ok) override {
    mu_.Lock();
    writing_ = false;
    if (!ok) {
      // The client is gone: nothing more can be written.
      write_failed_ = true;
      outbox_.clear();
    } else {
      outbox_.pop_front();
    }
    StartNextWrite();
    UnlockAndMaybeFinish();
  }

  void OnDone() override {
    mu_.Lock();
    gone_ = true;
    const bool unreferenced = inflight_ == 0;
    mu_.Unlock();
    if (unreferenced) {
      delete this;
    }
  }

  // Keeps the stream alive until Shed: taken by the service while the
  // stream is in its set of readers (so not yet deleted).
  void Hold() {
    absl::MutexLock lock(&mu_);
    ++inflight_;
  }

  // Over the memory budget with this stream's read outstanding (when held):
  // ends the stream now, so that gRPC drops what it holds of the message,
  // then lets go of the hold. Called without the service's lock, since
  // Finish may run callbacks of this stream on this thread.
  void Shed(const grpc::Status& why) {
    bool finish = false;
    {
      absl::MutexLock lock(&mu_);
      if (!finished_) {
        finished_ = true;
        reads_done_ = true;
        finish = true;
      }
    }
    if (finish) {
      service_->observer()->OnStreamShed();
      Finish(why);
    }
    mu_.Lock();
    ReleaseWorkAndUnlock();
  }

 private:
  // Issues the next read unless the daemon is over its memory budget; then
  // the stream reads no more and ends with RESOURCE_EXHAUSTED once its
  // queued reports are answered.
  void ReadNext(bool checked_budget = false) {
    if (!checked_budget && service_->OverMemoryBudget()) {
      service_->observer()->OnStreamShed();
      mu_.Lock();
      reads_done_ = true;
      finish_status_ = ToGrpcStatus(service_->OverBudget());
      return UnlockAndMaybeFinish();
    }
    {
      absl::MutexLock lock(&mu_);
      if (finished_) {
        return;  // shed while its last report was being handled
      }
    }
    service_->AddReader(this);
    StartRead(&request_);
  }

  // Queues the parked report, or leaves it waiting for room without reading
  // further, or refuses it when the ingest memory limit would be passed.
  void PushParked() {
    WorkQueue* queue = service_->queue();
    if (service_->OverMemoryBudget()) {
      return PushBack(service_->OverBudget());
    }
    switch (queue->Push(shard_, &parked_, [this](bool queued) { OnParkedQueued(queued); })) {
      case WorkQueue::Admission::kQueued:
        ReadNext();
        return;
      case WorkQueue::Admission::kWaiting:
        return;
      case WorkQueue::Admission::kClosed:
        return RefuseParked(ShuttingDown(), grpc::Status::OK);
      case WorkQueue::Admission::kOverLimit:
        return PushBack(OverCapacity(*queue, parked_.bytes));
    }
  }

  // Over capacity (a RESOURCE_EXHAUSTED `why`): the parked report is
  // answered UNAVAILABLE (not taken; resend it, as at shutdown) and the
  // stream ends with `why`.
  void PushBack(const absl::Status& why) {
    RefuseParked(absl::UnavailableError(why.message()), ToGrpcStatus(why));
  }

  void OnParkedQueued(bool queued) {
    if (queued) {
      ReadNext();
      return;
    }
    RefuseParked(ShuttingDown(), grpc::Status::OK);
  }

  // Answers the parked report with `status` and reads no more: the stream
  // ends with `finish` once the reports already queued are answered.
  // Clients resend what was not acknowledged OK on their next stream.
  void RefuseParked(const absl::Status& status, const grpc::Status& finish) {
    Ack ack = RejectionAck(*parked_.report, status);
    parked_ = WorkItem();
    {
      absl::MutexLock lock(&mu_);
      reads_done_ = true;
      finish_status_ = finish;
    }
    Send(std::move(ack), /*finished_work=*/true);
  }

  void Send(Ack ack, bool finished_work) {
    service_->observer()->OnOutcome(ack);
    mu_.Lock();
    if (!write_failed_ && !finished_) {
      outbox_.push_back(std::move(ack));
      StartNextWrite();
    }
    if (finished_work) {
      return ReleaseWorkAndUnlock();
    }
    UnlockAndMaybeFinish();
  }

  // One queued report (or a hold) less. Once gRPC is done with a stream that
  // was shed with reports queued, the last of them frees it.
  void ReleaseWorkAndUnlock() ABSL_UNLOCK_FUNCTION(mu_) {
    --inflight_;
    if (gone_) {
      const bool unreferenced = inflight_ == 0;
      mu_.Unlock();
      if (unreferenced) {
        delete this;
      }
      return;
    }
    UnlockAndMaybeFinish();
  }

  void StartNextWrite() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!writing_ && !finished_ && !outbox_.empty()) {
      writing_ = true;
      StartWrite(&outbox_.front());
    }
  }

  // Finish may lead to OnDone on another thread at once, so it is called
  // after the lock is released and nothing is touched after.
  void UnlockAndMaybeFinish() ABSL_UNLOCK_FUNCTION(mu_) {
    const bool finish = reads_done_ && inflight_ == 0 && !writing_ && outbox_.empty() && !finished_;
    if (finish) {
      finished_ = true;
    }
    const grpc::Status status = finish_status_;
    mu_.Unlock();
    if (finish) {
      Finish(status);
    }
  }

  MonitorService* const service_;
  const std::shared_ptr<const Authorizer> authorizer_;
  const TokenGrant* grant_ = nullptr;  // null: authorization off
  Report request_;
  WorkItem parked_;  // touched only by the reading side (one read at a time)
  int shard_ = 0;
  absl::Mutex mu_;
  std::deque<Ack> outbox_ ABSL_GUARDED_BY(mu_);
  int64_t inflight_ ABSL_GUARDED_BY(mu_) = 0;
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool write_failed_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;  // Finish called
  bool gone_ ABSL_GUARDED_BY(mu_) = false;      // OnDone called
  grpc::Status finish_status_ ABSL_GUARDED_BY(mu_);
};

Ack AckFor(const Report& report) {
  Ack ack;
  ack.set_run_id(report.run_id());
  ack.set_rank(report.rank());
  ack.set_seq(report.seq());
  ack.set_step(report.step());
  return ack;
}

Ack RejectionAck(const Report& report, const absl::Status& status) {
  Ack ack = AckFor(report);
  ack.set_code(static_cast<int32_t>(status.code()));
  ack.set_message(std::string(status.message()));
  return ack;
}

MonitorService::MonitorService(const ValidationLimits& limits, WorkQueue* queue, RunDirectory* runs,
                               IngestObserver* observer, MemoryGuard* memory_guard)
    : limits_(limits),
      authorizer_(std::make_shared<const Authorizer>(std::vector<TokenGrant>())),
      queue_(queue),
      runs_(runs),
      observer_(observer),
      memory_guard_(memory_guard) {}

void MonitorService::set_authorizer(std::shared_ptr<const Authorizer> authorizer) {
  absl::MutexLock lock(&mu_);
  authorizer_ = std::move(authorizer);
}

std::shared_ptr<const Authorizer> MonitorService::authorizer() const {
  absl::MutexLock lock(&mu_);
  return authorizer_;
}

namespace {

// Authenticates the caller and checks its access to run_id.
absl::Status Authorize(const MonitorService& service, const grpc::CallbackServerContext& context,
                       const std::string& run_id) {
  auto grant = service.authorizer()->Authenticate(context);
  if (!grant.ok()) {
    return grant.status();
  }
  return Authorizer::CheckRun(*grant, run_id);
}

// A unary call about one run: authorizes it, then `answer` fills the response;
// the call ends with the first error or OK.
template <typename Answer>
grpc::ServerUnaryReactor* AnswerForRun(const MonitorService& service,
                                       grpc::CallbackServerContext* context,
                                       const std::string& run_id, Answer answer) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::Status status = Authorize(service, *context, run_id);
  if (status.ok()) {
    status = answer();
  }
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

}  // namespace

bool MonitorService::OverMemoryBudget() {
  if (memory_guard_ == nullptr || !memory_guard_->Over()) {
    return false;
  }
  ShedReaders();
  return true;
}

void MonitorService::AddReader(StreamReactor* stream) {
  absl::MutexLock lock(&readers_mu_);
  readers_.insert(stream);
}

void MonitorService::RemoveReader(StreamReactor* stream) {
  absl::MutexLock lock(&readers_mu_);
  readers_.erase(stream);
}

int64_t MonitorService::reading_streams() {
  absl::MutexLock lock(&readers_mu_);
  return static_cast<int64_t>(readers_.size());
}

void MonitorService::ShedReaders() {
  std::vector<StreamReactor*> shed;
  {
    absl::MutexLock lock(&readers_mu_);
    // A stream in the set has a read outstanding and its OnReadDone starts
    // by taking readers_mu_, so each one is alive here; the hold keeps it
    // alive until Shed returns.
    shed.assign(readers_.begin(), readers_.end());
    readers_.clear();
    for (StreamReactor* stream : shed) {
      stream->Hold();
    }
  }
  if (shed.empty()) {
    return;
  }
  const grpc::Status why = ToGrpcStatus(OverBudget());
  for (StreamReactor* stream : shed) {
    stream->Shed(why);
  }
}

void MonitorService::set_limits(const ValidationLimits& limits) {
  absl::MutexLock lock(&mu_);
  limits_ = limits;
}

absl::Status MonitorService::Admit(const Report& report) {
  ValidationLimits limits;
  {
    absl::MutexLock lock(&mu_);
    limits = limits_;
  }
  return ValidateReport(report, limits);
}

grpc::ServerBidiReactor<Report, Ack>* MonitorService::Stream(grpc::CallbackServerContext* context) {
  return new StreamReactor(this, context);
}

grpc::ServerUnaryReactor* MonitorService::Submit(grpc::CallbackServerContext* context,
                                                 const Report* request, Ack* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  observer_->OnReceived(static_cast<int64_t>(request->ByteSizeLong()));
  absl::Status status = Authorize(*this, *context, request->run_id());
  if (status.ok()) {
    status = Admit(*request);
  }
  WorkItem item;
  if (status.ok()) {
    item.report = request;
    item.bytes = ReportBytes(*request);
    item.done = [this, reactor, response](Ack ack) {
      observer_->OnOutcome(ack);
      if (ack.code() != 0) {
        reactor->Finish(grpc::Status(static_cast<grpc::StatusCode>(ack.code()), ack.message()));
        return;
      }
      *response = std::move(ack);
      reactor->Finish(grpc::Status::OK);
    };
    if (OverMemoryBudget()) {
      status = OverBudget();
    } else if (queue_->TryPush(queue_->ShardOf(request->run_id(), request->rank()), &item)) {
      return reactor;
    } else {
      status = queue_->closed() ? ShuttingDown() : QueueFull(*queue_);
    }
  }
  observer_->OnOutcome(RejectionAck(*request, status));
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

grpc::ServerUnaryReactor* MonitorService::GetRun(grpc::CallbackServerContext* context,
                                                 const entrowatch::v1::GetRunRequest* request,
                                                 entrowatch::v1::RunStatus* response) {
  return AnswerForRun(*this, context, request->run_id(), [&]() -> absl::Status {
    ASSIGN_OR_RETURN(*response, runs_->GetRun(*request));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* MonitorService::ListRuns(grpc::CallbackServerContext* context,
                                                   const entrowatch::v1::ListRunsRequest*,
                                                   entrowatch::v1::ListRunsResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  auto grant = authorizer()->Authenticate(*context);
  if (!grant.ok()) {
    reactor->Finish(ToGrpcStatus(grant.status()));
    return reactor;
  }
  // A token sees only the runs it may access.
  entrowatch::v1::ListRunsResponse all = runs_->ListRuns();
  for (auto& run : *all.mutable_runs()) {
    if (Authorizer::CheckRun(*grant, run.run_id()).ok()) {
      *response->add_runs() = std::move(run);
    }
  }
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* MonitorService::EndRun(grpc::CallbackServerContext* context,
                                                 const entrowatch::v1::EndRunRequest* request,
                                                 entrowatch::v1::EndRunResponse* response) {
  return AnswerForRun(*this, context, request->run_id(), [&]() -> absl::Status {
    ASSIGN_OR_RETURN(*response->mutable_run(), runs_->EndRun(request->run_id()));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* MonitorService::EndIncident(
    grpc::CallbackServerContext* context, const entrowatch::v1::EndIncidentRequest* request,
    entrowatch::v1::EndIncidentResponse* response) {
  return AnswerForRun(*this, context, request->run_id(), [&]() -> absl::Status {
    if (request->reason().size() > kMaxIncidentReason) {
      return absl::InvalidArgumentError(absl::StrCat("reason: ", request->reason().size(),
                                                     " bytes, at most ", kMaxIncidentReason));
    }
    ASSIGN_OR_RETURN(*response->mutable_run(),
                     runs_->EndIncident(request->run_id(), request->reason()));
    return absl::OkStatus();
  });
}

}  // namespace entrowatch::ingest
