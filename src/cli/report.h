#pragma once

// `entrowatch report RUN --out FILE.html`: one self-contained HTML file with
// the console's page of a run (charts, states, anomalies), for an incident
// ticket or a pull request. The run's data comes from the console's JSON API
// on entrowatchd's HTTP listener; the charting library is inlined from where
// it is installed.

#include <ostream>
#include <string>

#include "common/command_line.h"

namespace entrowatch::cli {

common::CommandSpec ReportSpec();

int RunReportCommand(const common::ParsedArgs& args, const std::string& addr, std::ostream& out,
                     std::ostream& err);

}  // namespace entrowatch::cli
