#include "daemon/daemon.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <algorithm>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/version.h"
#include "compute/engine_factory.h"
#include "spdlog/pattern_formatter.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

namespace entrowatch::daemon {
namespace {

// Takes the server reflection plugin out of one ServerBuilder: once
// libgrpc++_reflection is loaded, its plugin joins every builder of the
// process (a static initializer registers it).
class WithoutReflection final : public grpc::ServerBuilderOption {
 public:
  void UpdateArguments(grpc::ChannelArguments*) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>* plugins) override {
    const std::string name = grpc::reflection::ProtoServerReflectionPlugin().name();
    plugins->erase(std::remove_if(plugins->begin(), plugins->end(),
                                  [&](const auto& plugin) { return plugin->name() == name; }),
                   plugins->end());
  }
};

std::string HostOf(const std::string& listen) { return listen.substr(0, listen.rfind(':')); }

ingest::ValidationLimits LimitsOf(const config::Config& c) {
  ingest::ValidationLimits limits;
  limits.max_rows_per_report = c.ingest.max_rows_per_report;
  limits.max_elements_per_report = c.ingest.max_elements_per_report;
  return limits;
}

// Reads every token file. Errors name the file, never a secret.
absl::StatusOr<std::shared_ptr<const ingest::Authorizer>> LoadAuthorizer(
    const config::SecurityConfig& security) {
  std::vector<ingest::TokenGrant> grants;
  for (const config::TokenConfig& t : security.tokens) {
    auto secret = ingest::ReadSecretFile(t.token_file);
    if (!secret.ok()) {
      return absl::Status(secret.status().code(), absl::StrCat("security.tokens '", t.name,
                                                               "': ", secret.status().message()));
    }
    grants.push_back({t.name, *std::move(secret), t.runs});
  }
  return std::make_shared<const ingest::Authorizer>(std::move(grants));
}

absl::StatusOr<std::string> ReadPem(const std::string& path, absl::string_view key) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("security.tls.", key, ": cannot read '", path, "'"));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(
    const config::SecurityConfig& security) {
  if (security.tls_cert_file.empty()) {
    return grpc::InsecureServerCredentials();
  }
  grpc::SslServerCredentialsOptions options;
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  ASSIGN_OR_RETURN(pair.cert_chain, ReadPem(security.tls_cert_file, "cert_file"));
  ASSIGN_OR_RETURN(pair.private_key, ReadPem(security.tls_key_file, "key_file"));
  options.pem_key_cert_pairs.push_back(std::move(pair));
  if (!security.tls_client_ca_file.empty()) {
    ASSIGN_OR_RETURN(options.pem_root_certs,
                     ReadPem(security.tls_client_ca_file, "client_ca_file"));
    options.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(options);
}

// %* in a log pattern: the message as a JSON string, quoted and escaped.
class JsonMessageFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    const std::string text = nlohmann::json(std::string(msg.payload.data(), msg.payload.size()))
                                 .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    dest.append(text.data(), text.data() + text.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonMessageFlag>();
  }
};

}  // namespace

