#include "cli/format.h"

#include <algorithm>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/util/json_util.h"

namespace entrowatch::cli {
namespace {

absl::Time ToTime(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

std::string StateName(const v1::Verdict& verdict) {
  if (verdict.state() == v1::HEALTH_STATE_UNSPECIFIED) {
    return "-";
  }
  return v1::HealthState_Name(verdict.state());
}

std::string FormatValue(double value) { return absl::StrFormat("%.4g", value); }

std::string LastReportAge(const v1::RunStatus& run, absl::Time now) {
  if (!run.has_last_report_time()) {
    return "-";
  }
  return absl::StrCat(FormatAge(now - ToTime(run.last_report_time())), " ago");
}

std::string FormatEvidence(const google::protobuf::RepeatedPtrField<v1::Evidence>& evidence) {
  std::vector<std::string> parts;
  for (const v1::Evidence& e : evidence) {
    parts.push_back(absl::StrCat(e.signal(), " ", FormatValue(e.value()), " ", e.comparison(), " ",
                                 FormatValue(e.threshold())));
  }
  return absl::StrJoin(parts, "; ");
}

}  // namespace

std::string FormatTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()), 0);
    for (size_t i = 0; i < row.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  std::string text;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      if (i + 1 == row.size()) {
        absl::StrAppend(&line, row[i]);
      } else {
        absl::StrAppend(&line, absl::StrFormat("%-*s  ", static_cast<int>(widths[i]), row[i]));
      }
    }
    absl::StrAppend(&text, line, "\n");
  }
  return text;
}

std::string FormatAge(absl::Duration age) {
  const int64_t seconds = std::max<int64_t>(0, absl::ToInt64Seconds(age));
  if (seconds < 60) {
    return absl::StrCat(seconds, "s");
  }
  if (seconds < 3600) {
    return absl::StrFormat("%dm%02ds", seconds / 60, seconds % 60);
  }
  if (seconds < 86400) {
    return absl::StrFormat("%dh%02dm", seconds / 3600, seconds % 3600 / 60);
  }
  return absl::StrFormat("%dd%dh", seconds / 86400, seconds % 86400 / 3600);
}

std::string FormatAnomalyNames(const google::protobuf::RepeatedPtrField<v1::Anomaly>& anomalies) {
  if (anomalies.empty()) {
    return "none";
  }
  std::vector<std::string> names;
  for (const v1::Anomaly& anomaly : anomalies) {
    names.push_back(v1::Pattern_Name(anomaly.pattern()));
  }
  return absl::StrJoin(names, ",");
}

std::string FormatAnomaliesWithSeverity(
    const google::protobuf::RepeatedPtrField<v1::Anomaly>& anomalies) {
  if (anomalies.empty()) {
    return "none";
  }
  std::vector<std::string> names;
  for (const v1::Anomaly& anomaly : anomalies) {
    names.push_back(absl::StrCat(v1::Pattern_Name(anomaly.pattern()), ":",
                                 v1::Severity_Name(anomaly.severity())));
  }
  return absl::StrJoin(names, ",");
}

std::string FormatRunsTable(const v1::ListRunsResponse& runs, absl::Time now) {
  std::vector<std::vector<std::string>> rows = {
      {"RUN", "LAST STEP", "STATE", "ENTROPY MEAN", "GRAD NORM", "ANOMALIES", "LAST REPORT"}};
  for (const v1::RunStatus& run : runs.runs()) {
    const v1::StepSummary& latest = run.latest();
    rows.push_back({run.run_id(), absl::StrCat(run.last_step()), StateName(run.verdict()),
                    latest.token_count() > 0 ? absl::StrFormat("%.3f", latest.entropy_mean()) : "-",
                    latest.has_grad_norm() ? FormatValue(latest.grad_norm()) : "-",
                    FormatAnomalyNames(run.anomalies()),
                    run.finished() ? "finished" : LastReportAge(run, now)});
  }
  return FormatTable(rows);
}

