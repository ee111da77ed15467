#include "cli/args.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace entrowatch::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

CommandSpec Spec() {
  return {"replay",
          "replay FILE [flags]",
          "Stream a trace.",
          {{"rate", "N", "reports per second"}, {"print-verdicts", "", "print verdicts"}},
          1,
          1,
          ""};
}

TEST(ParseArgsTest, AcceptsSpaceAndEqualsForms) {
  auto a = ParseArgs(Spec(), {"trace.jsonl", "--rate", "5"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_THAT(a->positional(), ElementsAre("trace.jsonl"));
  EXPECT_EQ(*a->GetDouble("rate", 0, 0, 100), 5.0);
  EXPECT_FALSE(a->Has("print-verdicts"));

  auto b = ParseArgs(Spec(), {"--rate=2.5", "--print-verdicts", "t.jsonl"});
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(*b->GetDouble("rate", 0, 0, 100), 2.5);
  EXPECT_TRUE(b->Has("print-verdicts"));
  EXPECT_EQ(b->GetString("rate", ""), "2.5");
  EXPECT_EQ(b->GetString("missing", "fallback"), "fallback");
}

TEST(ParseArgsTest, DoubleDashEndsFlags) {
  auto a = ParseArgs(Spec(), {"--", "--odd-name.jsonl"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_THAT(a->positional(), ElementsAre("--odd-name.jsonl"));
}

TEST(ParseArgsTest, RejectsBadCommandLines) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"t", "--bogus"}, "unknown flag --bogus for 'replay'"},
      {{"t", "--rate"}, "--rate needs a value (N)"},
      {{"t", "--print-verdicts=yes"}, "--print-verdicts takes no value"},
      {{"t", "--rate", "1", "--rate", "2"}, "--rate given twice"},
      {{}, "missing argument; usage: entrowatch replay FILE [flags]"},
      {{"a", "b"}, "unexpected argument \"b\""},
  };
  for (const Case& c : cases) {
    auto parsed = ParseArgs(Spec(), c.args);
    ASSERT_FALSE(parsed.ok()) << c.message;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(parsed.status().message(), HasSubstr(c.message));
  }
}

TEST(ParseArgsTest, HelpSkipsThePositionalCheck) {
  auto a = ParseArgs(Spec(), {"--help"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE(a->help());
}

TEST(ParseArgsTest, NumbersAreRangeChecked) {
  auto a = ParseArgs(Spec(), {"t", "--rate", "-1"});
  ASSERT_TRUE(a.ok());
  EXPECT_THAT(a->GetDouble("rate", 0, 0, 100).status().message(),
              HasSubstr("--rate: expected a number in [0, 100], got \"-1\""));
  auto b = ParseArgs(Spec(), {"t", "--rate", "3x"});
  ASSERT_TRUE(b.ok());
  EXPECT_FALSE(b->GetInt("rate", 0, 0, 100).ok());
  EXPECT_FALSE(b->GetDouble("rate", 0, 0, 100).ok());
  auto c = ParseArgs(Spec(), {"t", "--rate", "nan"});
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->GetDouble("rate", 0, 0, 100).ok());
  EXPECT_EQ(*a->GetInt("missing", 7, 0, 10), 7);
}

TEST(FormatHelpTest, ListsEveryFlagAndHelp) {
  const std::string help = FormatHelp(Spec());
  EXPECT_THAT(help, HasSubstr("usage: entrowatch replay FILE [flags]"));
  EXPECT_THAT(help, HasSubstr("--rate N"));
  EXPECT_THAT(help, HasSubstr("--print-verdicts"));
  EXPECT_THAT(help, HasSubstr("--help"));
}

}  // namespace
}  // namespace entrowatch::cli
