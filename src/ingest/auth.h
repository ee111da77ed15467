#pragma once

// Bearer-token authorization of the Monitor API. Each token may write and
// read only the runs whose id matches one of its globs. With no tokens
// configured every caller may do everything (bind to loopback then).
// Immutable after construction, so thread-safe.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace grpc {
class ServerContextBase;
}

namespace entrowatch::ingest {

struct TokenGrant {
  std::string name;  // shown in logs instead of the secret
  std::string token;
  std::vector<std::string> run_globs;  // fnmatch(3) patterns
};

class Authorizer {
 public:
  explicit Authorizer(std::vector<TokenGrant> grants) : grants_(std::move(grants)) {}

  bool enabled() const { return !grants_.empty(); }

  // The grant of the caller's `authorization: Bearer TOKEN` header; nullptr
  // when authorization is off. Unauthenticated when a token is required and
  // missing or unknown.
  absl::StatusOr<const TokenGrant*> Authenticate(const grpc::ServerContextBase& context) const;
  absl::StatusOr<const TokenGrant*> AuthenticateHeader(absl::string_view header) const;

  // PermissionDenied when the grant may not touch run_id.
  static absl::Status CheckRun(const TokenGrant* grant, const std::string& run_id);

 private:
  std::vector<TokenGrant> grants_;
};

// Reads a secret from a file: the first line, surrounding whitespace removed.
// Errors name the file, never its contents.
absl::StatusOr<std::string> ReadSecretFile(const std::string& path);

}  // namespace entrowatch::ingest
