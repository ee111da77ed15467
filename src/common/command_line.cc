#include "common/command_line.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <type_traits>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace entrowatch::common {
namespace {

absl::Status Usage(const CommandSpec& spec, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(problem, "; usage: ", spec.usage));
}

// `text` as a T within [min, max]; InvalidArgument naming `what` otherwise.
template <typename T>
absl::StatusOr<T> ParseNumber(absl::string_view what, const std::string& text, T min, T max) {
  T value{};
  bool parsed = false;
  if constexpr (std::is_integral_v<T>) {
    parsed = absl::SimpleAtoi(text, &value);
  } else {
    parsed = absl::SimpleAtod(text, &value);
  }
  if (!parsed || !(value >= min && value <= max)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": expected ", std::is_integral_v<T> ? "an integer" : "a number",
                     " in [", min, ", ", max, "], got \"", text, "\""));
  }
  return value;
}

// Whether CLI11's `message` is about flag `name` (and not one whose name
// merely contains it, as connect-timeout contains timeout).
bool NamesFlag(absl::string_view message, absl::string_view name) {
  for (size_t at = message.find(name); at != absl::string_view::npos;
       at = message.find(name, at + 1)) {
    const size_t end = at + name.size();
    const auto part_of_name = [](char c) { return absl::ascii_isalnum(c) || c == '-' || c == '_'; };
    const bool starts =
        at == 0 || !part_of_name(message[at - 1]) || (at >= 2 && message.substr(at - 2, 2) == "--");
    if (starts && (end == message.size() || !part_of_name(message[end]))) {
      return true;
    }
  }
  return false;
}

}  // namespace

bool ParsedArgs::Has(absl::string_view flag) const { return values_.find(flag) != values_.end(); }

std::string ParsedArgs::GetString(absl::string_view flag, absl::string_view fallback) const {
  auto it = values_.find(flag);
  return it == values_.end() ? std::string(fallback) : it->second;
}

absl::StatusOr<int64_t> ParsedArgs::GetInt(absl::string_view flag, int64_t fallback, int64_t min,
                                           int64_t max) const {
  auto it = values_.find(flag);
  return it == values_.end() ? fallback
                             : ParseNumber<int64_t>(absl::StrCat("--", flag), it->second, min, max);
}

absl::StatusOr<double> ParsedArgs::GetDouble(absl::string_view flag, double fallback, double min,
                                             double max) const {
  auto it = values_.find(flag);
  return it == values_.end() ? fallback
                             : ParseNumber<double>(absl::StrCat("--", flag), it->second, min, max);
}

absl::StatusOr<int64_t> ParsedArgs::PositionalInt(size_t index, absl::string_view what, int64_t min,
                                                  int64_t max) const {
  return ParseNumber<int64_t>(what, positional_.at(index), min, max);
}

