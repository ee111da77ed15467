// The console's routes over a real HttpServer on loopback, with a fake run
// directory: pages, the JSON API (parsed back with protobuf's JSON parser),
// static files, errors and basic auth.
#include "console/console.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"

namespace entrowatch::console {
namespace {

namespace pb = ::entrowatch::v1;

using ::testing::HasSubstr;
using ::testing::Not;

class FakeRuns : public ingest::RunDirectory {
 public:
  absl::StatusOr<pb::RunStatus> GetRun(const pb::GetRunRequest& request) override {
    if (request.run_id() != "run-a") {
      return absl::NotFoundError(absl::StrCat("no run '", request.run_id(), "'"));
    }
    pb::RunStatus status;
    status.set_run_id("run-a");
    status.set_last_step(41);
    status.mutable_verdict()->set_state(pb::PANIC_ZONE);
    auto* anomaly = status.add_anomalies();
    anomaly->set_pattern(pb::ENTROPY_COLLAPSE);
    anomaly->set_since_step(30);
    anomaly->set_reason("entropy <near zero>");
    status.add_history()->set_step(41);  // replaced by the console's history
    return status;
  }
  pb::ListRunsResponse ListRuns() override {
    pb::ListRunsResponse response;
    *response.add_runs() = *GetRun([] {
      pb::GetRunRequest r;
      r.set_run_id("run-a");
      return r;
    }());
    response.mutable_runs(0)->clear_history();
    return response;
  }
  absl::StatusOr<pb::RunStatus> EndRun(const std::string&) override {
    return absl::UnimplementedError("");
  }
  absl::StatusOr<pb::RunStatus> EndIncident(const std::string&, const std::string&) override {
    return absl::UnimplementedError("");
  }
};

struct Reply {
  int status = 0;
  std::string headers;
  std::string body;
};

Reply Get(int port, const std::string& path, const std::string& authorization = "") {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  Reply reply;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return reply;
  }
  std::string request = absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: 127.0.0.1\r\n");
  if (!authorization.empty()) {
    absl::StrAppend(&request, "Authorization: ", authorization, "\r\n");
  }
  absl::StrAppend(&request, "Connection: close\r\n\r\n");
  send(fd, request.data(), request.size(), 0);
  std::string raw;
  char buffer[65536];
  for (ssize_t n; (n = recv(fd, buffer, sizeof buffer, 0)) > 0;) {
    raw.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  const size_t end = raw.find("\r\n\r\n");
  if (end == std::string::npos || raw.size() < 12) {
    return reply;
  }
  reply.headers = raw.substr(0, end);
  reply.body = raw.substr(end + 4);
  (void)absl::SimpleAtoi(raw.substr(9, 3), &reply.status);
  return reply;
}

class ConsoleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    library_dir_ = ::testing::TempDir() + "/library";
    mkdir(library_dir_.c_str(), 0755);
    std::ofstream(library_dir_ + "/dygraph.min.js") << "var Dygraph = function () {};";
    std::ofstream(library_dir_ + "/dygraph.min.css") << ".dygraph-legend {}";
    auto server = exporter::HttpServer::Start("127.0.0.1:0");
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    for (uint64_t step = 0; step < 10; ++step) {
      pb::StepSummary s;
      s.set_step(step);
      s.set_entropy_mean(1.5);
      pb::Verdict verdict;
      verdict.set_state(step < 5 ? pb::NORMAL : pb::PANIC_ZONE);
      history_.Record("run-a", s, verdict, {});
    }
    ConsoleOptions options;
    options.library_dir = library_dir_;
    console_ = std::make_unique<Console>(options, &runs_, &history_);
    console_->Register(server_.get());
  }

  std::string library_dir_;
  FakeRuns runs_;
  RunHistory history_{HistoryOptions{}};
  std::unique_ptr<exporter::HttpServer> server_;
  std::unique_ptr<Console> console_;
};

TEST_F(ConsoleTest, ServesTheRunsAndRunPages) {
  EXPECT_TRUE(console_->asset_error().empty());
  Reply runs = Get(server_->port(), "/");
  EXPECT_EQ(runs.status, 200);
  EXPECT_THAT(runs.headers, HasSubstr("text/html"));
  EXPECT_THAT(runs.body, HasSubstr("data-page=\"runs\""));
  EXPECT_THAT(runs.body, HasSubstr("<script src=\"/static/dygraph.min.js\"></script>"));
  EXPECT_THAT(runs.body, Not(HasSubstr("http://"))) << "nothing is fetched from elsewhere";
  Reply run = Get(server_->port(), "/runs/run-a");
  EXPECT_EQ(run.status, 200);
  EXPECT_THAT(run.body, HasSubstr("data-run=\"run-a\""));
}

TEST_F(ConsoleTest, AnUnknownRunGetsAClear404Page) {
  Reply reply = Get(server_->port(), "/runs/%3Cb%3Enope");
  EXPECT_EQ(reply.status, 404);
  EXPECT_THAT(reply.body, HasSubstr("Unknown run"));
  EXPECT_THAT(reply.body, HasSubstr("&lt;b&gt;nope")) << "the id is escaped";
  EXPECT_THAT(reply.body, HasSubstr("idle_expiry_seconds"));
  EXPECT_EQ(Get(server_->port(), "/no/such/page").status, 404);
  EXPECT_EQ(Get(server_->port(), "/api/v1/runs/nope").status, 404);
}

