#include "proc_stats.h"

#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace entrowatch::load {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read ", path));
  }
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// "VmRSS:     1234 kB" -> bytes.
bool StatusKilobytes(absl::string_view status, absl::string_view key, int64_t* bytes) {
  for (absl::string_view line : absl::StrSplit(status, '\n')) {
    if (absl::ConsumePrefix(&line, key)) {
      line = absl::StripAsciiWhitespace(line);
      absl::ConsumeSuffix(&line, " kB");
      int64_t kb = 0;
      if (absl::SimpleAtoi(line, &kb)) {
        *bytes = kb * 1024;
        return true;
      }
    }
  }
  return false;
}

}  // namespace

absl::StatusOr<ProcSample> ReadProcSample(int pid) {
  const std::string dir = absl::StrCat("/proc/", pid);
  auto status = ReadFile(dir + "/status");
  if (!status.ok()) {
    return status.status();
  }
  auto stat = ReadFile(dir + "/stat");
  if (!stat.ok()) {
    return stat.status();
  }
  ProcSample sample;
  if (!StatusKilobytes(*status, "VmRSS:", &sample.rss_bytes) ||
      !StatusKilobytes(*status, "VmHWM:", &sample.peak_rss_bytes)) {
    return absl::InternalError(absl::StrCat("no VmRSS/VmHWM in ", dir, "/status"));
  }
  // Fields after the parenthesized command name, which may itself hold spaces:
  // state is field 3, utime and stime are fields 14 and 15.
  const size_t close = stat->rfind(')');
  if (close == std::string::npos) {
    return absl::InternalError(absl::StrCat("cannot parse ", dir, "/stat"));
  }
  std::vector<absl::string_view> fields =
      absl::StrSplit(absl::string_view(*stat).substr(close + 2), ' ', absl::SkipEmpty());
  int64_t utime = 0;
  int64_t stime = 0;
  if (fields.size() < 13 || !absl::SimpleAtoi(fields[11], &utime) ||
      !absl::SimpleAtoi(fields[12], &stime)) {
    return absl::InternalError(absl::StrCat("cannot parse ", dir, "/stat"));
  }
  sample.cpu_seconds =
      static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
  return sample;
}

absl::StatusOr<ReadyInfo> ReadReadyFile(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) {
    return text.status();
  }
  const nlohmann::json json = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  const auto address = json.is_object() ? json.find("grpc_address") : json.end();
  const auto pid = json.is_object() ? json.find("pid") : json.end();
  if (address == json.end() || !address->is_string() || pid == json.end() ||
      !pid->is_number_integer()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": expected a JSON object with \"grpc_address\" and \"pid\""));
  }
  ReadyInfo info;
  info.grpc_address = address->get<std::string>();
  info.pid = pid->get<int>();
  return info;
}

}  // namespace entrowatch::load
