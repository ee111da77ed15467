#pragma once

// http://host:port[/prefix] URLs, as the daemon's Alertmanager push and the
// CLI's --console take them. Plain HTTP only.

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace entrowatch::common {

struct HttpEndpoint {
  std::string host;         // name or address; IPv6 literals without brackets
  std::string port;         // decimal
  std::string path_prefix;  // "" or "/prefix" without a trailing slash
};

// Parses http://host:port[/prefix]. Without default_port the port is
// required (guessing one hides mistakes); with it, a URL without a port gets
// that one. An IPv6 host is written in brackets.
absl::StatusOr<HttpEndpoint> ParseHttpUrl(absl::string_view url,
                                          absl::string_view default_port = "");

// The URL of `path` (starting with '/') under the endpoint.
std::string HttpUrl(const HttpEndpoint& endpoint, absl::string_view path);

}  // namespace entrowatch::common
