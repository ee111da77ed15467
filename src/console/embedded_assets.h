#pragma once

// The console's own files under src/console/assets, compiled in at build time
// (embed_assets.cmake) so that the daemon needs no install path for them.

#include "absl/strings/string_view.h"

namespace entrowatch::console {

// The file's content; empty for an unknown name.
absl::string_view EmbeddedAsset(absl::string_view name);

}  // namespace entrowatch::console
