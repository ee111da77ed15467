// The pusher against a real Alertmanager (Debian's prometheus-alertmanager):
// Alertmanager validates the payload against its OpenAPI schema, so this is
// the check that what we send is what it accepts.

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "export/alertmanager/alertmanager_pusher.h"
#include "fake_http_server.h"

extern char** environ;

namespace entrowatch::alertmanager {
namespace {

namespace v1 = ::entrowatch::v1;
constexpr char kAlertmanager[] = "/usr/bin/prometheus-alertmanager";

class RealAlertmanager {
 public:
  // Starts Alertmanager on a free loopback port; pid() < 0 on failure.
  RealAlertmanager() {
    char dir_template[] = "/tmp/ew-am-XXXXXX";
    dir_ = mkdtemp(dir_template);
    std::ofstream(dir_ + "/alertmanager.yml") << "route:\n  receiver: sink\n"
                                              << "receivers:\n  - name: sink\n";
    absl::StatusOr<int> port = testing::PickFreePort();
    if (!port.ok()) {
      return;
    }
    port_ = *port;
    std::vector<std::string> args = {kAlertmanager,
                                     absl::StrCat("--config.file=", dir_, "/alertmanager.yml"),
                                     absl::StrCat("--storage.path=", dir_, "/data"),
                                     absl::StrCat("--web.listen-address=127.0.0.1:", port_),
                                     "--cluster.listen-address=",
                                     "--log.level=warn"};
    std::vector<char*> argv;
    for (std::string& a : args) {
      argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, kAlertmanager, nullptr, nullptr, argv.data(), environ) != 0) {
      pid_ = -1;
    }
  }
  ~RealAlertmanager() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status = 0;
      waitpid(pid_, &status, 0);
    }
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  pid_t pid() const { return pid_; }
  int port() const { return port_; }

  bool WaitReady(absl::Duration timeout) const {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      if (testing::HttpGet(port_, "/-/ready", absl::Seconds(1)).ok()) {
        return true;
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
    return false;
  }

  // The active alerts of `run`, as Alertmanager lists them.
  std::vector<google::protobuf::Struct> AlertsOf(const std::string& run) const {
    std::vector<google::protobuf::Struct> found;
    absl::StatusOr<std::string> body = testing::HttpGet(port_, "/api/v2/alerts", absl::Seconds(2));
    google::protobuf::ListValue list;
    if (!body.ok() || !google::protobuf::util::JsonStringToMessage(*body, &list).ok()) {
      return found;
    }
    for (const auto& alert : list.values()) {
      const auto& labels = alert.struct_value().fields().at("labels").struct_value().fields();
      if (labels.count("run") && labels.at("run").string_value() == run) {
        found.push_back(alert.struct_value());
      }
    }
    return found;
  }

 private:
  std::string dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

template <typename Cond>
bool Eventually(Cond cond, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (cond()) {
      return true;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  return cond();
}

TEST(RealAlertmanagerTest, AcceptsFiringAndResolvedAlerts) {
  if (access(kAlertmanager, X_OK) != 0) {
    GTEST_SKIP() << kAlertmanager << " is not installed";
  }
  RealAlertmanager am;
  ASSERT_GT(am.pid(), 0);
  ASSERT_TRUE(am.WaitReady(absl::Seconds(30)));

  AlertmanagerOptions options;
  options.enabled = true;
  options.url = absl::StrCat("http://127.0.0.1:", am.port());
  options.resend_interval_seconds = 1;
  options.generator_url = "http://127.0.0.1:9551/metrics";
  options.labels = {{"cluster", "test"}};
  AlertmanagerPusher pusher(options);
  ASSERT_TRUE(pusher.Start().ok());

  v1::Anomaly collapse;
  collapse.set_pattern(v1::ENTROPY_COLLAPSE);
  collapse.set_severity(v1::CRITICAL);
  collapse.set_reason("normalized entropy \"0.01\" below floor\n");
  v1::Verdict verdict;
  verdict.set_state(v1::PATHOLOGICAL_CONFIDENCE);
  pusher.Update("am-run", {collapse}, verdict);

  ASSERT_TRUE(Eventually([&] { return am.AlertsOf("am-run").size() == 2; }, absl::Seconds(20)))
      << "posts ok " << pusher.stats().posts_ok << ", failed " << pusher.stats().posts_failed;
  for (const auto& alert : am.AlertsOf("am-run")) {
    const auto& labels = alert.fields().at("labels").struct_value().fields();
    EXPECT_EQ(labels.at("cluster").string_value(), "test");
    EXPECT_EQ(labels.at("source").string_value(), "entrowatchd");
    EXPECT_EQ(alert.fields().at("status").struct_value().fields().at("state").string_value(),
              "active");
    EXPECT_EQ(alert.fields().at("generatorURL").string_value(), "http://127.0.0.1:9551/metrics");
  }

  // Recovery: both alerts resolve (Alertmanager stops listing them).
  verdict.set_state(v1::NORMAL);
  pusher.Update("am-run", {}, verdict);
  EXPECT_TRUE(Eventually([&] { return am.AlertsOf("am-run").empty(); }, absl::Seconds(20)));
  EXPECT_EQ(pusher.stats().posts_failed, 0u);
  pusher.Shutdown();
}

}  // namespace
}  // namespace entrowatch::alertmanager
