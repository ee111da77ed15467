// entrowatchd: the entrowatch training-health monitoring daemon.

#include <nlohmann/json.hpp>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/version.h"
#include "config/config.h"
#include "daemon/daemon.h"
#include "spdlog/spdlog.h"

namespace {

constexpr char kUsage[] = R"(usage: entrowatchd [--config FILE] [--ready-file PATH] [--version]

  --config FILE      YAML configuration (default: built-in defaults, see
                     config/entrowatch.yaml for every key)
  --ready-file PATH  once serving, write {"grpc_address", "metrics_address",
                     "pid"} there as JSON (useful with port 0)
  --version          print the version and exit

Signals: SIGINT/SIGTERM drain and stop; SIGHUP reloads --config.
)";

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
  std::string config_path;
  std::string ready_file;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](const char* flag) -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "entrowatchd: %s needs a value\n%s", flag, kUsage);
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--config") {
      config_path = value("--config");
    } else if (arg == "--ready-file") {
      ready_file = value("--ready-file");
    } else if (arg == "--version") {
      std::printf("entrowatchd %s\n", entrowatch::kVersion);
      return 0;
    } else if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else {
      std::fprintf(stderr, "entrowatchd: unknown argument '%s'\n%s", arg.c_str(), kUsage);
      return 2;
    }
  }

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
