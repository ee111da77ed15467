#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace entrowatch::ingest {

// The one place where the daemon's absl::Status becomes the grpc::Status of
// an RPC (the codes are the same set).
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace entrowatch::ingest