void ConfigureLogging(const config::LogConfig& log) {
  auto logger = spdlog::stderr_color_mt("entrowatchd");
  if (log.format == "json") {
    auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
    formatter->add_flag<JsonMessageFlag>('*').set_pattern(
        R"({"time":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","logger":"%n","thread":%t,"msg":%*})");
    logger->set_formatter(std::move(formatter));
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
  metrics_options.per_head_series = config_.metrics.per_head_series;
  metrics_ = std::make_unique<exporter::Metrics>(metrics_options);
  metrics_->SetComputeDegraded(selection->degraded);
  if (absl::Status s = metrics_->Serve(config_.metrics.listen); !s.ok()) {
    return s;
  }
  if (!config_.security.metrics_basic_auth_file.empty()) {
    auto secret = ingest::ReadSecretFile(config_.security.metrics_basic_auth_file);
    if (!secret.ok()) {
      return absl::Status(secret.status().code(), absl::StrCat("security.metrics_basic_auth_file: ",
                                                               secret.status().message()));
    }
    metrics_->RequireBasicAuth(*secret);
  }
  auto authorizer = LoadAuthorizer(config_.security);
  if (!authorizer.ok()) {
    return authorizer.status();
  }
  auto credentials = ServerCredentials(config_.security);
  if (!credentials.ok()) {
    return credentials.status();
  }
  metrics_address_ = absl::StrCat(HostOf(config_.metrics.listen), ":", metrics_->port());

  queue_ = std::make_unique<ingest::WorkQueue>(
      config_.ingest.workers, config_.ingest.queue_max_reports, config_.ingest.queue_max_bytes,
      config_.ingest.memory_limit_bytes, config_.ingest.max_waiting_reports);
  if (!config_.state_dir.empty()) {
    auto store = store::DurableStore::Open(config_.state_dir);
    if (!store.ok()) {
      return store.status();
    }
    store_ = *std::move(store);
  }
  // Where the processor's output goes: the metrics always, the console's
  // history and Alertmanager when enabled.
  std::vector<exporter::Sink*> sinks = {metrics_.get()};
  if (config_.console.enabled) {
    console::HistoryOptions history_options;
    history_options.max_points = config_.console.history_points;
    history_options.head_points = config_.console.head_history_points;
    history_ = std::make_unique<console::RunHistory>(history_options);
    sinks.push_back(history_.get());
  }
  if (config_.alertmanager.enabled) {
    pusher_ = std::make_unique<alertmanager::AlertmanagerPusher>(config_.alertmanager, clock_);
    if (absl::Status s = pusher_->Start(); !s.ok()) {
      return s;
    }
    sinks.push_back(pusher_.get());
    spdlog::info("pushing alerts to Alertmanager at {}", config_.alertmanager.url);
  }
  processor_ = std::make_unique<ReportProcessor>(config_, engine_.get(), std::move(sinks),
                                                 metrics_.get(), clock_, store_.get());
  if (absl::Status s = processor_->Restore(); !s.ok()) {
    return s;
  }
  if (config_.console.enabled) {
    console::ConsoleOptions console_options;
    console_options.library_dir = config_.console.library_dir;
    console_options.stale_seconds = config_.console.stale_seconds;
    console_ =
        std::make_unique<console::Console>(console_options, processor_.get(), history_.get());
    if (!console_->asset_error().empty()) {
      spdlog::warn("console: {}", console_->asset_error());
    }
    console_->Register(metrics_->http_server());
  }
  memory_guard_ = std::make_unique<ingest::MemoryGuard>(config_.ingest.memory_budget_bytes);
  service_ = std::make_unique<ingest::MonitorService>(
      LimitsOf(config_), queue_.get(), processor_.get(), processor_.get(), memory_guard_.get());
  service_->set_authorizer(*authorizer);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(config_.grpc.listen, *credentials, &port);
  builder.SetMaxReceiveMessageSize(static_cast<int>(config_.grpc.max_message_bytes));
  // Without this a second daemon could bind the same port and split traffic.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.RegisterService(service_.get());
  if (config_.grpc.reflection) {
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();  // idempotent
  } else {
    builder.SetOption(std::make_unique<WithoutReflection>());
  }
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
  spdlog::info(
      "entrowatchd {} serving gRPC on {} ({}{}) and metrics on http://{}/metrics{}", kVersion,
      grpc_address_,
      config_.security.tls_cert_file.empty()
          ? "plaintext"
          : (config_.security.tls_client_ca_file.empty() ? "TLS" : "mutual TLS"),
      (*authorizer)->enabled() ? ", bearer tokens" : "", metrics_address_,
      console_ != nullptr ? absl::StrCat(", console on http://", metrics_address_, "/") : "");
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
    metrics_->QueueLevel(queue_->reports(), queue_->bytes(), queue_->waiting_reports(),
                         queue_->waiting_bytes());
    metrics_->MemoryLevel(ingest::ResidentBytes(), memory_guard_->budget_bytes());
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
  if (pusher_ != nullptr) {
    pusher_->Shutdown();
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
      config.grpc.max_message_bytes != config_.grpc.max_message_bytes ||
      config.grpc.reflection != config_.grpc.reflection) {
    restart.push_back("grpc");
  }
  if (config.metrics.listen != config_.metrics.listen ||
      config.metrics.entropy_buckets != config_.metrics.entropy_buckets ||
      config.metrics.per_head_series != config_.metrics.per_head_series) {
    restart.push_back("metrics");
  }
  if (config.ingest.workers != config_.ingest.workers ||
      config.ingest.queue_max_reports != config_.ingest.queue_max_reports ||
      config.ingest.queue_max_bytes != config_.ingest.queue_max_bytes ||
      config.ingest.memory_limit_bytes != config_.ingest.memory_limit_bytes ||
      config.ingest.max_waiting_reports != config_.ingest.max_waiting_reports ||
      config.ingest.memory_budget_bytes != config_.ingest.memory_budget_bytes) {
    restart.push_back(
        "ingest.workers/queue_*/memory_limit_bytes/max_waiting_reports/memory_budget_bytes");
  }
  if (config.compute.backend != config_.compute.backend ||
      config.compute.threads != config_.compute.threads ||
      config.compute.cuda_pool_bytes != config_.compute.cuda_pool_bytes) {
    restart.push_back("compute");
  }
  if (config.alertmanager.enabled != config_.alertmanager.enabled ||
      config.alertmanager.url != config_.alertmanager.url) {
    restart.push_back("alertmanager");
  }
  if (config.state_dir != config_.state_dir) {
    restart.push_back("state_dir");
  }
  if (config.security.tls_cert_file != config_.security.tls_cert_file ||
      config.security.tls_key_file != config_.security.tls_key_file ||
      config.security.tls_client_ca_file != config_.security.tls_client_ca_file ||
      config.security.metrics_basic_auth_file != config_.security.metrics_basic_auth_file) {
    restart.push_back("security.tls / metrics_basic_auth_file");
  }
  const config::ConsoleConfig& console = config.console;
  if (console.enabled != config_.console.enabled ||
      console.library_dir != config_.console.library_dir ||
      console.history_points != config_.console.history_points ||
      console.head_history_points != config_.console.head_history_points ||
      console.stale_seconds != config_.console.stale_seconds) {
    restart.push_back("console");
  }
  for (const std::string& key : restart) {
    spdlog::warn("reload: changes to '{}' take effect after a restart", key);
  }
  // Tokens are re-read, so rotating a token file takes a SIGHUP.
  auto authorizer = LoadAuthorizer(config.security);
  if (!authorizer.ok()) {
    spdlog::error("reload refused, keeping the running configuration: {}",
                  std::string(authorizer.status().message()));
    return;
  }
  service_->set_authorizer(*authorizer);
  spdlog::set_level(spdlog::level::from_str(config.log.level));
  service_->set_limits(LimitsOf(config));
  processor_->Reload(config);
  spdlog::info("configuration reloaded");
}

}  // namespace entrowatch::daemon
