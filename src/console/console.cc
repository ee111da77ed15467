#include "console/console.h"

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "common/version.h"
#include "console/embedded_assets.h"
#include "google/protobuf/util/json_util.h"

namespace entrowatch::console {
namespace {

using exporter::HttpRequest;
using exporter::HttpResponse;

constexpr absl::string_view kHtml = "text/html; charset=utf-8";
constexpr absl::string_view kJson = "application/json; charset=utf-8";

std::string HtmlEscape(absl::string_view text) {
  return absl::StrReplaceAll(
      text, {{"&", "&amp;"}, {"<", "&lt;"}, {">", "&gt;"}, {"\"", "&quot;"}, {"'", "&#39;"}});
}

// Text placed inside a <script> or <style> element must not end it: "</tag"
// (any case) becomes "<\/tag", which means the same inside JavaScript strings
// and regular expressions, JSON strings and CSS. Nothing else is changed, so
// code such as the regular expression /</g stays intact.
std::string InlineSafe(absl::string_view text, absl::string_view tag) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] == '<' && i + 1 < text.size() && text[i + 1] == '/' &&
        absl::StartsWithIgnoreCase(text.substr(i + 2), tag)) {
      out += "<\\/";
      i += 2;
      continue;
    }
    out += text[i++];
  }
  return out;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read '", path, "'"));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

HttpResponse Text(int status, std::string body) {
  HttpResponse response;
  response.status = status;
  response.body = std::move(body);
  return response;
}

HttpResponse Json(const google::protobuf::Message& message) {
  HttpResponse response;
  response.content_type = std::string(kJson);
  response.body = ToJson(message);
  response.headers.push_back({"Cache-Control", "no-store"});
  return response;
}

int HttpStatusOf(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kInvalidArgument:
      return 400;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    default:
      return 503;
  }
}

std::string Header(absl::string_view crumb) {
  return absl::StrCat(
      "<header class=\"top\"><a class=\"brand\" href=\"/\">entrowatch</a>"
      "<a href=\"/\">Runs</a>",
      crumb, "<a href=\"/metrics\">/metrics</a><span class=\"right\">entrowatchd ", kVersion,
      "</span></header>\n");
}

}  // namespace

absl::StatusOr<PageAssets> LoadPageAssets(const std::string& library_dir) {
  PageAssets assets;
  assets.console_js = std::string(EmbeddedAsset("console.js"));
  assets.console_css = std::string(EmbeddedAsset("console.css"));
  auto js = ReadFile(library_dir + "/dygraph.min.js");
  if (!js.ok()) {
    return absl::NotFoundError(absl::StrCat(
        "charting library: ", js.status().message(),
        " (install Debian's libjs-dygraphs: scripts/setup-deps.sh, or set console.library_dir)"));
  }
  assets.library_js = *std::move(js);
  auto css = ReadFile(library_dir + "/dygraph.min.css");
  assets.library_css = css.ok() ? *std::move(css) : std::string();
  return assets;
}

std::string ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  std::string out;
  // Serializing a valid in-memory message cannot fail.
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  return out;
}

std::string ReportPage(const PageAssets& assets, absl::string_view run_json,
                       absl::string_view timeline_json, absl::string_view generated_by) {
  return absl::StrCat(
      "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
      "<meta name=\"generator\" content=\"",
      HtmlEscape(generated_by),
      "\">\n<title>entrowatch report</title>\n<link rel=\"icon\" href=\"data:,\">\n<style>",
      InlineSafe(assets.library_css, "style"), "</style>\n<style>",
      InlineSafe(assets.console_css, "style"),
      "</style>\n</head>\n<body data-page=\"report\">\n"
      "<header class=\"top\"><span class=\"brand\">entrowatch</span><span>report</span>"
      "<span class=\"right\">",
      HtmlEscape(generated_by),
      "</span></header>\n<main id=\"main\"></main>\n"
      "<script type=\"application/json\" id=\"run-data\">",
      InlineSafe(run_json, "script"),
      "</script>\n<script type=\"application/json\" id=\"timeline-data\">",
      InlineSafe(timeline_json, "script"), "</script>\n<script>",
      InlineSafe(assets.library_js, "script"), "</script>\n<script>",
      InlineSafe(assets.console_js, "script"), "</script>\n</body></html>\n");
}

Console::Console(const ConsoleOptions& options, ingest::RunDirectory* runs,
                 const RunHistory* history)
    : options_(options), runs_(runs), history_(history) {
  auto assets = LoadPageAssets(options_.library_dir);
  if (assets.ok()) {
    assets_ = *std::move(assets);
  } else {
    asset_error_ = std::string(assets.status().message());
    assets_.console_js = std::string(EmbeddedAsset("console.js"));
    assets_.console_css = std::string(EmbeddedAsset("console.css"));
  }
}

void Console::Register(exporter::HttpServer* server) {
  server->Handle("/", [this](const HttpRequest& request) { return Handle(request); });
}

HttpResponse Console::Handle(const HttpRequest& request) const {
  absl::string_view path = request.path;
  if (path == "/" || path == "/index.html") {
    return RunsPage();
  }
  if (absl::ConsumePrefix(&path, "/api/v1/")) {
    return Api(request, path);
  }
  if (absl::ConsumePrefix(&path, "/static/")) {
    return Static(path);
  }
  if (absl::ConsumePrefix(&path, "/runs/") && !path.empty() && !absl::StrContains(path, '/')) {
    return RunPage(std::string(path));
  }
  return NotFoundPage("Not found", absl::StrCat("Nothing is served at <code>",
                                                HtmlEscape(request.path), "</code>."));
}

