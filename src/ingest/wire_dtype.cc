#include "ingest/wire_dtype.h"

#include "absl/strings/str_cat.h"

namespace entrowatch::ingest {

absl::StatusOr<common::DType> DTypeFromProto(v1::DType dtype) {
  switch (dtype) {
    case v1::FLOAT32:
      return common::DType::kFloat32;
    case v1::FLOAT16:
      return common::DType::kFloat16;
    case v1::BFLOAT16:
      return common::DType::kBFloat16;
    default:
      return absl::InvalidArgumentError(absl::StrCat("unknown dtype ", static_cast<int>(dtype),
                                                     " (expected FLOAT32, FLOAT16 or BFLOAT16)"));
  }
}

}  // namespace entrowatch::ingest
