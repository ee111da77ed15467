#pragma once

#include "absl/status/statusor.h"
#include "common/tensor_view.h"
#include "entrowatch/v1/entrowatch.pb.h"

namespace entrowatch::ingest {

// The engine's element type of a wire tensor. InvalidArgument for
// DTYPE_UNSPECIFIED and values outside the enum. Thread-safe (pure).
absl::StatusOr<common::DType> DTypeFromProto(v1::DType dtype);

}  // namespace entrowatch::ingest
