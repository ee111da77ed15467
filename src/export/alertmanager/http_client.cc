#include "export/alertmanager/http_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace entrowatch::alertmanager {
namespace {

struct EasyDeleter {
  void operator()(CURL* easy) const { curl_easy_cleanup(easy); }
};
struct MultiDeleter {
  void operator()(CURLM* multi) const { curl_multi_cleanup(multi); }
};
struct ListDeleter {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};

// The response body is not used.
size_t Discard(char*, size_t size, size_t count, void*) { return size * count; }

// Removes the easy handle from the multi handle before either is cleaned up.
class Attached {
 public:
  Attached(CURLM* multi, CURL* easy) : multi_(multi), easy_(easy) {
    curl_multi_add_handle(multi_, easy_);
  }
  ~Attached() { curl_multi_remove_handle(multi_, easy_); }
  Attached(const Attached&) = delete;
  Attached& operator=(const Attached&) = delete;

 private:
  CURLM* const multi_;
  CURL* const easy_;
};

}  // namespace

absl::StatusOr<int> HttpPost(const HttpEndpoint& endpoint, absl::string_view path,
                             absl::string_view body, absl::Duration timeout, int cancel_fd) {
  // Thread-safe since libcurl 7.84; repeated calls only count references.
  static const CURLcode global_init = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (global_init != CURLE_OK) {
    return absl::InternalError(
        absl::StrCat("libcurl initialization: ", curl_easy_strerror(global_init)));
  }
  std::unique_ptr<CURL, EasyDeleter> easy(curl_easy_init());
  std::unique_ptr<CURLM, MultiDeleter> multi(curl_multi_init());
  // No "Expect: 100-continue" round trip before larger bodies.
  std::unique_ptr<curl_slist, ListDeleter> headers(
      curl_slist_append(curl_slist_append(nullptr, "Content-Type: application/json"), "Expect:"));
  if (easy == nullptr || multi == nullptr || headers == nullptr) {
    return absl::ResourceExhaustedError("libcurl: cannot allocate a request");
  }
  const std::string url = common::HttpUrl(endpoint, path);
  char error[CURL_ERROR_SIZE] = "";
  CURL* e = easy.get();
  curl_easy_setopt(e, CURLOPT_URL, url.c_str());
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http");
  curl_easy_setopt(e, CURLOPT_POST, 1L);
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
                   std::max<long>(1, static_cast<long>(absl::ToInt64Milliseconds(timeout))));
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, Discard);

  Attached attached(multi.get(), e);
  int running = 1;
  while (true) {
    const CURLMcode performed = curl_multi_perform(multi.get(), &running);
    if (performed != CURLM_OK) {
      return absl::InternalError(absl::StrCat("libcurl: ", curl_multi_strerror(performed)));
    }
    if (running == 0) {
      break;
    }
    curl_waitfd cancel{cancel_fd, CURL_WAIT_POLLIN, 0};
    const CURLMcode polled =
        curl_multi_poll(multi.get(), cancel_fd >= 0 ? &cancel : nullptr, cancel_fd >= 0 ? 1 : 0,
                        /*timeout_ms=*/1000, nullptr);
    if (polled != CURLM_OK) {
      return absl::InternalError(absl::StrCat("libcurl: ", curl_multi_strerror(polled)));
    }
    if ((cancel.revents & CURL_WAIT_POLLIN) != 0) {
      return absl::CancelledError(absl::StrCat("POST ", url, " cancelled"));
    }
  }
  CURLcode result = CURLE_OK;
  int queued = 0;
  while (CURLMsg* message = curl_multi_info_read(multi.get(), &queued)) {
    if (message->msg == CURLMSG_DONE) {
      result = message->data.result;
    }
  }
  const std::string reason =
      absl::StrCat("POST ", url, ": ", error[0] != '\0' ? error : curl_easy_strerror(result));
  if (result == CURLE_OPERATION_TIMEDOUT) {
    return absl::DeadlineExceededError(reason);
  }
  if (result != CURLE_OK) {
    return absl::UnavailableError(reason);
  }
  long status = 0;
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
  return static_cast<int>(status);
}

}  // namespace entrowatch::alertmanager
