#pragma once

// A minimal HTTP/1.1 client for posting JSON to Alertmanager over plain TCP.
// One request per connection (Connection: close); no TLS, no redirects.

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace entrowatch::alertmanager {

struct HttpEndpoint {
  std::string host;         // name or address; IPv6 literals without brackets
  std::string port;         // decimal
  std::string path_prefix;  // "" or "/prefix" without a trailing slash
};

// Parses http://host:port[/prefix]. The port is required (Alertmanager has no
// well-known HTTP port other than its own 9093, and guessing hides mistakes).
absl::StatusOr<HttpEndpoint> ParseHttpUrl(absl::string_view url);

// Posts `body` as application/json to endpoint.path_prefix + path and waits
// for the response, all within `timeout`. Returns OK for a 2xx status;
// InvalidArgument for a 4xx (the request itself is wrong: resending it cannot
// help); Unavailable for a 5xx, a refused or reset connection or a name that
// does not resolve; DeadlineExceeded when the timeout expires; Cancelled as
// soon as `cancel_fd` (when >= 0, e.g. an eventfd) becomes readable. Blocking;
// thread-compatible (no shared state).
absl::Status HttpPost(const HttpEndpoint& endpoint, absl::string_view path, absl::string_view body,
                      absl::Duration timeout, int cancel_fd = -1);

}  // namespace entrowatch::alertmanager
