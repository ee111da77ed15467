#include "export/alertmanager/alertmanager_pusher.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "export/alertmanager/http_client.h"
#include "fake_http_server.h"
#include "spdlog/sinks/ostream_sink.h"
#include "spdlog/spdlog.h"

namespace entrowatch::alertmanager {
namespace {

namespace v1 = ::entrowatch::v1;
using testing::FakeHttpServer;

v1::Anomaly Collapse() {
  v1::Anomaly anomaly;
  anomaly.set_pattern(v1::ENTROPY_COLLAPSE);
  anomaly.set_severity(v1::CRITICAL);
  anomaly.set_reason("normalized entropy below floor");
  return anomaly;
}

v1::Verdict Normal() {
  v1::Verdict verdict;
  verdict.set_state(v1::NORMAL);
  return verdict;
}

AlertmanagerOptions OptionsFor(int port) {
  AlertmanagerOptions options;
  options.enabled = true;
  options.url = absl::StrCat("http://127.0.0.1:", port, "/am/");
  options.resend_interval_seconds = 0.2;
  options.timeout_seconds = 2;
  options.retry_initial_backoff_seconds = 0.05;
  options.retry_max_backoff_seconds = 0.2;
  return options;
}

google::protobuf::ListValue Alerts(const testing::RecordedRequest& request) {
  google::protobuf::ListValue list;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(request.body, &list).ok())
      << request.body;
  return list;
}

bool HasEndsAt(const google::protobuf::Value& alert) {
  return alert.struct_value().fields().count("endsAt") > 0;
}

// Polls cond until it holds or 10 s pass.
template <typename Cond>
bool Eventually(Cond cond) {
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline) {
    if (cond()) {
      return true;
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  return cond();
}

TEST(HttpUrlTest, ParsesHostPortAndPrefix) {
  absl::StatusOr<HttpEndpoint> e = ParseHttpUrl("http://alertmanager.monitoring:9093");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->host, "alertmanager.monitoring");
  EXPECT_EQ(e->port, "9093");
  EXPECT_EQ(e->path_prefix, "");
  e = ParseHttpUrl("http://10.0.0.5:80/alertmanager//");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->path_prefix, "/alertmanager");
  e = ParseHttpUrl("http://[::1]:9093/");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->host, "::1");
  EXPECT_EQ(e->path_prefix, "");
  for (const char* bad : {"", "https://am:9093", "http://am", "http://am:0", "http://am:65536",
                          "http://:9093", "http://am:x", "http://[::1/", "am:9093"}) {
    EXPECT_FALSE(ParseHttpUrl(bad).ok()) << bad;
  }
}

TEST(HttpPostTest, ReturnsTheStatusOfAnyAnswer) {
  auto server = FakeHttpServer::Start();
  ASSERT_TRUE(server.ok()) << server.status();
  const HttpEndpoint endpoint{"127.0.0.1", absl::StrCat((*server)->port()), "/p"};
  absl::StatusOr<int> posted = HttpPost(endpoint, "/api/v2/alerts", "[]", absl::Seconds(2));
  ASSERT_TRUE(posted.ok()) << posted.status();
  EXPECT_EQ(*posted, 200);
  ASSERT_EQ((*server)->requests().size(), 1u);
  const testing::RecordedRequest request = (*server)->requests()[0];
  EXPECT_EQ(request.method, "POST");
  EXPECT_EQ(request.path, "/p/api/v2/alerts");
  EXPECT_EQ(request.body, "[]");
  EXPECT_TRUE(absl::StrContains(request.headers, "content-type: application/json"));

  for (int status : {400, 429, 503}) {
    (*server)->set_status(status);
    posted = HttpPost(endpoint, "/x", "[]", absl::Seconds(2));
    ASSERT_TRUE(posted.ok()) << posted.status();
    EXPECT_EQ(*posted, status);
  }

  // A body larger than libcurl's 100-continue threshold goes in one request.
  (*server)->set_status(200);
  const std::string large = absl::StrCat("[\"", std::string(64 * 1024, 'x'), "\"]");
  posted = HttpPost(endpoint, "/big", large, absl::Seconds(2));
  ASSERT_TRUE(posted.ok()) << posted.status();
  EXPECT_EQ((*server)->requests().back().body, large);

  (*server)->set_status(0);  // never answers
  const absl::Time start = absl::Now();
  EXPECT_TRUE(
      absl::IsDeadlineExceeded(HttpPost(endpoint, "/x", "[]", absl::Milliseconds(200)).status()));
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
}

TEST(HttpPostTest, RefusedConnectionIsUnavailable) {
  absl::StatusOr<int> port = testing::PickFreePort();
  ASSERT_TRUE(port.ok());
  const HttpEndpoint endpoint{"127.0.0.1", absl::StrCat(*port), ""};
  EXPECT_TRUE(absl::IsUnavailable(HttpPost(endpoint, "/x", "[]", absl::Seconds(2)).status()));
}

