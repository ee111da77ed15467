#pragma once

// Contribution records of state database schema version 1 (databases written
// before the schema version was recorded): a fixed-layout binary record in the
// byte order of the host that wrote it. Read only by the migration to
// protobuf records in DurableStore::Open.

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "store/store.pb.h"

namespace entrowatch::store {

// Decodes one version 1 record. DataLoss when the bytes are not one whole
// record (truncated, trailing bytes, per-token arrays of different lengths).
absl::StatusOr<v1::Contribution> DecodeLegacyContribution(absl::string_view bytes);

}  // namespace entrowatch::store
