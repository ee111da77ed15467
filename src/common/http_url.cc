#include "common/http_url.h"

#include <cstdint>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace entrowatch::common {

absl::StatusOr<HttpEndpoint> ParseHttpUrl(absl::string_view url, absl::string_view default_port) {
  absl::string_view rest = url;
  if (!absl::ConsumePrefix(&rest, "http://")) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected http://host:port[/prefix], got \"", url, "\""));
  }
  HttpEndpoint endpoint;
  const size_t slash = rest.find('/');
  absl::string_view authority = rest.substr(0, slash);
  if (slash != absl::string_view::npos) {
    absl::string_view prefix = rest.substr(slash);
    while (absl::ConsumeSuffix(&prefix, "/")) {
    }
    endpoint.path_prefix = std::string(prefix);
  }
  size_t colon;
  if (absl::ConsumePrefix(&authority, "[")) {
    const size_t close_bracket = authority.find(']');
    if (close_bracket == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("unterminated [ in \"", url, "\""));
    }
    endpoint.host = std::string(authority.substr(0, close_bracket));
    authority.remove_prefix(close_bracket + 1);
    colon = authority.empty() || authority[0] != ':' ? absl::string_view::npos : 0;
  } else {
    colon = authority.rfind(':');
    endpoint.host = std::string(authority.substr(0, colon));
  }
  const absl::string_view port_text =
      colon == absl::string_view::npos ? default_port : authority.substr(colon + 1);
  uint32_t port = 0;
  if (!absl::SimpleAtoi(port_text, &port) || port == 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expected http://host:port[/prefix] with a port in 1..65535, got \"", url, "\""));
  }
  if (endpoint.host.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("no host in \"", url, "\""));
  }
  endpoint.port = absl::StrCat(port);
  return endpoint;
}

std::string HttpUrl(const HttpEndpoint& endpoint, absl::string_view path) {
  const bool ipv6 = absl::StrContains(endpoint.host, ':');
  return absl::StrCat("http://", ipv6 ? "[" : "", endpoint.host, ipv6 ? "]" : "", ":",
                      endpoint.port, endpoint.path_prefix, path);
}

}  // namespace entrowatch::common
