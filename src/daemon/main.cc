// entrowatchd: the entrowatch training-health monitoring daemon.

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/command_line.h"
#include "common/version.h"
#include "config/config.h"
#include "daemon/daemon.h"
#include "spdlog/spdlog.h"

namespace {

entrowatch::common::CommandSpec Spec() {
  entrowatch::common::CommandSpec spec;
  spec.name = "entrowatchd";
  spec.usage = "entrowatchd [--config FILE] [--ready-file PATH] [--version]";
  spec.summary = "The entrowatch training-health monitoring daemon.";
  spec.flags = {{"config", "FILE",
                 "YAML configuration (default: built-in defaults, see config/entrowatch.yaml "
                 "for every key)"},
                {"ready-file", "PATH",
                 "once serving, write {\"grpc_address\", \"metrics_address\", \"backend\", "
                 "\"pid\"} there as JSON (useful with port 0)"},
                {"version", "", "print the version and exit"}};
  spec.details = "Signals: SIGINT/SIGTERM drain and stop; SIGHUP reloads --config.";
  return spec;
}

bool WriteReadyFile(const std::string& path, const entrowatch::daemon::Daemon& daemon) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    const nlohmann::ordered_json ready = {{"grpc_address", daemon.grpc_address()},
                                          {"metrics_address", daemon.metrics_address()},
                                          {"backend", daemon.backend()},
                                          {"pid", getpid()}};
    out << ready.dump() << "\n";
    if (!out) {
      return false;
    }
  }
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  const entrowatch::common::ParsedArgs args =
      entrowatch::common::ParseArgsOrExit(Spec(), std::vector<std::string>(argv + 1, argv + argc));
  if (args.Has("version")) {
    std::printf("entrowatchd %s\n", entrowatch::kVersion);
    return 0;
  }
  const std::string config_path = args.GetString("config", "");
  const std::string ready_file = args.GetString("ready-file", "");

  entrowatch::config::Config config;
  if (!config_path.empty()) {
    auto loaded = entrowatch::config::LoadConfigFile(config_path);
    if (!loaded.ok()) {
      std::fprintf(stderr, "entrowatchd: %s\n", std::string(loaded.status().message()).c_str());
      return 1;
    }
    config = *std::move(loaded);
  }
  entrowatch::daemon::ConfigureLogging(config.log);

  // Signals are taken synchronously by this thread; every other thread
  // inherits the blocked mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  // A file size limit (RLIMIT_FSIZE) makes writes fail with EFBIG, which the
  // state store reports and survives, instead of killing the daemon.
  signal(SIGXFSZ, SIG_IGN);

  entrowatch::daemon::Daemon daemon(config);
  if (absl::Status s = daemon.Start(); !s.ok()) {
    spdlog::critical("cannot start: {}", std::string(s.message()));
    daemon.Shutdown();
    return 1;
  }
  if (!ready_file.empty() && !WriteReadyFile(ready_file, daemon)) {
    spdlog::critical("cannot write ready file '{}': {}", ready_file, std::strerror(errno));
    daemon.Shutdown();
    return 1;
  }

  for (;;) {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0) {
      continue;
    }
    if (sig == SIGHUP) {
      if (config_path.empty()) {
        spdlog::info("SIGHUP: no --config file to reload");
        continue;
      }
      auto reloaded = entrowatch::config::LoadConfigFile(config_path);
      if (!reloaded.ok()) {
        spdlog::error("reload refused, keeping the running configuration: {}",
                      std::string(reloaded.status().message()));
        continue;
      }
      daemon.Reload(*reloaded);
      continue;
    }
    spdlog::info("{}: draining and stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
    break;
  }
  daemon.Shutdown();
  return 0;
}
