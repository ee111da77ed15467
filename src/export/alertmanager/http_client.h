#pragma once

// Posting JSON to Alertmanager, with libcurl: one request per call, plain
// HTTP, no redirects, cancellable from another thread.

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "export/alertmanager/alertmanager_options.h"

namespace entrowatch::alertmanager {

// Posts `body` as application/json to endpoint.path_prefix + path and waits
// for the response, all within `timeout`. Returns the HTTP status of any
// answer (the caller decides what 4xx or 5xx mean); DeadlineExceeded when the
// timeout expires first; Cancelled as soon as `cancel_fd` (when >= 0, e.g. an
// eventfd) becomes readable; Unavailable when no answer came (refused or reset
// connection, a name that does not resolve), with libcurl's reason. Blocking;
// thread-safe (no shared state).
absl::StatusOr<int> HttpPost(const HttpEndpoint& endpoint, absl::string_view path,
                             absl::string_view body, absl::Duration timeout, int cancel_fd = -1);

}  // namespace entrowatch::alertmanager
