#include "cli/trace.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"

namespace entrowatch::cli {

absl::StatusOr<v1::Report> ParseReportLine(absl::string_view line, int64_t line_number) {
  v1::Report report;
  const auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(line.data(), line.size()), &report);
  if (!status.ok()) {
    // The parser appends an excerpt with a caret on further lines; one line
    // per error keeps replay's output readable.
    const absl::string_view message(status.message().data(), status.message().size());
    return absl::InvalidArgumentError(
        absl::StrCat("line ", line_number,
                     ": not a Report in protobuf JSON: ", message.substr(0, message.find('\n'))));
  }
  return report;
}

bool IsBlankLine(absl::string_view line) { return absl::StripAsciiWhitespace(line).empty(); }

}  // namespace entrowatch::cli
