#include "daemon/daemon.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/str_cat.h"
#include "common/version.h"
#include "compute/engine_factory.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

namespace entrowatch::daemon {
namespace {

std::string HostOf(const std::string& listen) { return listen.substr(0, listen.rfind(':')); }

ingest::ValidationLimits LimitsOf(const config::Config& c) {
  ingest::ValidationLimits limits;
  limits.max_rows_per_report = c.ingest.max_rows_per_report;
  limits.max_elements_per_report = c.ingest.max_elements_per_report;
  return limits;
}

}  // namespace

void ConfigureLogging(const config::LogConfig& log) {
  auto logger = spdlog::stderr_color_mt("entrowatchd");
  if (log.format == "json") {
    logger->set_pattern(
        R"({"time":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","logger":"%n","thread":%t,"msg":"%v"})",
        spdlog::pattern_time_type::utc);
  } else {
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  }
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(log.level));
}

Daemon::Daemon(config::Config config, common::Clock* clock)
    : config_(std::move(config)), clock_(clock) {}

Daemon::~Daemon() { Shutdown(); }

absl::Status Daemon::Start() {
  compute::EngineOptions engine_options;
  engine_options.backend = config_.compute.backend;
  engine_options.threads = config_.compute.threads;
  engine_options.cuda_pool_bytes = config_.compute.cuda_pool_bytes;
  auto selection = compute::CreateEngine(engine_options);
  if (!selection.ok()) {
    return selection.status();
  }
  engine_ = std::move(selection->engine);
  backend_ = selection->backend;
  if (selection->degraded) {
    spdlog::warn("compute backend '{}' requested, using '{}': {}", config_.compute.backend,
                 backend_, selection->fallback_reason);
  } else {
    spdlog::info("compute backend: {}", backend_);
  }

  exporter::MetricsOptions metrics_options;
  metrics_options.entropy_buckets = config_.metrics.entropy_buckets;
  metrics_options.backend = backend_;
  metrics_ = std::make_unique<exporter::Metrics>(metrics_options);
  metrics_->SetComputeDegraded(selection->degraded);
  if (absl::Status s = metrics_->Serve(config_.metrics.listen); !s.ok()) {
    return s;
  }
  metrics_address_ = absl::StrCat(HostOf(config_.metrics.listen), ":", metrics_->port());

  queue_ = std::make_unique<ingest::WorkQueue>(config_.ingest.workers,
                                               config_.ingest.queue_max_reports,
                                               config_.ingest.queue_max_bytes);
  processor_ = std::make_unique<ReportProcessor>(config_, engine_.get(), metrics_.get(), clock_);
  service_ = std::make_unique<ingest::MonitorService>(LimitsOf(config_), queue_.get(),
                                                      processor_.get(), processor_.get());

  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(config_.grpc.listen, grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(static_cast<int>(config_.grpc.max_message_bytes));
  // Without this a second daemon could bind the same port and split traffic.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.RegisterService(service_.get());
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port == 0) {
    server_.reset();
    return absl::UnavailableError(
        absl::StrCat("cannot serve gRPC on ", config_.grpc.listen, " (address in use?)"));
  }
  grpc_address_ = absl::StrCat(HostOf(config_.grpc.listen), ":", port);
  server_->GetHealthCheckService()->SetServingStatus(true);

  for (int i = 0; i < config_.ingest.workers; ++i) {
    workers_.emplace_back([this, i] { WorkerLoop(i); });
  }
  sweeper_ = std::thread([this] { SweeperLoop(); });
  started_ = true;
  spdlog::info("entrowatchd {} serving gRPC on {} and metrics on http://{}/metrics", kVersion,
               grpc_address_, metrics_address_);
  return absl::OkStatus();
}

void Daemon::WorkerLoop(int shard) {
  ingest::WorkItem item;
  while (queue_->Pop(shard, &item)) {
    entrowatch::v1::Ack ack = processor_->Process(*item.report);
    queue_->Finished(item.bytes);
    item.done(std::move(ack));
    item = ingest::WorkItem();
  }
}

void Daemon::SweeperLoop() {
  while (!stop_sweeper_.WaitForNotificationWithTimeout(absl::Milliseconds(100))) {
    processor_->Sweep();
    metrics_->QueueLevel(queue_->reports(), queue_->bytes());
  }
}

void Daemon::Shutdown() {
  {
    absl::MutexLock lock(&shutdown_mu_);
    if (shut_down_) {
      return;
    }
    shut_down_ = true;
  }
  if (server_ != nullptr) {
    server_->GetHealthCheckService()->SetServingStatus(false);
    // New calls are refused at once; open streams get a grace period while
    // the workers keep acknowledging what was accepted.
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  }
  if (queue_ != nullptr) {
    queue_->Close();
  }
  for (auto& worker : workers_) {
    worker.join();
  }
  workers_.clear();
  if (server_ != nullptr) {
    server_->Wait();
  }
  if (sweeper_.joinable()) {
    stop_sweeper_.Notify();
    sweeper_.join();
  }
  if (metrics_ != nullptr) {
    metrics_->StopServing();
  }
  if (started_) {
    spdlog::info("entrowatchd stopped");
  }
}

void Daemon::Reload(const config::Config& config) {
  std::vector<std::string> restart;
  if (config.grpc.listen != config_.grpc.listen ||
      config.grpc.max_message_bytes != config_.grpc.max_message_bytes) {
    restart.push_back("grpc");
  }
  if (config.metrics.listen != config_.metrics.listen ||
      config.metrics.entropy_buckets != config_.metrics.entropy_buckets) {
    restart.push_back("metrics");
  }
  if (config.ingest.workers != config_.ingest.workers ||
      config.ingest.queue_max_reports != config_.ingest.queue_max_reports ||
      config.ingest.queue_max_bytes != config_.ingest.queue_max_bytes) {
    restart.push_back("ingest.workers/queue_*");
  }
  if (config.compute.backend != config_.compute.backend ||
      config.compute.threads != config_.compute.threads ||
      config.compute.cuda_pool_bytes != config_.compute.cuda_pool_bytes) {
    restart.push_back("compute");
  }
  if (config.state_dir != config_.state_dir) {
    restart.push_back("state_dir");
  }
  for (const std::string& key : restart) {
    spdlog::warn("reload: changes to '{}' take effect after a restart", key);
  }
  spdlog::set_level(spdlog::level::from_str(config.log.level));
  service_->set_limits(LimitsOf(config));
  processor_->Reload(config);
  spdlog::info("configuration reloaded");
}

}  // namespace entrowatch::daemon