TEST_F(ConsoleTest, ApiAnswersInTheProtobufJsonMapping) {
  Reply list = Get(server_->port(), "/api/v1/runs");
  ASSERT_EQ(list.status, 200);
  EXPECT_THAT(list.headers, HasSubstr("application/json"));
  pb::ListRunsResponse runs;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(list.body, &runs).ok()) << list.body;
  ASSERT_EQ(runs.runs_size(), 1);
  EXPECT_EQ(runs.runs(0).verdict().state(), pb::PANIC_ZONE);

  Reply one = Get(server_->port(), "/api/v1/runs/run-a");
  ASSERT_EQ(one.status, 200);
  EXPECT_THAT(one.body, HasSubstr("\"lastStep\":\"41\""));
  pb::RunStatus status;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(one.body, &status).ok()) << one.body;
  EXPECT_EQ(status.anomalies(0).reason(), "entropy <near zero>");
  ASSERT_EQ(status.history_size(), 10) << "the console's history, not GetRun's window";
  EXPECT_EQ(status.history(0).step(), 0u);

  Reply newest = Get(server_->port(), "/api/v1/runs/run-a?history=3");
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(newest.body, &status).ok());
  ASSERT_EQ(status.history_size(), 3);
  EXPECT_EQ(status.history(0).step(), 7u);

  Reply bad = Get(server_->port(), "/api/v1/runs/run-a?history=-2");
  EXPECT_EQ(bad.status, 400);
  EXPECT_THAT(bad.body, HasSubstr("history: expected a non-negative integer"));

  Reply timeline = Get(server_->port(), "/api/v1/runs/run-a/timeline");
  ASSERT_EQ(timeline.status, 200);
  console::v1::RunTimeline spans;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(timeline.body, &spans).ok());
  ASSERT_EQ(spans.states_size(), 2);
  EXPECT_EQ(spans.states(1).state(), pb::PANIC_ZONE);
  EXPECT_EQ(spans.states(1).since_step(), 5u);
}

TEST_F(ConsoleTest, ServesItsAssetsAndTheInstalledLibrary) {
  Reply js = Get(server_->port(), "/static/console.js");
  EXPECT_EQ(js.status, 200);
  EXPECT_THAT(js.headers, HasSubstr("text/javascript"));
  EXPECT_THAT(js.body, HasSubstr("new Dygraph("));
  Reply library = Get(server_->port(), "/static/dygraph.min.js");
  EXPECT_EQ(library.body, "var Dygraph = function () {};");
  EXPECT_EQ(Get(server_->port(), "/static/other.js").status, 404);
}

TEST_F(ConsoleTest, AMissingLibraryIsNamedOnThePages) {
  ConsoleOptions options;
  options.library_dir = ::testing::TempDir() + "/absent";
  Console console(options, &runs_, &history_);
  EXPECT_THAT(console.asset_error(), HasSubstr("absent/dygraph.min.js"));
  EXPECT_THAT(console.asset_error(), HasSubstr("libjs-dygraphs"));
  exporter::HttpRequest request;
  request.path = "/";
  EXPECT_THAT(console.Handle(request).body, HasSubstr("Charts are unavailable"));
}

TEST_F(ConsoleTest, BasicAuthCoversEveryPath) {
  server_->Handle("/metrics", [](const exporter::HttpRequest&) {
    exporter::HttpResponse r;
    r.body = "metrics";
    return r;
  });
  server_->RequireBasicAuth("ops:s3cret");
  for (const char* path : {"/", "/runs/run-a", "/api/v1/runs", "/static/console.js", "/metrics"}) {
    Reply refused = Get(server_->port(), path);
    EXPECT_EQ(refused.status, 401) << path;
    EXPECT_THAT(refused.headers, HasSubstr("WWW-Authenticate: Basic realm=\"entrowatch\""));
    EXPECT_EQ(Get(server_->port(), path, "Basic " + absl::Base64Escape("ops:wrong")).status, 401);
    EXPECT_EQ(Get(server_->port(), path, "Basic " + absl::Base64Escape("ops:s3cret")).status, 200)
        << path;
  }
}

TEST(ReportPageTest, InlinesEverythingAndCannotBeClosedByItsData) {
  PageAssets assets;
  assets.library_js = "var Dygraph = 1; s.replace(/</g, '&lt;'); x = '</SCRIPT>';";
  assets.console_js = "console_js();";
  assets.console_css = "body {}";
  const std::string page =
      ReportPage(assets, R"({"runId":"r","reason":"</script><b>"})", "{}", "entrowatch 0.1.0");
  EXPECT_THAT(page, HasSubstr("var Dygraph = 1; s.replace(/</g, '&lt;'); x = '<\\/SCRIPT>';"));
  EXPECT_THAT(page, HasSubstr("console_js();"));
  EXPECT_THAT(page, HasSubstr("<\\/script><b>"));
  EXPECT_THAT(page, Not(HasSubstr("src=\"")));
  EXPECT_THAT(page, Not(HasSubstr("href=\"/")));
}

}  // namespace
}  // namespace entrowatch::console
