#pragma once

// entrowatchd: wires config, compute engine, work queue, workers, gRPC
// server and metrics endpoint together, and owns their threads.

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/clock.h"
#include "compute/entropy_engine.h"
#include "config/config.h"
#include "console/console.h"
#include "console/run_history.h"
#include "daemon/processor.h"
#include "export/alertmanager/alertmanager_pusher.h"
#include "export/metrics.h"
#include "ingest/monitor_service.h"
#include "ingest/work_queue.h"

namespace grpc {
class Server;
}

namespace entrowatch::daemon {

class Daemon {
 public:
  // clock must outlive the daemon.
  explicit Daemon(config::Config config, common::Clock* clock = common::Clock::Real());
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;
  ~Daemon();

  // Builds the engine, binds both ports and starts serving. Fails fast with a
  // clear error (address in use, no usable backend); nothing keeps running
  // after a failed Start.
  absl::Status Start();

  // Stops accepting reports, finishes and acknowledges what was accepted,
  // then stops every thread. Idempotent.
  void Shutdown();

  // Applies what can change at run time (ingest limits, aggregation, runs,
  // log level, analysis thresholds). Keys that need a restart (listen
  // addresses, workers, compute, state_dir, console) are reported in a
  // warning.
  void Reload(const config::Config& config);

  // host:port actually bound (after Start).
  std::string grpc_address() const { return grpc_address_; }
  std::string metrics_address() const { return metrics_address_; }
  const std::string& backend() const { return backend_; }

 private:
  void WorkerLoop(int shard);
  void SweeperLoop();

  config::Config config_;
  common::Clock* const clock_;
  std::unique_ptr<compute::EntropyEngine> engine_;
  std::string backend_;
  std::unique_ptr<exporter::Metrics> metrics_;
  std::unique_ptr<ingest::WorkQueue> queue_;
  std::unique_ptr<ingest::MemoryGuard> memory_guard_;
  std::unique_ptr<alertmanager::AlertmanagerPusher> pusher_;  // when enabled
  std::unique_ptr<store::DurableStore> store_;                // when state_dir is set
  std::unique_ptr<console::RunHistory> history_;              // when the console is enabled
  std::unique_ptr<ReportProcessor> processor_;
  std::unique_ptr<console::Console> console_;
  std::unique_ptr<ingest::MonitorService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::vector<std::thread> workers_;
  std::thread sweeper_;
  absl::Notification stop_sweeper_;
  std::string grpc_address_;
  std::string metrics_address_;
  absl::Mutex shutdown_mu_;
  bool started_ = false;
  bool shut_down_ ABSL_GUARDED_BY(shutdown_mu_) = false;
};

// Logging setup from the `log` section (spdlog default logger).
void ConfigureLogging(const config::LogConfig& log);

}  // namespace entrowatch::daemon
