#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"

namespace entrowatch::common {

enum class DType { kFloat32, kFloat16, kBFloat16 };

size_t DTypeSize(DType dtype);
absl::string_view DTypeName(DType dtype);

// Non-owning view of a row-major 2-D tensor of little-endian elements. The
// bytes must outlive the view.
struct MatrixView {
  DType dtype = DType::kFloat32;
  int64_t rows = 0;
  int64_t cols = 0;
  const void* data = nullptr;

  size_t bytes() const { return static_cast<size_t>(rows) * cols * DTypeSize(dtype); }
  const uint8_t* row(int64_t r) const {
    return static_cast<const uint8_t*>(data) + static_cast<size_t>(r) * cols * DTypeSize(dtype);
  }
};

// Element i of a row as float.
float LoadAsFloat(DType dtype, const void* row, int64_t i);

}  // namespace entrowatch::common
