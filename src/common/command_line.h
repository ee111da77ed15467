#pragma once

// Command-line parsing for entrowatch's programs (entrowatchd, the
// `entrowatch` tool and its commands, the benchmark tools), on CLI11. A
// program or command declares its flags in a CommandSpec; ParseArgs() accepts
// exactly those (`--name value` or `--name=value`), `--help` (or `-h`) and
// positional arguments, and turns anything else into an error that names the
// offending flag or argument.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace entrowatch::common {

struct FlagSpec {
  std::string name;        // without the leading "--"
  std::string value_name;  // empty: a boolean flag that takes no value
  std::string help;
};

struct CommandSpec {
  std::string name;     // in error messages, e.g. "replay" or "entrowatchd"
  std::string usage;    // the whole usage line, e.g. "entrowatch replay FILE.jsonl [flags]"
  std::string summary;  // one line, shown in a command list
  std::vector<FlagSpec> flags;
  size_t min_positional = 0;
  size_t max_positional = 0;
  std::string details;  // free text after the flag list (may be empty)
  // When set, flags end at the first positional argument: it and every word
  // after it are positional (a command word followed by the command's own
  // arguments).
  bool flags_end_at_positional = false;
};

// Result of parsing one command line. Immutable once returned.
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
  // Positional argument `index` (which must exist) as an integer in [min,
  // max]; InvalidArgument naming `what` otherwise.
  absl::StatusOr<int64_t> PositionalInt(size_t index, absl::string_view what, int64_t min,
                                        int64_t max) const;

 private:
  friend absl::StatusOr<ParsedArgs> ParseArgs(const CommandSpec& spec,
                                              const std::vector<std::string>& args);
  bool help_ = false;
  std::vector<std::string> positional_;
  std::map<std::string, std::string, std::less<>> values_;
};

// Parses `args` (the words after the program or command name).
// InvalidArgument with a message fit for the user on an unknown flag, a
// missing or unexpected value, a repeated flag, or the wrong number of
// positional arguments. With `--help` the positional count is not checked.
absl::StatusOr<ParsedArgs> ParseArgs(const CommandSpec& spec, const std::vector<std::string>& args);

// For a program's main(): ParseArgs(), then on --help prints FormatHelp() to
// stdout and exits 0, and on an error prints "NAME: error" and a pointer to
// --help to stderr and exits 2.
ParsedArgs ParseArgsOrExit(const CommandSpec& spec, const std::vector<std::string>& args);

// The help text: usage, summary, flags, details.
std::string FormatHelp(const CommandSpec& spec);

}  // namespace entrowatch::common