TEST(HttpPostTest, ACancelledPostReturnsAtOnce) {
  auto server = FakeHttpServer::Start();
  ASSERT_TRUE(server.ok()) << server.status();
  (*server)->set_status(0);
  const HttpEndpoint endpoint{"127.0.0.1", absl::StrCat((*server)->port()), ""};
  const int cancel = eventfd(0, EFD_CLOEXEC);
  ASSERT_GE(cancel, 0);
  std::thread canceller([&] {
    (*server)->WaitForRequests(1, absl::Seconds(10));
    const uint64_t one = 1;
    EXPECT_EQ(write(cancel, &one, sizeof(one)), static_cast<ssize_t>(sizeof(one)));
  });
  const absl::Time start = absl::Now();
  EXPECT_TRUE(
      absl::IsCancelled(HttpPost(endpoint, "/x", "[]", absl::Seconds(30), cancel).status()));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  canceller.join();
  close(cancel);
}

TEST(AlertmanagerPusherTest, RejectsBadOptions) {
  AlertmanagerOptions disabled;
  EXPECT_TRUE(absl::IsFailedPrecondition(AlertmanagerPusher(disabled).Start()));
  AlertmanagerOptions options = OptionsFor(9093);
  options.url = "https://am:9093";
  EXPECT_TRUE(absl::IsInvalidArgument(AlertmanagerPusher(options).Start()));
  options = OptionsFor(9093);
  options.resend_interval_seconds = 0;
  EXPECT_TRUE(absl::IsInvalidArgument(AlertmanagerPusher(options).Start()));
  options = OptionsFor(9093);
  options.labels["severity"] = "x";
  EXPECT_TRUE(absl::IsInvalidArgument(AlertmanagerPusher(options).Start()));
  options = OptionsFor(9093);
  options.retry_max_backoff_seconds = 0.01;
  EXPECT_TRUE(absl::IsInvalidArgument(AlertmanagerPusher(options).Start()));
}

TEST(AlertmanagerPusherTest, PostsResendsAndResolves) {
  auto server = FakeHttpServer::Start();
  ASSERT_TRUE(server.ok()) << server.status();
  AlertmanagerPusher pusher(OptionsFor((*server)->port()));
  ASSERT_TRUE(pusher.Start().ok());

  pusher.Update("r1", {Collapse()}, Normal());
  // The first post and at least two resends (every 0.2 s) while active.
  ASSERT_TRUE((*server)->WaitForRequests(3, absl::Seconds(10)));
  std::vector<testing::RecordedRequest> requests = (*server)->requests();
  for (const auto& request : requests) {
    EXPECT_EQ(request.path, "/am/api/v2/alerts");
    const google::protobuf::ListValue alerts = Alerts(request);
    ASSERT_EQ(alerts.values_size(), 1);
    const auto& labels = alerts.values(0).struct_value().fields().at("labels").struct_value();
    EXPECT_EQ(labels.fields().at("alertname").string_value(), "EntrowatchEntropyCollapse");
    EXPECT_EQ(labels.fields().at("run").string_value(), "r1");
    // Firing alerts carry an expiry in the future (4 resend intervals).
    EXPECT_TRUE(HasEndsAt(alerts.values(0)));
  }
  EXPECT_GE(requests[2].received - requests[1].received, absl::Milliseconds(150));

  pusher.Update("r1", {}, Normal());
  ASSERT_TRUE(Eventually([&] { return pusher.stats().alerts_firing == 0; }));
  requests = (*server)->requests();
  const google::protobuf::ListValue last = Alerts(requests.back());
  ASSERT_EQ(last.values_size(), 1);
  absl::Time ends_at;
  std::string error;
  ASSERT_TRUE(absl::ParseTime(absl::RFC3339_full,
                              last.values(0).struct_value().fields().at("endsAt").string_value(),
                              &ends_at, &error))
      << error;
  EXPECT_LE(ends_at, absl::Now());

  // Nothing active: no more posts.
  const size_t settled = (*server)->requests().size();
  EXPECT_FALSE((*server)->WaitForRequests(settled + 1, absl::Milliseconds(600)));
  EXPECT_EQ(pusher.stats().posts_failed, 0u);
  EXPECT_EQ(pusher.stats().posts_ok, settled);
  pusher.Shutdown();
}

