#include "common/http_url.h"

#include "gtest/gtest.h"

namespace entrowatch::common {
namespace {

TEST(HttpUrlTest, ParsesHostPortAndPrefix) {
  absl::StatusOr<HttpEndpoint> e = ParseHttpUrl("http://10.0.0.5:9093/alertmanager//");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->host, "10.0.0.5");
  EXPECT_EQ(e->port, "9093");
  EXPECT_EQ(e->path_prefix, "/alertmanager");
  EXPECT_EQ(HttpUrl(*e, "/api/v2/alerts"), "http://10.0.0.5:9093/alertmanager/api/v2/alerts");
}

TEST(HttpUrlTest, BracketsIpv6BothWays) {
  absl::StatusOr<HttpEndpoint> e = ParseHttpUrl("http://[::1]:9551");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->host, "::1");
  EXPECT_EQ(HttpUrl(*e, "/metrics"), "http://[::1]:9551/metrics");
}

TEST(HttpUrlTest, PortRequiredUnlessDefaulted) {
  EXPECT_FALSE(ParseHttpUrl("http://console.example").ok());
  absl::StatusOr<HttpEndpoint> e = ParseHttpUrl("http://console.example/x", "80");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->port, "80");
  EXPECT_EQ(e->path_prefix, "/x");
}

TEST(HttpUrlTest, RefusesWhatIsNotPlainHttpWithAUsablePort) {
  for (const char* bad : {"https://h:1", "ftp://x", "http://:80", "http://h:0", "http://h:65536",
                          "http://h:port", "http://[::1"}) {
    absl::StatusOr<HttpEndpoint> e = ParseHttpUrl(bad, "80");
    EXPECT_FALSE(e.ok()) << bad;
    if (!e.ok()) {
      EXPECT_NE(e.status().message().find(bad), std::string::npos) << e.status();
    }
  }
}

}  // namespace
}  // namespace entrowatch::common
