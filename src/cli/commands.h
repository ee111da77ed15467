#pragma once

// The `entrowatch` command-line tool as a library: main() only forwards
// argv here, so tests run every command in-process against a fake daemon.

#include <ostream>
#include <string>
#include <vector>

namespace entrowatch::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;  // the command ran and reports a failure
inline constexpr int kExitUsage = 2;  // bad command line

// Runs `entrowatch args...` (args excludes the program name), writing
// results to `out` and diagnostics to `err`; returns the exit code. Global
// flags before the command: --addr ADDR, --help, --version. Not thread-safe
// with respect to the streams it is given.
int RunCli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace entrowatch::cli