std::string Console::Shell(absl::string_view title, absl::string_view page,
                           absl::string_view run_id, absl::string_view main_html) const {
  std::string warning;
  if (!asset_error_.empty()) {
    warning = absl::StrCat(
        "<div class=\"error\">Charts are unavailable: ", HtmlEscape(asset_error_), "</div>");
  }
  return absl::StrCat(
      "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>",
      HtmlEscape(title),
      " · entrowatch</title>\n"
      "<link rel=\"icon\" href=\"data:,\">\n"
      "<link rel=\"stylesheet\" href=\"/static/dygraph.min.css\">\n"
      "<link rel=\"stylesheet\" href=\"/static/console.css\">\n</head>\n<body data-page=\"",
      page, "\" data-run=\"", HtmlEscape(run_id), "\" data-stale-seconds=\"",
      options_.stale_seconds, "\">\n",
      Header(run_id.empty() ? ""
                            : absl::StrCat("<a href=\"/runs/", HtmlEscape(run_id), "\">",
                                           HtmlEscape(run_id), "</a>")),
      "<main id=\"main\">", warning, main_html,
      "</main>\n<script src=\"/static/dygraph.min.js\"></script>\n"
      "<script src=\"/static/console.js\"></script>\n</body></html>\n");
}

HttpResponse Console::RunsPage() const {
  HttpResponse response;
  response.content_type = std::string(kHtml);
  response.body = Shell("Runs", "runs", "", "<p class=\"muted\">Loading runs…</p>");
  return response;
}

HttpResponse Console::RunPage(const std::string& run_id) const {
  entrowatch::v1::GetRunRequest request;
  request.set_run_id(run_id);
  request.set_history(1);
  auto status = runs_->GetRun(request);
  if (!status.ok()) {
    if (status.status().code() == absl::StatusCode::kNotFound) {
      return NotFoundPage(
          "Unknown run",
          absl::StrCat("No run <code>", HtmlEscape(run_id),
                       "</code> is tracked by this entrowatchd. It may never have reported "
                       "here, or it expired after <code>runs.idle_expiry_seconds</code> without "
                       "a report (with its history). <a href=\"/\">See the tracked runs</a>."));
    }
    HttpResponse failed =
        Text(HttpStatusOf(status.status()), absl::StrCat(status.status().message(), "\n"));
    return failed;
  }
  HttpResponse response;
  response.content_type = std::string(kHtml);
  response.body = Shell(run_id, "run", run_id, "<p class=\"muted\">Loading…</p>");
  return response;
}

HttpResponse Console::NotFoundPage(absl::string_view title, absl::string_view message) const {
  HttpResponse response;
  response.status = 404;
  response.content_type = std::string(kHtml);
  response.body = absl::StrCat(
      "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>", title,
      " · entrowatch</title>\n<link rel=\"icon\" href=\"data:,\">\n"
      "<link rel=\"stylesheet\" href=\"/static/console.css\">\n</head>\n"
      "<body data-page=\"notfound\">\n",
      Header(""), "<main id=\"main\" class=\"notfound\"><h1>", title, "</h1><p id=\"message\">",
      message, "</p></main>\n</body></html>\n");
  return response;
}

HttpResponse Console::Api(const HttpRequest& request, absl::string_view rest) const {
  if (rest == "runs") {
    return Json(runs_->ListRuns());
  }
  if (!absl::ConsumePrefix(&rest, "runs/") || rest.empty()) {
    return Text(404, absl::StrCat("no API at ", request.path,
                                  " (try /api/v1/runs or /api/v1/runs/<id>)\n"));
  }
  const bool timeline = absl::ConsumeSuffix(&rest, "/timeline");
  if (rest.empty() || absl::StrContains(rest, '/')) {
    return Text(404, absl::StrCat("no API at ", request.path, "\n"));
  }
  const std::string run_id(rest);
  entrowatch::v1::GetRunRequest get;
  get.set_run_id(run_id);
  get.set_history(1);
  auto status = runs_->GetRun(get);
  if (!status.ok()) {
    return Text(HttpStatusOf(status.status()), absl::StrCat(status.status().message(), "\n"));
  }
  if (timeline) {
    auto found = history_->Timeline(run_id);
    v1::RunTimeline empty;
    empty.set_run_id(run_id);
    return Json(found.ok() ? *found : empty);
  }
  int limit = 0;
  const auto query = exporter::HttpServer::ParseQuery(request.query);
  if (auto it = query.find("history"); it != query.end()) {
    if (!absl::SimpleAtoi(it->second, &limit) || limit < 0) {
      return Text(
          400, absl::StrCat("history: expected a non-negative integer, got '", it->second, "'\n"));
    }
  }
  status->clear_history();
  if (auto points = history_->Points(run_id, limit); points.ok()) {
    for (auto& point : *points) {
      *status->add_history() = std::move(point);
    }
  }
  return Json(*status);
}

HttpResponse Console::Static(absl::string_view name) const {
  HttpResponse response;
  const std::string* content = nullptr;
  if (name == "console.js") {
    content = &assets_.console_js;
    response.content_type = "text/javascript; charset=utf-8";
  } else if (name == "console.css") {
    content = &assets_.console_css;
    response.content_type = "text/css; charset=utf-8";
  } else if (name == "dygraph.min.js" && !assets_.library_js.empty()) {
    content = &assets_.library_js;
    response.content_type = "text/javascript; charset=utf-8";
  } else if (name == "dygraph.min.css") {
    content = &assets_.library_css;
    response.content_type = "text/css; charset=utf-8";
  }
  if (content == nullptr) {
    return Text(404,
                absl::StrCat("no static file '", name, "'",
                             asset_error_.empty() ? "" : absl::StrCat(": ", asset_error_), "\n"));
  }
  response.body = *content;
  response.headers.push_back({"Cache-Control", "no-cache"});
  return response;
}

}  // namespace entrowatch::console
