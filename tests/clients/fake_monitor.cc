#include "fake_monitor.h"

#include <grpcpp/server_builder.h>

#include <utility>

#include "absl/strings/str_cat.h"

namespace entrowatch::testing {

class FakeMonitor::Service final : public v1::Monitor::Service {
 public:
  explicit Service(FakeMonitor* owner) : owner_(owner) {}

  grpc::Status Stream(grpc::ServerContext* context,
                      grpc::ServerReaderWriter<v1::Ack, v1::Report>* stream) override {
    v1::Report report;
    while (stream->Read(&report)) {
      v1::Ack ack = Answer(report);
      bool send = false;
      {
        absl::MutexLock lock(&owner_->mu_);
        owner_->received_.push_back(report);
        if (owner_->options_.max_acks < 0 || owner_->acks_written_ < owner_->options_.max_acks) {
          ++owner_->acks_written_;
          send = true;
        }
      }
      if (send && !stream->Write(ack)) {
        break;
      }
    }
    return grpc::Status::OK;
  }

  grpc::Status Submit(grpc::ServerContext* context, const v1::Report* report,
                      v1::Ack* ack) override {
    {
      absl::MutexLock lock(&owner_->mu_);
      owner_->received_.push_back(*report);
    }
    *ack = Answer(*report);
    return grpc::Status::OK;
  }

  grpc::Status GetRun(grpc::ServerContext* context, const v1::GetRunRequest* request,
                      v1::RunStatus* response) override {
    for (const v1::RunStatus& run : owner_->options_.runs) {
      if (run.run_id() == request->run_id()) {
        *response = run;
        return grpc::Status::OK;
      }
    }
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        absl::StrCat("run_id: unknown run \"", request->run_id(), "\""));
  }

  grpc::Status ListRuns(grpc::ServerContext* context, const v1::ListRunsRequest* request,
                        v1::ListRunsResponse* response) override {
    for (const v1::RunStatus& run : owner_->options_.runs) {
      v1::RunStatus* listed = response->add_runs();
      *listed = run;
      listed->clear_history();
    }
    return grpc::Status::OK;
  }

 private:
  v1::Ack Answer(const v1::Report& report) const {
    if (owner_->options_.answer) {
      return owner_->options_.answer(report);
    }
    v1::Ack ack;
    ack.set_run_id(report.run_id());
    ack.set_rank(report.rank());
    ack.set_seq(report.seq());
    ack.set_step(report.step());
    return ack;
  }

  FakeMonitor* const owner_;
};

std::unique_ptr<FakeMonitor> FakeMonitor::Start(FakeMonitorOptions options) {
  std::unique_ptr<FakeMonitor> monitor(new FakeMonitor());
  monitor->options_ = std::move(options);
  monitor->service_ = std::make_unique<Service>(monitor.get());
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::StrCat("127.0.0.1:", monitor->options_.port),
                           grpc::InsecureServerCredentials(), &monitor->port_);
  builder.RegisterService(monitor->service_.get());
  monitor->server_ = builder.BuildAndStart();
  if (monitor->server_ == nullptr || monitor->port_ == 0) {
    return nullptr;
  }
  return monitor;
}

FakeMonitor::~FakeMonitor() { Shutdown(); }

std::string FakeMonitor::address() const { return absl::StrCat("127.0.0.1:", port_); }

std::vector<v1::Report> FakeMonitor::received() const {
  absl::MutexLock lock(&mu_);
  return received_;
}

int64_t FakeMonitor::acks_written() const {
  absl::MutexLock lock(&mu_);
  return acks_written_;
}

bool FakeMonitor::WaitForReceived(size_t n, absl::Time deadline) const {
  absl::MutexLock lock(&mu_);
  auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return received_.size() >= n; };
  return mu_.AwaitWithDeadline(absl::Condition(&enough), deadline);
}

void FakeMonitor::Shutdown() {
  if (server_ != nullptr) {
    server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Milliseconds(100)));
    server_->Wait();
    server_.reset();
  }
}

int UnusedPort() {
  std::unique_ptr<FakeMonitor> probe = FakeMonitor::Start({});
  const int port = probe->port();
  probe->Shutdown();
  return port;
}

}  // namespace entrowatch::testing
