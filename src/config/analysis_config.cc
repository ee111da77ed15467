#include "config/analysis_config.h"

namespace entrowatch::config {

absl::Status ParseAnalysisConfig(const YamlMap& node, AnalysisConfig* out) {
  return node.CheckNoUnknownKeys();
}

}  // namespace entrowatch::config
