#include "export/alertmanager/alert_tracker.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/clock.h"

namespace entrowatch::alertmanager {
namespace {

namespace v1 = ::entrowatch::v1;

v1::Anomaly MakeAnomaly(v1::Pattern pattern, v1::Severity severity, std::string subject = "") {
  v1::Anomaly anomaly;
  anomaly.set_pattern(pattern);
  anomaly.set_severity(severity);
  anomaly.set_since_step(120);
  anomaly.set_subject(std::move(subject));
  anomaly.set_reason("normalized entropy below floor");
  v1::Evidence* e = anomaly.add_evidence();
  e->set_signal("normalized_entropy");
  e->set_value(0.0125);
  e->set_threshold(0.05);
  e->set_comparison("<");
  anomaly.set_recommended_action("add an entropy bonus");
  return anomaly;
}

v1::Verdict MakeVerdict(v1::HealthState state) {
  v1::Verdict verdict;
  verdict.set_state(state);
  verdict.set_step(130);
  verdict.set_since_step(125);
  verdict.set_reason("entropy HIGH, grad norm HIGH");
  return verdict;
}

AlertmanagerOptions Options() {
  AlertmanagerOptions options;
  options.enabled = true;
  options.url = "http://127.0.0.1:9093";
  options.resend_interval_seconds = 60;
  options.retry_initial_backoff_seconds = 1;
  options.retry_max_backoff_seconds = 8;
  options.labels = {{"cluster", "eu-1"}};
  return options;
}

google::protobuf::ListValue ParseJson(const std::string& json) {
  google::protobuf::ListValue list;
  const auto status = google::protobuf::util::JsonStringToMessage(json, &list);
  EXPECT_TRUE(status.ok()) << status.ToString() << "\n" << json;
  return list;
}

TEST(AlertsForTest, OneAlertPerPatternAndAttentionState) {
  const std::vector<v1::Anomaly> active = {
      MakeAnomaly(v1::ENTROPY_COLLAPSE, v1::CRITICAL, "token"),
      MakeAnomaly(v1::HEAD_REDUNDANCY, v1::INFO, "layer 3"),
      MakeAnomaly(v1::HEAD_REDUNDANCY, v1::INFO, "layer 7"),
      MakeAnomaly(v1::PATTERN_UNSPECIFIED, v1::CRITICAL),
  };
  const std::vector<Alert> alerts =
      AlertsFor("gpt-7", active, MakeVerdict(v1::PANIC_ZONE), Options());
  ASSERT_EQ(alerts.size(), 3u);

  EXPECT_EQ(alerts[0].labels.at("alertname"), "EntrowatchEntropyCollapse");
  EXPECT_EQ(alerts[0].labels.at("pattern"), "ENTROPY_COLLAPSE");
  EXPECT_EQ(alerts[0].labels.at("severity"), "critical");
  EXPECT_EQ(alerts[0].labels.at("run"), "gpt-7");
  EXPECT_EQ(alerts[0].labels.at("source"), "entrowatchd");
  EXPECT_EQ(alerts[0].labels.at("cluster"), "eu-1");
  EXPECT_EQ(alerts[0].annotations.at("summary"), "ENTROPY_COLLAPSE in run gpt-7 (token)");
  EXPECT_EQ(alerts[0].annotations.at("description"),
            "normalized entropy below floor. Evidence: normalized_entropy=0.0125 (threshold < "
            "0.05). Since step 120.");
  EXPECT_EQ(alerts[0].annotations.at("recommended_action"), "add an entropy bonus");
  EXPECT_EQ(alerts[0].annotations.at("runbook_url"), "docs/runbooks.md#entrowatchentropycollapse");

  // A pattern active on two layers is one alert, as entrowatch_anomaly_active.
  EXPECT_EQ(alerts[1].labels.at("alertname"), "EntrowatchHeadRedundancy");
  EXPECT_EQ(alerts[1].labels.at("severity"), "info");
  EXPECT_EQ(alerts[1].annotations.at("summary"), "HEAD_REDUNDANCY in run gpt-7 (layer 3)");

  EXPECT_EQ(alerts[2].labels.at("alertname"), "EntrowatchPanicZone");
  EXPECT_EQ(alerts[2].labels.at("state"), "PANIC_ZONE");
  EXPECT_EQ(alerts[2].labels.at("severity"), "critical");
  EXPECT_EQ(alerts[2].labels.count("pattern"), 0u);
  EXPECT_EQ(alerts[2].annotations.at("runbook_url"), "docs/runbooks.md#entrowatchpaniczone");
}

TEST(AlertsForTest, StatesWithoutAttentionRaiseNothing) {
  for (const v1::HealthState state : {v1::HEALTH_STATE_UNSPECIFIED, v1::WARMUP, v1::NORMAL}) {
    EXPECT_TRUE(AlertsFor("r", {}, MakeVerdict(state), Options()).empty()) << state;
  }
  const std::vector<std::pair<v1::HealthState, std::string>> expected = {
      {v1::PANIC_ZONE, "critical"},
      {v1::PATHOLOGICAL_CONFIDENCE, "critical"},
      {v1::STAGNATION, "warning"},
      {v1::COMFORT_ZONE, "warning"}};
  for (const auto& [state, severity] : expected) {
    const std::vector<Alert> alerts = AlertsFor("r", {}, MakeVerdict(state), Options());
    ASSERT_EQ(alerts.size(), 1u);
    EXPECT_EQ(alerts[0].labels.at("severity"), severity);
    EXPECT_EQ(alerts[0].labels.at("state"), v1::HealthState_Name(state));
  }
}

TEST(EncodeAlertsTest, InvalidUtf8IsReplacedRatherThanFailingThePost) {
  Alert alert;
  alert.labels = {{"alertname", "EntrowatchEntropyCollapse"}, {"run", "bad\xff"}};
  alert.starts_at = absl::FromUnixSeconds(1'700'000'000);
  alert.ends_at = absl::InfiniteFuture();
  const google::protobuf::ListValue list = ParseJson(EncodeAlerts({alert}, ""));
  ASSERT_EQ(list.values_size(), 1);
  EXPECT_EQ(list.values(0)
                .struct_value()
                .fields()
                .at("labels")
                .struct_value()
                .fields()
                .at("run")
                .string_value(),
            "bad\xef\xbf\xbd");
}

TEST(EncodeAlertsTest, ProducesValidJsonWithEscapes) {
  Alert alert;
  alert.labels = {{"alertname", "EntrowatchEntropyCollapse"}, {"run", "run \"q\"\\x\n\t\x01"}};
  alert.annotations = {{"summary", "ünïcode ok"}};
  alert.starts_at = absl::FromUnixMillis(1'700'000'000'123);
  alert.ends_at = absl::InfiniteFuture();
  Alert resolved = alert;
  resolved.ends_at = absl::FromUnixSeconds(1'700'000'060);

  const google::protobuf::ListValue list =
      ParseJson(EncodeAlerts({alert, resolved}, "http://d1:9551/metrics"));
  ASSERT_EQ(list.values_size(), 2);
  const auto& first = list.values(0).struct_value().fields();
  EXPECT_EQ(first.at("labels").struct_value().fields().at("run").string_value(),
            "run \"q\"\\x\n\t\x01");
  EXPECT_EQ(first.at("annotations").struct_value().fields().at("summary").string_value(),
            "ünïcode ok");
  EXPECT_EQ(first.at("startsAt").string_value(), "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(first.count("endsAt"), 0u);
  EXPECT_EQ(first.at("generatorURL").string_value(), "http://d1:9551/metrics");
  EXPECT_EQ(list.values(1).struct_value().fields().at("endsAt").string_value(),
            "2023-11-14T22:14:20.000Z");

  EXPECT_EQ(EncodeAlerts({}, ""), "[]");
  EXPECT_EQ(
      ParseJson(EncodeAlerts({alert}, "")).values(0).struct_value().fields().count("generatorURL"),
      0u);
}

class AlertTrackerTest : public ::testing::Test {
 protected:
  common::FakeClock clock_;
  AlertTracker tracker_{Options(), &clock_};
};

TEST_F(AlertTrackerTest, NothingToSendWithoutAlerts) {
  tracker_.Apply("r", {}, MakeVerdict(v1::NORMAL));
  EXPECT_EQ(tracker_.NextPostAt(), absl::InfiniteDuration());
  EXPECT_TRUE(tracker_.DueAlerts().empty());
  EXPECT_EQ(tracker_.firing(), 0);
}

TEST_F(AlertTrackerTest, FiresResendsAndResolves) {
  const absl::Time start = clock_.Wall();
  tracker_.Apply("r", {MakeAnomaly(v1::ENTROPY_COLLAPSE, v1::CRITICAL)}, MakeVerdict(v1::NORMAL));
  EXPECT_EQ(tracker_.firing(), 1);
  std::vector<Alert> due = tracker_.DueAlerts();
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].starts_at, start);
  EXPECT_EQ(due[0].ends_at, start + absl::Minutes(4));
  tracker_.OnPostResult(true);

  // Same state again: nothing new until the resend interval.
  clock_.Advance(absl::Seconds(30));
  tracker_.Apply("r", {MakeAnomaly(v1::ENTROPY_COLLAPSE, v1::CRITICAL)}, MakeVerdict(v1::NORMAL));
  EXPECT_TRUE(tracker_.DueAlerts().empty());
  EXPECT_EQ(tracker_.NextPostAt(), absl::Seconds(60));
  clock_.Advance(absl::Seconds(30));
  due = tracker_.DueAlerts();
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].starts_at, start);  // the same alert instance
  EXPECT_EQ(due[0].ends_at, start + absl::Minutes(5));
  tracker_.OnPostResult(true);