TEST(AlertmanagerPusherTest, RetriesWithBackoffUntilAlertmanagerIsBack) {
  absl::StatusOr<int> port = testing::PickFreePort();
  ASSERT_TRUE(port.ok());
  AlertmanagerPusher pusher(OptionsFor(*port));
  ASSERT_TRUE(pusher.Start().ok());
  pusher.Update("r1", {Collapse()}, Normal());
  pusher.Update("r1", {}, Normal());  // resolved before any post got through
  ASSERT_TRUE(Eventually([&] { return pusher.stats().posts_failed >= 3; }));
  EXPECT_EQ(pusher.stats().posts_ok, 0u);

  auto server = FakeHttpServer::Start(*port);
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE(Eventually([&] { return pusher.stats().posts_ok >= 1; }));
  // The resolution survived the outage.
  const google::protobuf::ListValue alerts = Alerts((*server)->requests().front());
  ASSERT_EQ(alerts.values_size(), 1);
  EXPECT_TRUE(HasEndsAt(alerts.values(0)));
  pusher.Shutdown();
}

TEST(AlertmanagerPusherTest, UpdateNeverBlocksOnAHungAlertmanager) {
  auto server = FakeHttpServer::Start();
  ASSERT_TRUE(server.ok()) << server.status();
  (*server)->set_status(0);
  AlertmanagerOptions options = OptionsFor((*server)->port());
  options.timeout_seconds = 30;
  options.queue_max_updates = 16;
  AlertmanagerPusher pusher(options);
  ASSERT_TRUE(pusher.Start().ok());
  pusher.Update("r0", {Collapse()}, Normal());
  ASSERT_TRUE((*server)->WaitForRequests(1, absl::Seconds(10)));  // the pusher is now stuck

  const absl::Time start = absl::Now();
  for (int i = 0; i < 1000; ++i) {
    pusher.Update(absl::StrCat("r", i), {Collapse()}, Normal());
  }
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(500));
  EXPECT_GE(pusher.stats().updates_dropped, 1000u - 16u);

  // Shutdown abandons the hung post and bounds its last attempt to 2 s
  // instead of waiting out the 30 s timeout.
  const absl::Time stop = absl::Now();
  pusher.Shutdown();
  EXPECT_LT(absl::Now() - stop, absl::Seconds(5));
  EXPECT_GE(pusher.stats().posts_failed, 1u);
}

// Records what the pusher reports, as the Prometheus exporter would export it.
class RecordingPushStats : public exporter::AlertPushStats {
 public:
  void PushDelivered() override {
    absl::MutexLock lock(&mu_);
    ++delivered_;
  }
  void PushFailed(absl::string_view reason) override {
    absl::MutexLock lock(&mu_);
    ++failed_[std::string(reason)];
  }
  void PushUpdatesDropped(int64_t updates) override {
    absl::MutexLock lock(&mu_);
    dropped_ += updates;
  }
  void SetPushState(int64_t alerts_firing, bool failing) override {
    absl::MutexLock lock(&mu_);
    firing_ = alerts_firing;
    failing_ = failing;
  }
  int delivered() const {
    absl::MutexLock lock(&mu_);
    return delivered_;
  }
  int failed(const std::string& reason) const {
    absl::MutexLock lock(&mu_);
    auto it = failed_.find(reason);
    return it == failed_.end() ? 0 : it->second;
  }
  bool failing() const {
    absl::MutexLock lock(&mu_);
    return failing_;
  }
  int64_t dropped() const {
    absl::MutexLock lock(&mu_);
    return dropped_;
  }

 private:
  mutable absl::Mutex mu_;
  int delivered_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, int> failed_ ABSL_GUARDED_BY(mu_);
  int64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t firing_ ABSL_GUARDED_BY(mu_) = 0;
  bool failing_ ABSL_GUARDED_BY(mu_) = false;
};

// Counts log lines at warning level and above.
class WarningCounter {
 public:
  WarningCounter() : sink_(std::make_shared<spdlog::sinks::ostream_sink_mt>(out_)) {
    previous_ = spdlog::default_logger();
    auto logger = std::make_shared<spdlog::logger>("push_test", sink_);
    logger->set_pattern("%l %v");
    spdlog::set_default_logger(logger);
  }
  ~WarningCounter() { spdlog::set_default_logger(previous_); }
  std::vector<std::string> Lines() const {
    spdlog::default_logger()->flush();
    std::vector<std::string> lines;
    for (absl::string_view line : absl::StrSplit(out_.str(), '\n', absl::SkipEmpty())) {
      lines.emplace_back(line);
    }
    return lines;
  }
  int Count(absl::string_view level) const {
    int n = 0;
    for (const std::string& line : Lines()) {
      n += absl::StartsWith(line, absl::StrCat(level, " ")) ? 1 : 0;
    }
    return n;
  }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink_;
  std::shared_ptr<spdlog::logger> previous_;
};

