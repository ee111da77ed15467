#pragma once

// Command-line parsing for the `entrowatch` tool: each command declares its
// flags; ParseArgs() accepts exactly those (`--name value` or `--name=value`)
// plus `--help`, and turns everything else into a usage error.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace entrowatch::cli {

struct FlagSpec {
  std::string name;        // without the leading "--"
  std::string value_name;  // empty: a boolean flag that takes no value
  std::string help;
};

struct CommandSpec {
  std::string name;
  std::string usage;    // e.g. "replay FILE.jsonl [flags]"
  std::string summary;  // one line, shown in the command list
  std::vector<FlagSpec> flags;
  size_t min_positional = 0;
  size_t max_positional = 0;
  std::string details;  // free text after the flag list (may be empty)
};

// Result of parsing one command's arguments. Immutable once returned.
class ParsedArgs {
 public:
  bool help() const { return help_; }
  const std::vector<std::string>& positional() const { return positional_; }
  bool Has(absl::string_view flag) const;
  // The flag's value, or `fallback` when the flag was not given.
  std::string GetString(absl::string_view flag, absl::string_view fallback) const;
  // InvalidArgument naming the flag when the value is not an integer (or
  // number) within [min, max].
  absl::StatusOr<int64_t> GetInt(absl::string_view flag, int64_t fallback, int64_t min,
                                 int64_t max) const;
  absl::StatusOr<double> GetDouble(absl::string_view flag, double fallback, double min,
                                   double max) const;

 private:
  friend absl::StatusOr<ParsedArgs> ParseArgs(const CommandSpec& spec,
                                              const std::vector<std::string>& args);
  bool help_ = false;
  std::vector<std::string> positional_;
  std::map<std::string, std::string, std::less<>> values_;
};

// Parses `args` (the words after the command name). InvalidArgument with a
// message fit for the user on an unknown flag, a missing or unexpected value,
// a repeated flag, or the wrong number of positional arguments. With
// `--help` the positional count is not checked.
absl::StatusOr<ParsedArgs> ParseArgs(const CommandSpec& spec, const std::vector<std::string>& args);

// The command's help text: usage, summary, flags, details.
std::string FormatHelp(const CommandSpec& spec);

}  // namespace entrowatch::cli