  // Resolution is posted at once with endsAt = now, then forgotten.
  clock_.Advance(absl::Seconds(5));
  tracker_.Apply("r", {}, MakeVerdict(v1::NORMAL));
  EXPECT_EQ(tracker_.firing(), 0);
  due = tracker_.DueAlerts();
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].ends_at, start + absl::Seconds(65));
  tracker_.OnPostResult(true);
  EXPECT_EQ(tracker_.NextPostAt(), absl::InfiniteDuration());

  // Back again: a new instance with a new startsAt.
  clock_.Advance(absl::Seconds(5));
  tracker_.Apply("r", {MakeAnomaly(v1::ENTROPY_COLLAPSE, v1::CRITICAL)}, MakeVerdict(v1::NORMAL));
  due = tracker_.DueAlerts();
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].starts_at, start + absl::Seconds(70));
}

TEST_F(AlertTrackerTest, ChangedAnnotationsArePostedAtOnce) {
  tracker_.Apply("r", {}, MakeVerdict(v1::STAGNATION));
  ASSERT_EQ(tracker_.DueAlerts().size(), 1u);
  tracker_.OnPostResult(true);
  clock_.Advance(absl::Seconds(1));
  v1::Verdict later = MakeVerdict(v1::STAGNATION);
  later.set_reason("grad norm z=-3.4");
  tracker_.Apply("r", {}, later);
  const std::vector<Alert> due = tracker_.DueAlerts();
  ASSERT_EQ(due.size(), 1u);
  EXPECT_NE(due[0].annotations.at("description").find("z=-3.4"), std::string::npos);
}

