#pragma once

// Flat error propagation for absl::Status / absl::StatusOr across component
// boundaries:
//   RETURN_IF_ERROR(DoThing());
//   ASSIGN_OR_RETURN(auto value, ComputeValue());

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define EW_STATUS_CONCAT_INNER_(a, b) a##b
#define EW_STATUS_CONCAT_(a, b) EW_STATUS_CONCAT_INNER_(a, b)

#define RETURN_IF_ERROR(expr)                \
  do {                                       \
    ::absl::Status ew_status_ = (expr);      \
    if (!ew_status_.ok()) return ew_status_; \
  } while (0)

#define EW_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                              \
  if (!statusor.ok()) return statusor.status();         \
  lhs = std::move(statusor).value()

#define ASSIGN_OR_RETURN(lhs, rexpr) \
  EW_ASSIGN_OR_RETURN_IMPL_(EW_STATUS_CONCAT_(ew_statusor_, __LINE__), lhs, rexpr)
