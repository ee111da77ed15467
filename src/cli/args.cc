#include "cli/args.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace entrowatch::cli {
namespace {

const FlagSpec* FindFlag(const CommandSpec& spec, absl::string_view name) {
  for (const FlagSpec& flag : spec.flags) {
    if (flag.name == name) {
      return &flag;
    }
  }
  return nullptr;
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
  if (it == values_.end()) {
    return fallback;
  }
  int64_t value = 0;
  if (!absl::SimpleAtoi(it->second, &value) || value < min || value > max) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, ": expected an integer in [", min,
                                                   ", ", max, "], got \"", it->second, "\""));
  }
  return value;
}

absl::StatusOr<double> ParsedArgs::GetDouble(absl::string_view flag, double fallback, double min,
                                             double max) const {
  auto it = values_.find(flag);
  if (it == values_.end()) {
    return fallback;
  }
  double value = 0;
  if (!absl::SimpleAtod(it->second, &value) || !(value >= min && value <= max)) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, ": expected a number in [", min,
                                                   ", ", max, "], got \"", it->second, "\""));
  }
  return value;
}

absl::StatusOr<ParsedArgs> ParseArgs(const CommandSpec& spec,
                                     const std::vector<std::string>& args) {
  ParsedArgs parsed;
  bool flags_done = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& word = args[i];
    if (flags_done || word.size() < 2 || word.compare(0, 2, "--") != 0) {
      parsed.positional_.push_back(word);
      continue;
    }
    if (word == "--") {
      flags_done = true;
      continue;
    }
    if (word == "--help") {
      parsed.help_ = true;
      continue;
    }
    absl::string_view body = absl::string_view(word).substr(2);
    const size_t eq = body.find('=');
    const absl::string_view name = body.substr(0, eq);
    const FlagSpec* flag = FindFlag(spec, name);
    if (flag == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag --", name, " for '", spec.name, "'"));
    }
    if (parsed.values_.count(name) > 0) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, " given twice"));
    }
    std::string value;
    if (flag->value_name.empty()) {
      if (eq != absl::string_view::npos) {
        return absl::InvalidArgumentError(absl::StrCat("--", name, " takes no value"));
      }
    } else if (eq != absl::string_view::npos) {
      value = std::string(body.substr(eq + 1));
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, " needs a value (", flag->value_name, ")"));
    }
    parsed.values_.emplace(std::string(name), std::move(value));
  }
  if (parsed.help_) {
    return parsed;
  }
  const size_t n = parsed.positional_.size();
  if (n < spec.min_positional || n > spec.max_positional) {
    if (n > spec.max_positional) {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument \"",
                                                     parsed.positional_[spec.max_positional],
                                                     "\"; usage: entrowatch ", spec.usage));
    }
    return absl::InvalidArgumentError(
        absl::StrCat("missing argument; usage: entrowatch ", spec.usage));
  }
  return parsed;
}

std::string FormatHelp(const CommandSpec& spec) {
  std::string text = absl::StrCat("usage: entrowatch ", spec.usage, "\n\n", spec.summary, "\n");
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

}  // namespace entrowatch::cli