absl::StatusOr<ParsedArgs> ParseArgs(const CommandSpec& spec,
                                     const std::vector<std::string>& args) {
  CLI::App app(spec.summary, spec.name);
  // --help is an ordinary flag here: the caller prints FormatHelp().
  app.set_help_flag();
  // Unknown words are left in remaining() and reported below by name.
  app.allow_extras();
  app.prefix_command(spec.flags_end_at_positional);
  app.positionals_at_end(false);
  CLI::Option* help = app.add_flag("-h,--help");
  std::vector<std::pair<const FlagSpec*, CLI::Option*>> options;
  for (const FlagSpec& flag : spec.flags) {
    CLI::Option* option = flag.value_name.empty()
                              ? app.add_flag(absl::StrCat("--", flag.name))->disable_flag_override()
                              : app.add_option(absl::StrCat("--", flag.name))
                                    ->type_name(flag.value_name)
                                    ->expected(1)
                                    ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    options.emplace_back(&flag, option);
  }
  // Positional arguments are collected by CLI11 unless flags end at the first
  // of them (prefix_command), where every word from it on is left over.
  std::vector<std::string> positional;
  if (!spec.flags_end_at_positional) {
    app.add_option("positional", positional)->expected(0, -1);
  }

  // CLI11 consumes its arguments from the back.
  std::vector<std::string> reversed(args.rbegin(), args.rend());
  try {
    app.parse(reversed);
  } catch (const CLI::ArgumentMismatch& e) {
    // Raised for a flag given a value and for an option left without one.
    for (const auto& [flag, option] : options) {
      if (!NamesFlag(e.what(), flag->name)) {
        continue;
      }
      return absl::InvalidArgumentError(
          flag->value_name.empty()
              ? absl::StrCat("--", flag->name, " takes no value")
              : absl::StrCat("--", flag->name, " needs a value (", flag->value_name, ")"));
    }
    return absl::InvalidArgumentError(e.what());
  } catch (const CLI::ParseError& e) {
    return absl::InvalidArgumentError(e.what());
  }

  ParsedArgs parsed;
  parsed.help_ = help->count() > 0;
  bool flags_over = false;
  for (const std::string& word : app.remaining()) {
    if (!flags_over && word == "--") {
      flags_over = true;
      continue;
    }
    if (!flags_over && absl::StartsWith(word, "-") && word != "-") {
      const absl::string_view name = absl::string_view(word).substr(0, word.find('='));
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag ", name, " for '", spec.name, "'"));
    }
    flags_over = flags_over || spec.flags_end_at_positional;
    positional.push_back(word);
  }
  parsed.positional_ = std::move(positional);
  for (const auto& [flag, option] : options) {
    if (option->count() == 0) {
      continue;
    }
    if (option->count() > 1) {
      return absl::InvalidArgumentError(absl::StrCat("--", flag->name, " given twice"));
    }
    parsed.values_.emplace(flag->name,
                           flag->value_name.empty() ? std::string() : option->results().front());
  }
  if (parsed.help_) {
    return parsed;
  }
  const size_t n = parsed.positional_.size();
  if (n > spec.max_positional) {
    return Usage(spec, absl::StrCat("unexpected argument \"",
                                    parsed.positional_[spec.max_positional], "\""));
  }
  if (n < spec.min_positional) {
    return Usage(spec, "missing argument");
  }
  return parsed;
}

ParsedArgs ParseArgsOrExit(const CommandSpec& spec, const std::vector<std::string>& args) {
  absl::StatusOr<ParsedArgs> parsed = ParseArgs(spec, args);
  if (!parsed.ok()) {
    std::fprintf(stderr, "%s: %s\nrun '%s --help' for usage\n", spec.name.c_str(),
                 std::string(parsed.status().message()).c_str(), spec.name.c_str());
    std::exit(2);
  }
  if (parsed->help()) {
    std::fputs(FormatHelp(spec).c_str(), stdout);
    std::exit(0);
  }
  return *std::move(parsed);
}

std::string FormatHelp(const CommandSpec& spec) {
  std::string text = absl::StrCat("usage: ", spec.usage, "\n");
  if (!spec.summary.empty()) {
    absl::StrAppend(&text, "\n", spec.summary, "\n");
  }
  size_t width = std::string("--help").size();
  std::vector<std::string> lefts;
  for (const FlagSpec& flag : spec.flags) {
    std::string left = absl::StrCat("--", flag.name);
    if (!flag.value_name.empty()) {
      absl::StrAppend(&left, " ", flag.value_name);
    }
    width = std::max(width, left.size());
    lefts.push_back(std::move(left));
  }
  absl::StrAppend(&text, "\nflags:\n");
  for (size_t i = 0; i < spec.flags.size(); ++i) {
    absl::StrAppend(&text, absl::StrFormat("  %-*s  %s\n", static_cast<int>(width), lefts[i],
                                           spec.flags[i].help));
  }
  absl::StrAppend(
      &text, absl::StrFormat("  %-*s  %s\n", static_cast<int>(width), "--help", "show this help"));
  if (!spec.details.empty()) {
    absl::StrAppend(&text, "\n", spec.details);
    if (spec.details.back() != '\n') {
      absl::StrAppend(&text, "\n");
    }
  }
  return text;
}

}  // namespace entrowatch::common
