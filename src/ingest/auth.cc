#include "ingest/auth.h"

#include <fnmatch.h>
#include <grpcpp/server_context.h>

#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace entrowatch::ingest {
namespace {

// Compares in time independent of where the strings differ.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= x ^ y;
  }
  return diff == 0;
}

}  // namespace

absl::StatusOr<const TokenGrant*> Authorizer::Authenticate(
    const grpc::ServerContextBase& context) const {
  if (!enabled()) {
    return nullptr;
  }
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return absl::UnauthenticatedError("missing 'authorization: Bearer <token>' metadata");
  }
  return AuthenticateHeader(absl::string_view(it->second.data(), it->second.size()));
}

absl::StatusOr<const TokenGrant*> Authorizer::AuthenticateHeader(absl::string_view header) const {
  if (!enabled()) {
    return nullptr;
  }
  absl::string_view token = header;
  if (!absl::ConsumePrefix(&token, "Bearer ")) {
    return absl::UnauthenticatedError("authorization metadata must be 'Bearer <token>'");
  }
  const TokenGrant* match = nullptr;
  for (const TokenGrant& grant : grants_) {
    if (ConstantTimeEquals(token, grant.token)) {
      match = &grant;
    }
  }
  if (match == nullptr) {
    return absl::UnauthenticatedError("unknown token");
  }
  return match;
}

absl::Status Authorizer::CheckRun(const TokenGrant* grant, const std::string& run_id) {
  if (grant == nullptr) {
    return absl::OkStatus();
  }
  for (const std::string& glob : grant->run_globs) {
    if (fnmatch(glob.c_str(), run_id.c_str(), 0) == 0) {
      return absl::OkStatus();
    }
  }
  return absl::PermissionDeniedError(
      absl::StrCat("token '", grant->name, "' may not access run '", run_id, "'"));
}

absl::StatusOr<std::string> ReadSecretFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read secret file '", path, "'"));
  }
  std::string line;
  std::getline(in, line);
  std::string secret(absl::StripAsciiWhitespace(line));
  if (secret.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("secret file '", path, "' is empty"));
  }
  return secret;
}

}  // namespace entrowatch::ingest
