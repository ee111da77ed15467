#include "config/yaml_reader.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"

namespace entrowatch::config {
namespace {

std::string Join(const std::string& path, absl::string_view key) {
  return path.empty() ? std::string(key) : absl::StrCat(path, ".", key);
}

}  // namespace

YamlMap::YamlMap(YAML::Node node, std::string path) : node_(node), path_(std::move(path)) {}

bool YamlMap::Has(absl::string_view key) const {
  for (const auto& kv : node_) {
    if (kv.first.Scalar() == key) {
      return true;
    }
  }
  return false;
}

YAML::Node YamlMap::Find(absl::string_view key) {
  asked_.insert(std::string(key));
  for (const auto& kv : node_) {
    if (kv.first.Scalar() == key) {
      return kv.second;
    }
  }
  return YAML::Node(YAML::NodeType::Undefined);
}

int YamlMap::Line(absl::string_view key) const {
  for (const auto& kv : node_) {
    if (kv.first.Scalar() == key) {
      return kv.first.Mark().line + 1;
    }
  }
  return node_.Mark().line + 1;
}

absl::Status YamlMap::Error(absl::string_view key, absl::string_view what) const {
  return absl::InvalidArgumentError(
      absl::StrCat("config: ", Join(path_, key), " (line ", Line(key), "): ", what));
}

template <typename T>
absl::Status YamlMap::GetScalar(absl::string_view key, T* out, absl::string_view expected) {
  YAML::Node n = Find(key);
  if (!n.IsDefined()) {
    return absl::OkStatus();
  }
  if (!n.IsScalar()) {
    return Error(key, absl::StrCat("expected ", expected));
  }
  try {
    *out = n.as<T>();
  } catch (const YAML::Exception&) {
    return Error(key, absl::StrCat("expected ", expected, ", got '", n.Scalar(), "'"));
  }
  return absl::OkStatus();
}

absl::Status YamlMap::Get(absl::string_view key, std::string* out) {
  return GetScalar(key, out, "a string");
}

absl::Status YamlMap::Get(absl::string_view key, bool* out) {
  return GetScalar(key, out, "true or false");
}

absl::Status YamlMap::Get(absl::string_view key, int64_t* out) {
  return GetScalar(key, out, "an integer");
}

absl::Status YamlMap::Get(absl::string_view key, int* out) {
  return GetScalar(key, out, "an integer");
}

absl::Status YamlMap::Get(absl::string_view key, double* out) {
  double v = *out;
  absl::Status s = GetScalar(key, &v, "a number");
  if (!s.ok()) {
    return s;
  }
  if (!std::isfinite(v)) {
    return Error(key, "expected a finite number");
  }
  *out = v;
  return absl::OkStatus();
}

absl::Status YamlMap::Get(absl::string_view key, std::vector<std::string>* out) {
  YAML::Node n = Find(key);
  if (!n.IsDefined()) {
    return absl::OkStatus();
  }
  if (!n.IsSequence()) {
    return Error(key, "expected a list of strings");
  }
  std::vector<std::string> values;
  for (const auto& item : n) {
    if (!item.IsScalar()) {
      return Error(key, "expected a list of strings");
    }
    values.push_back(item.Scalar());
  }
  *out = std::move(values);
  return absl::OkStatus();
}

absl::Status YamlMap::Get(absl::string_view key, std::vector<double>* out) {
  YAML::Node n = Find(key);
  if (!n.IsDefined()) {
    return absl::OkStatus();
  }
  if (!n.IsSequence()) {
    return Error(key, "expected a list of numbers");
  }
  std::vector<double> values;
  for (const auto& item : n) {
    try {
      values.push_back(item.as<double>());
    } catch (const YAML::Exception&) {
      return Error(key, absl::StrCat("expected a list of numbers, got '", item.Scalar(), "'"));
    }
  }
  *out = std::move(values);
  return absl::OkStatus();
}

absl::Status YamlMap::Child(absl::string_view key,
                            const std::function<absl::Status(YamlMap&)>& fn) {
  YAML::Node n = Find(key);
  if (!n.IsDefined() || n.IsNull()) {
    return absl::OkStatus();
  }
  if (!n.IsMap()) {
    return Error(key, "expected a mapping");
  }
  YamlMap child(n, Join(path_, key));
  absl::Status s = fn(child);
  if (!s.ok()) {
    return s;
  }
  return child.CheckNoUnknownKeys();
}

absl::Status YamlMap::ChildList(absl::string_view key,
                                const std::function<absl::Status(YamlMap&, size_t index)>& fn) {
  YAML::Node n = Find(key);
  if (!n.IsDefined() || n.IsNull()) {
    return absl::OkStatus();
  }
  if (!n.IsSequence()) {
    return Error(key, "expected a list of mappings");
  }
  size_t index = 0;
  for (const auto& item : n) {
    if (!item.IsMap()) {
      return Error(key, absl::StrCat("item ", index, ": expected a mapping"));
    }
    YamlMap child(item, absl::StrCat(Join(path_, key), "[", index, "]"));
    absl::Status s = fn(child, index);
    if (!s.ok()) {
      return s;
    }
    s = child.CheckNoUnknownKeys();
    if (!s.ok()) {
      return s;
    }
    ++index;
  }
  return absl::OkStatus();
}

std::vector<std::string> YamlMap::Keys() const {
  std::vector<std::string> keys;
  for (const auto& kv : node_) {
    keys.push_back(kv.first.Scalar());
  }
  return keys;
}

absl::Status YamlMap::CheckNoUnknownKeys() const {
  std::set<std::string> keys;
  for (const auto& kv : node_) {
    const std::string& key = kv.first.Scalar();
    if (!keys.insert(key).second) {
      return absl::InvalidArgumentError(absl::StrCat("config: duplicate key '", Join(path_, key),
                                                     "' (line ", kv.first.Mark().line + 1, ")"));
    }
    if (asked_.find(key) == asked_.end()) {
      std::vector<std::string> known(asked_.begin(), asked_.end());
      return absl::InvalidArgumentError(absl::StrCat(
          "config: unknown key '", Join(path_, key), "' (line ", kv.first.Mark().line + 1, ")",
          known.empty() ? std::string()
                        : absl::StrCat("; known here: ", absl::StrJoin(known, ", "))));
    }
  }
  return absl::OkStatus();
}

}  // namespace entrowatch::config
