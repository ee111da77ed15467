#include "common/tensor_view.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/half.h"

namespace entrowatch::common {

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return 4;
    case DType::kFloat16:
    case DType::kBFloat16:
      return 2;
  }
  return 0;
}

absl::string_view DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return "FLOAT32";
    case DType::kFloat16:
      return "FLOAT16";
    case DType::kBFloat16:
      return "BFLOAT16";
  }
  return "?";
}

absl::StatusOr<DType> DTypeFromProto(entrowatch::v1::DType dtype) {
  switch (dtype) {
    case entrowatch::v1::FLOAT32:
      return DType::kFloat32;
    case entrowatch::v1::FLOAT16:
      return DType::kFloat16;
    case entrowatch::v1::BFLOAT16:
      return DType::kBFloat16;
    default:
      return absl::InvalidArgumentError(absl::StrCat("unknown dtype ", static_cast<int>(dtype),
                                                     " (expected FLOAT32, FLOAT16 or BFLOAT16)"));
  }
}

float LoadAsFloat(DType dtype, const void* row, int64_t i) {
  const auto* bytes = static_cast<const uint8_t*>(row);
  switch (dtype) {
    case DType::kFloat32: {
      float f;
      std::memcpy(&f, bytes + 4 * i, 4);
      return f;
    }
    case DType::kFloat16: {
      uint16_t h;
      std::memcpy(&h, bytes + 2 * i, 2);
      return HalfToFloat(h);
    }
    case DType::kBFloat16: {
      uint16_t h;
      std::memcpy(&h, bytes + 2 * i, 2);
      return BFloat16ToFloat(h);
    }
  }
  return 0.0f;
}

}  // namespace entrowatch::common
