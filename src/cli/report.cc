#include "cli/report.h"

#include <curl/curl.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli/commands.h"
#include "common/http_url.h"
#include "common/version.h"
#include "console/console.h"
#include "google/protobuf/util/json_util.h"

namespace entrowatch::cli {
namespace {

constexpr char kDefaultConsole[] = "http://127.0.0.1:9551";

// --console: http://HOST[:PORT][/prefix] (port 80 when left out).
absl::StatusOr<common::HttpEndpoint> ParseConsoleUrl(absl::string_view text) {
  absl::StatusOr<common::HttpEndpoint> url = common::ParseHttpUrl(text, "80");
  if (!url.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--console: ", url.status().message()));
  }
  return url;
}

// GET with libcurl; the body of a 200 answer, or an error that names the URL
// and what the server said.
absl::StatusOr<std::string> HttpGet(const common::HttpEndpoint& url, const std::string& path,
                                    const std::string& user_password, double timeout_seconds) {
  const std::string where = common::HttpUrl(url, path);
  static const CURLcode global_init = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (global_init != CURLE_OK) {
    return absl::InternalError(absl::StrCat("libcurl: ", curl_easy_strerror(global_init)));
  }
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), &curl_easy_cleanup);
  if (curl == nullptr) {
    return absl::InternalError("libcurl: curl_easy_init failed");
  }
  std::string body;
  auto append = +[](char* data, size_t size, size_t n, void* out) -> size_t {
    static_cast<std::string*>(out)->append(data, size * n);
    return size * n;
  };
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, where.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_seconds * 1000));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, append);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
  if (!user_password.empty()) {
    curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(c, CURLOPT_USERPWD, user_password.c_str());
  }
  const CURLcode result = curl_easy_perform(c);
  if (result == CURLE_OPERATION_TIMEDOUT) {
    return absl::DeadlineExceededError(
        absl::StrCat("no answer from ", where, " within ", timeout_seconds, " s"));
  }
  if (result != CURLE_OK) {
    const bool unreachable =
        result == CURLE_COULDNT_CONNECT || result == CURLE_COULDNT_RESOLVE_HOST;
    return absl::UnavailableError(
        absl::StrCat(unreachable ? "cannot connect to " : "no answer from ", where, ": ",
                     curl_easy_strerror(result),
                     " (is entrowatchd's metrics listener there? "
                     "see --console)"));
  }
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  if (status != 200) {
    const absl::StatusCode code = status == 404   ? absl::StatusCode::kNotFound
                                  : status == 401 ? absl::StatusCode::kUnauthenticated
                                                  : absl::StatusCode::kUnavailable;
    return absl::Status(code, absl::StrCat(where, ": HTTP ", status, ": ",
                                           absl::StripAsciiWhitespace(body.substr(0, 300))));
  }
  return body;
}

absl::StatusOr<std::string> ReadFirstLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) {
    return absl::NotFoundError(absl::StrCat("--basic-auth-file: cannot read '", path, "'"));
  }
  return std::string(absl::StripAsciiWhitespace(line));
}

}  // namespace

common::CommandSpec ReportSpec() {
  return {"report",
          "entrowatch report RUN --out FILE.html [--console URL] [flags]",
          "Write one self-contained HTML page of a run (charts, states, anomalies).",
          {{"out", "FILE", "the HTML file to write (required)"},
           {"console", "URL",
            absl::StrCat("entrowatchd's HTTP listener, where /metrics is (default "
                         "$ENTROWATCH_CONSOLE or ",
                         kDefaultConsole, ")")},
           {"basic-auth-file", "FILE", "file holding user:password when the listener needs it"},
           {"library-dir", "DIR",
            "where the charting library is installed (default "
            "/usr/share/javascript/dygraphs, Debian's libjs-dygraphs)"},
           {"timeout", "SECONDS", "HTTP timeout in seconds (default 30)"},
           {"addr", "ADDR", "accepted for uniformity; not used"}},
          1,
          1,
          "The page is the console's /runs/RUN with the run's whole downsampled history,\n"
          "its state spans and anomalies, and the charting library inlined: it opens\n"
          "offline, from a file, in any browser."};
}

int RunReportCommand(const common::ParsedArgs& args, const std::string& addr, std::ostream& out,
                     std::ostream& err) {
  auto usage = [&err](const absl::Status& status) {
    err << "entrowatch report: " << status.message() << "\n"
        << "run 'entrowatch report --help' for usage\n";
    return kExitUsage;
  };
  const std::string run = args.positional().front();
  const std::string file = args.GetString("out", "");
  if (file.empty()) {
    return usage(absl::InvalidArgumentError("--out FILE.html is required"));
  }
  absl::StatusOr<double> timeout = args.GetDouble("timeout", 30, 0.001, 3600);
  if (!timeout.ok()) {
    return usage(timeout.status());
  }
  const char* env_console = std::getenv("ENTROWATCH_CONSOLE");
  auto url = ParseConsoleUrl(args.GetString(
      "console", env_console != nullptr && *env_console != '\0' ? env_console : kDefaultConsole));
  if (!url.ok()) {
    return usage(url.status());
  }
  std::string user_password;
  if (args.Has("basic-auth-file")) {
    auto secret = ReadFirstLine(args.GetString("basic-auth-file", ""));
    if (!secret.ok()) {
      err << "entrowatch report: " << secret.status().message() << "\n";
      return kExitError;
    }
    user_password = *std::move(secret);
  }
  auto assets =
      console::LoadPageAssets(args.GetString("library-dir", console::ConsoleOptions().library_dir));
  if (!assets.ok()) {
    err << "entrowatch report: " << assets.status().message() << "\n";
    return kExitError;
  }

  // Parsed and printed again: the file holds well-formed documents of the
  // expected types whatever the server sent.
  const std::string base = absl::StrCat("/api/v1/runs/", run);
  entrowatch::v1::RunStatus status;
  console::v1::RunTimeline timeline;
  for (auto [path, message] : {std::pair<std::string, google::protobuf::Message*>{base, &status},
                               {base + "/timeline", &timeline}}) {
    auto body = HttpGet(*url, path, user_password, *timeout);
    if (!body.ok()) {
      err << "entrowatch report: " << body.status().message() << "\n";
      return kExitError;
    }
    if (!google::protobuf::util::JsonStringToMessage(*body, message).ok()) {
      err << "entrowatch report: " << path << ": not the expected JSON\n";
      return kExitError;
    }
  }
  const std::string page = console::ReportPage(
      *assets, console::ToJson(status), console::ToJson(timeline),
      absl::StrCat("entrowatch ", kVersion, " report of ", run, ", ",
                   absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", absl::Now(), absl::UTCTimeZone())));
  std::ofstream written(file, std::ios::binary | std::ios::trunc);
  written << page;
  written.close();
  if (!written) {
    err << "entrowatch report: cannot write '" << file << "'\n";
    return kExitError;
  }
  out << "wrote " << file << " (" << (page.size() + 1023) / 1024 << " KiB): run " << run << ", "
      << status.history_size() << " points for " << timeline.steps_recorded() << " steps, state "
      << entrowatch::v1::HealthState_Name(status.verdict().state()) << "\n";
  return kExitOk;
}

}  // namespace entrowatch::cli