TEST_F(AlertTrackerTest, RunsAreIndependent) {
  tracker_.Apply("a", {}, MakeVerdict(v1::PANIC_ZONE));
  tracker_.Apply("b", {MakeAnomaly(v1::ENTROPY_DRIFT, v1::WARNING)}, MakeVerdict(v1::NORMAL));
  EXPECT_EQ(tracker_.firing(), 2);
  tracker_.OnPostResult(true);
  tracker_.Apply("a", {}, MakeVerdict(v1::NORMAL));
  const std::vector<Alert> due = tracker_.DueAlerts();
  ASSERT_EQ(due.size(), 2u);  // a resolved, b still firing
  EXPECT_EQ(due[0].labels.at("run"), "a");
  EXPECT_EQ(due[0].ends_at, clock_.Wall());
  EXPECT_EQ(due[1].labels.at("run"), "b");
  EXPECT_EQ(due[1].ends_at, clock_.Wall() + absl::Minutes(4));
}

TEST_F(AlertTrackerTest, BacksOffExponentiallyAndKeepsResolutions) {
  tracker_.Apply("r", {}, MakeVerdict(v1::PANIC_ZONE));
  tracker_.OnPostResult(true);
  tracker_.Apply("r", {}, MakeVerdict(v1::NORMAL));  // resolved, not yet delivered

  const std::vector<double> expected_waits = {1, 2, 4, 8, 8};
  for (const double wait : expected_waits) {
    ASSERT_EQ(tracker_.DueAlerts().size(), 1u);
    tracker_.OnPostResult(false);
    // A change during backoff waits for the backoff too.
    tracker_.Apply("r", {}, MakeVerdict(v1::NORMAL));
    clock_.Advance(absl::Seconds(wait) - absl::Milliseconds(1));
    EXPECT_TRUE(tracker_.DueAlerts().empty()) << wait;
    clock_.Advance(absl::Milliseconds(1));
  }
  const std::vector<Alert> due = tracker_.DueAlerts();
  ASSERT_EQ(due.size(), 1u);
  EXPECT_NE(due[0].ends_at, absl::InfiniteFuture());
  tracker_.OnPostResult(true);
  EXPECT_EQ(tracker_.NextPostAt(), absl::InfiniteDuration());
  EXPECT_EQ(tracker_.current_backoff(), absl::Seconds(1));
}

}  // namespace
}  // namespace entrowatch::alertmanager
