#pragma once

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "yaml-cpp/yaml.h"

namespace entrowatch::config {

// Strict reader over one YAML mapping. Every error names the full key path,
// the line (1-based) and what was expected. Keys that no Get*/Child call
// asked for are reported by CheckNoUnknownKeys(). yaml-cpp exceptions never
// escape. Not thread-safe.
class YamlMap {
 public:
  // `path` is the dotted prefix of this mapping ("" for the root).
  YamlMap(YAML::Node node, std::string path);

  const std::string& path() const { return path_; }
  bool Has(absl::string_view key) const;

  // Each Get leaves *out untouched when the key is absent.
  absl::Status Get(absl::string_view key, std::string* out);
  absl::Status Get(absl::string_view key, bool* out);
  absl::Status Get(absl::string_view key, int64_t* out);
  absl::Status Get(absl::string_view key, int* out);
  absl::Status Get(absl::string_view key, double* out);
  absl::Status Get(absl::string_view key, std::vector<std::string>* out);
  absl::Status Get(absl::string_view key, std::vector<double>* out);

  // Calls fn with the child mapping when the key is present; an error when the
  // value is not a mapping.
  absl::Status Child(absl::string_view key, const std::function<absl::Status(YamlMap&)>& fn);
  // Calls fn for each element of a sequence of mappings under key.
  absl::Status ChildList(absl::string_view key,
                         const std::function<absl::Status(YamlMap&, size_t index)>& fn);

  // The keys of this mapping in document order (for free-form maps).
  std::vector<std::string> Keys() const;

  absl::Status CheckNoUnknownKeys() const;

  // An InvalidArgument error naming path.key and its line.
  absl::Status Error(absl::string_view key, absl::string_view what) const;
  int Line(absl::string_view key) const;

 private:
  YAML::Node Find(absl::string_view key);
  template <typename T>
  absl::Status GetScalar(absl::string_view key, T* out, absl::string_view expected);

  YAML::Node node_;
  std::string path_;
  std::set<std::string, std::less<>> asked_;  // every key a Get*/Child asked for
};

}  // namespace entrowatch::config
