#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace entrowatch::common {

// The one place where absl::Status becomes grpc::Status and back (the codes
// are the same set).
grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace entrowatch::common