TEST(AlertmanagerPusherTest, AFailingAlertmanagerIsLoggedOncePerConditionAndCounted) {
  WarningCounter log;
  auto server = FakeHttpServer::Start();
  ASSERT_TRUE(server.ok()) << server.status();
  (*server)->set_status(503);
  RecordingPushStats stats;
  AlertmanagerPusher pusher(OptionsFor((*server)->port()), common::Clock::Real(), &stats);
  ASSERT_TRUE(pusher.Start().ok());
  pusher.Update("r1", {Collapse()}, Normal());
  ASSERT_TRUE(Eventually([&] { return stats.failed("server_error") >= 4; }));
  EXPECT_TRUE(stats.failing());
  EXPECT_EQ(log.Count("warning"), 1) << absl::StrJoin(log.Lines(), "\n");

  // Another kind of failure is a new condition: one more warning.
  (*server)->set_status(0);
  ASSERT_TRUE(Eventually([&] { return stats.failed("timeout") >= 1; }));
  // Back to normal: one line saying so, and the failing gauge drops.
  (*server)->set_status(200);
  ASSERT_TRUE(Eventually([&] { return stats.delivered() >= 1 && !stats.failing(); }));
  pusher.Shutdown();
  EXPECT_EQ(log.Count("warning"), 2) << absl::StrJoin(log.Lines(), "\n");
  int recovered = 0;
  for (const std::string& line : log.Lines()) {
    recovered += absl::StrContains(line, "delivered again") ? 1 : 0;
  }
  EXPECT_EQ(recovered, 1);
  EXPECT_EQ(stats.failed("rejected"), 0);
  EXPECT_EQ(stats.failed("unreachable"), 0);
}

TEST(AlertmanagerPusherTest, RefusedAndRejectedPostsHaveTheirOwnReasons) {
  absl::StatusOr<int> port = testing::PickFreePort();
  ASSERT_TRUE(port.ok());
  RecordingPushStats stats;
  AlertmanagerPusher pusher(OptionsFor(*port), common::Clock::Real(), &stats);
  ASSERT_TRUE(pusher.Start().ok());
  pusher.Update("r1", {Collapse()}, Normal());
  ASSERT_TRUE(Eventually([&] { return stats.failed("unreachable") >= 2; }));

  auto server = FakeHttpServer::Start(*port);
  ASSERT_TRUE(server.ok()) << server.status();
  (*server)->set_status(400);
  ASSERT_TRUE(Eventually([&] { return stats.failed("rejected") >= 1; }));
  pusher.Shutdown();
  EXPECT_EQ(stats.delivered(), 0);
}

TEST(AlertmanagerPusherTest, DroppedUpdatesAreCounted) {
  auto server = FakeHttpServer::Start();
  ASSERT_TRUE(server.ok()) << server.status();
  (*server)->set_status(0);
  AlertmanagerOptions options = OptionsFor((*server)->port());
  options.timeout_seconds = 30;
  options.queue_max_updates = 4;
  RecordingPushStats stats;
  AlertmanagerPusher pusher(options, common::Clock::Real(), &stats);
  ASSERT_TRUE(pusher.Start().ok());
  pusher.Update("r0", {Collapse()}, Normal());
  ASSERT_TRUE((*server)->WaitForRequests(1, absl::Seconds(10)));
  for (int i = 0; i < 20; ++i) {
    pusher.Update(absl::StrCat("r", i), {Collapse()}, Normal());
  }
  EXPECT_EQ(stats.dropped(), 16);
  EXPECT_EQ(static_cast<int64_t>(pusher.stats().updates_dropped), stats.dropped());
  pusher.Shutdown();
}

TEST(AlertmanagerPusherTest, AsASinkPushesVerdictsAndResolvesExpiredRuns) {
  auto server = FakeHttpServer::Start();
  ASSERT_TRUE(server.ok()) << server.status();
  AlertmanagerPusher pusher(OptionsFor((*server)->port()));
  ASSERT_TRUE(pusher.Start().ok());
  std::unique_ptr<exporter::RunSink> sink = pusher.Open("sunk");
  v1::Verdict panic;
  panic.set_state(v1::PANIC_ZONE);
  sink->OnVerdict(panic, {Collapse()}, {Collapse()});
  ASSERT_TRUE(Eventually([&] { return pusher.stats().alerts_firing == 2; }));
  sink->OnRunEnded(exporter::RunEnd::kFinished);  // a finished run keeps its alerts
  sink->OnRunEnded(exporter::RunEnd::kExpired);
  ASSERT_TRUE(Eventually([&] { return pusher.stats().alerts_firing == 0; }));
  const google::protobuf::ListValue last = Alerts((*server)->requests().back());
  ASSERT_EQ(last.values_size(), 2);
  for (const auto& alert : last.values()) {
    EXPECT_EQ(
        alert.struct_value().fields().at("labels").struct_value().fields().at("run").string_value(),
        "sunk");
  }
  pusher.Shutdown();
}

}  // namespace
}  // namespace entrowatch::alertmanager
