#pragma once

// The web console of entrowatchd, served on the metrics listener:
//   /                               every tracked run (live)
//   /runs/<id>                      one run's charts (live; ?from=&to=&step=)
//   /api/v1/runs                    ListRunsResponse, protobuf JSON mapping
//   /api/v1/runs/<id>?history=N     RunStatus with the run's downsampled
//                                   history (newest N points; 0 or absent: all)
//   /api/v1/runs/<id>/timeline      console.v1.RunTimeline (state spans and
//                                   every anomaly fired)
//   /static/...                     the page's script, style and the charting
//                                   library (dygraphs, read from library_dir)
// Nothing is fetched from elsewhere: the pages work offline.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "console/run_history.h"
#include "export/http_server.h"
#include "google/protobuf/message.h"
#include "ingest/monitor_service.h"

namespace entrowatch::console {

struct ConsoleOptions {
  // Where the charting library is installed (Debian's libjs-dygraphs).
  std::string library_dir = "/usr/share/javascript/dygraphs";
  double stale_seconds = 600;  // a run not finished and silent this long is "stale"
};

// What a page needs besides its data: the console's own script and style
// (compiled into the binary) and the charting library.
struct PageAssets {
  std::string console_js;
  std::string console_css;
  std::string library_js;
  std::string library_css;
};

// Reads the library from library_dir. The error names the missing file and
// how to install it.
absl::StatusOr<PageAssets> LoadPageAssets(const std::string& library_dir);

// The protobuf JSON mapping used by the API (lowerCamelCase names, enums by
// name, 64-bit integers as strings, default values printed).
std::string ToJson(const google::protobuf::Message& message);

// One self-contained HTML file of a run: the same page and charts as
// /runs/<id>, with the assets and the two JSON documents inlined.
std::string ReportPage(const PageAssets& assets, absl::string_view run_json,
                       absl::string_view timeline_json, absl::string_view generated_by);

class Console {
 public:
  // runs and history must outlive the console. A library that cannot be
  // read is not fatal: the pages say what is missing.
  Console(const ConsoleOptions& options, ingest::RunDirectory* runs, const RunHistory* history);
  Console(const Console&) = delete;
  Console& operator=(const Console&) = delete;

  // Empty when the assets loaded; otherwise what is missing.
  const std::string& asset_error() const { return asset_error_; }

  // Serves every console path on `server` (which must outlive the console's
  // use of it).
  void Register(exporter::HttpServer* server);

  exporter::HttpResponse Handle(const exporter::HttpRequest& request) const;

 private:
  exporter::HttpResponse RunsPage() const;
  exporter::HttpResponse RunPage(const std::string& run_id) const;
  exporter::HttpResponse Api(const exporter::HttpRequest& request, absl::string_view rest) const;
  exporter::HttpResponse Static(absl::string_view name) const;
  exporter::HttpResponse NotFoundPage(absl::string_view title, absl::string_view message) const;
  std::string Shell(absl::string_view title, absl::string_view page, absl::string_view run_id,
                    absl::string_view main_html) const;

  const ConsoleOptions options_;
  ingest::RunDirectory* const runs_;
  const RunHistory* const history_;
  PageAssets assets_;
  std::string asset_error_;
};

}  // namespace entrowatch::console