std::string FormatRunDetails(const v1::RunStatus& run, absl::Time now) {
  std::string text;
  absl::StrAppend(&text, "run          ", run.run_id(), run.finished() ? " (finished)" : "", "\n");
  absl::StrAppend(&text, "last step    ", run.last_step(), " (last report ",
                  LastReportAge(run, now), "), world size ", run.world_size(), ", pending steps ",
                  run.pending_steps(), "\n");
  absl::StrAppend(&text, "reports      ", run.reports_accepted(), " accepted, ",
                  run.reports_rejected(), " rejected, ", run.reports_duplicate(), " duplicate, ",
                  run.reports_late(), " late\n");
  const v1::Verdict& verdict = run.verdict();
  absl::StrAppend(&text, "state        ", StateName(verdict));
  if (verdict.state() != v1::HEALTH_STATE_UNSPECIFIED) {
    absl::StrAppend(&text, " since step ", verdict.since_step());
  }
  absl::StrAppend(&text, "\n");
  if (!verdict.reason().empty()) {
    absl::StrAppend(&text, "reason       ", verdict.reason(), "\n");
  }
  if (!verdict.evidence().empty()) {
    absl::StrAppend(&text, "evidence     ", FormatEvidence(verdict.evidence()), "\n");
  }
  if (!verdict.recommended_action().empty()) {
    absl::StrAppend(&text, "action       ", verdict.recommended_action(), "\n");
  }
  if (run.has_latest()) {
    const v1::StepSummary& s = run.latest();
    absl::StrAppend(&text, "latest step  ", s.step(), " (", v1::Phase_Name(s.phase()), ", ",
                    s.ranks_reported(), "/", s.world_size(), " ranks",
                    s.complete() ? "" : ", finalized by timeout", ")\n");
    if (s.token_count() > 0) {
      absl::StrAppend(
          &text,
          absl::StrFormat("  entropy    mean %.4f  p10 %.4f  p50 %.4f  p90 %.4f nats over %d "
                          "tokens\n",
                          s.entropy_mean(), s.entropy_p10(), s.entropy_p50(), s.entropy_p90(),
                          s.token_count()),
          absl::StrFormat("             normalized %.4f  high-entropy ratio %.4f\n",
                          s.normalized_entropy_mean(), s.high_entropy_ratio()));
    }
    if (s.surprisal_count() > 0) {
      absl::StrAppend(&text, absl::StrFormat("  surprisal  mean %.4f nats over %d targets\n",
                                             s.surprisal_mean(), s.surprisal_count()));
    }
    if (s.generated_token_count() > 0) {
      absl::StrAppend(&text,
                      absl::StrFormat("  generated  entropy mean %.4f nats over %d tokens\n",
                                      s.generated_entropy_mean(), s.generated_token_count()));
    }
    std::vector<std::string> scalars;
    if (s.has_grad_norm()) {
      scalars.push_back(absl::StrCat("grad norm ", FormatValue(s.grad_norm())));
      if (s.grad_norm_disagreements() > 0) {
        absl::StrAppend(&scalars.back(), " (", s.grad_norm_disagreements(), " ranks disagreed)");
      }
    }
    if (s.has_loss()) {
      scalars.push_back(absl::StrCat("loss ", FormatValue(s.loss())));
    }
    if (s.learning_rate() != 0) {
      scalars.push_back(absl::StrCat("lr ", FormatValue(s.learning_rate())));
    }
    if (!scalars.empty()) {
      absl::StrAppend(&text, "  ", absl::StrJoin(scalars, "  "), "\n");
    }
    for (const v1::LayerSummary& layer : s.layers()) {
      absl::StrAppend(&text,
                      absl::StrFormat("  layer %-3d  attention entropy %.4f nats, head variance "
                                      "%.4g\n",
                                      layer.layer(), layer.mean_entropy(), layer.head_variance()));
    }
  }
  absl::StrAppend(&text, "anomalies    ", run.anomalies().empty() ? "none" : "", "\n");
  for (const v1::Anomaly& a : run.anomalies()) {
    absl::StrAppend(&text, "  ", v1::Pattern_Name(a.pattern()), " ",
                    v1::Severity_Name(a.severity()), " since step ", a.since_step());
    if (!a.subject().empty()) {
      absl::StrAppend(&text, " (", a.subject(), ")");
    }
    if (!a.reason().empty()) {
      absl::StrAppend(&text, ": ", a.reason());
    }
    absl::StrAppend(&text, "\n");
    if (!a.evidence().empty()) {
      absl::StrAppend(&text, "    evidence ", FormatEvidence(a.evidence()), "\n");
    }
    if (!a.recommended_action().empty()) {
      absl::StrAppend(&text, "    action   ", a.recommended_action(), "\n");
    }
  }
  return text;
}

std::string FormatAckLine(absl::string_view origin, const v1::Report& report, const v1::Ack& ack) {
  std::string line;
  if (!origin.empty()) {
    absl::StrAppend(&line, origin, ": ");
  }
  absl::StrAppend(&line, "run ", report.run_id(), " rank ", report.rank(), " step ", report.step());
  if (ack.duplicate()) {
    absl::StrAppend(&line, " (duplicate)");
  }
  if (ack.late()) {
    absl::StrAppend(&line, " (late)");
  }
  absl::StrAppend(&line, ": state ", StateName(ack.verdict()));
  if (ack.has_latest_step()) {
    const v1::StepSummary& s = ack.latest_step();
    absl::StrAppend(&line, " | step ", s.step(), " entropy_mean ",
                    s.token_count() > 0 ? absl::StrFormat("%.4f", s.entropy_mean()) : "-",
                    " grad_norm ", s.has_grad_norm() ? FormatValue(s.grad_norm()) : "-");
  } else {
    absl::StrAppend(&line, " | no finalized step yet");
  }
  absl::StrAppend(&line, " | anomalies ", FormatAnomaliesWithSeverity(ack.anomalies()));
  return line;
}

std::string CodeName(int code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.always_print_primitive_fields = true;
  std::string json;
  const auto status = google::protobuf::util::MessageToJsonString(message, &json, options);
  if (!status.ok()) {
    return absl::InternalError(absl::string_view(status.message().data(), status.message().size()));
  }
  return json;
}

}  // namespace entrowatch::cli
