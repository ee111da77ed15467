#pragma once

#include "absl/status/status.h"
#include "config/yaml_reader.h"

namespace entrowatch::config {

// Thresholds of the health analysis (the `analysis:` section).
struct AnalysisConfig {};

// Parses the `analysis:` mapping into *out (which holds the defaults on entry).
absl::Status ParseAnalysisConfig(const YamlMap& node, AnalysisConfig* out);

}  // namespace entrowatch::config
