#include "common/command_line.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace entrowatch::common {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

CommandSpec Spec() {
  return {"replay",
          "entrowatch replay FILE [flags]",
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
  auto b = ParseArgs(Spec(), {"-", "--rate", "3"});
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_THAT(b->positional(), ElementsAre("-"));
  EXPECT_EQ(b->GetString("rate", ""), "3");
}

TEST(ParseArgsTest, FlagsCanEndAtTheFirstPositional) {
  CommandSpec spec = Spec();
  spec.name = "entrowatch";
  spec.max_positional = 10;
  spec.flags_end_at_positional = true;
  auto a = ParseArgs(spec, {"--rate", "2", "status", "--rate", "3", "--bogus"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->GetString("rate", ""), "2");
  EXPECT_THAT(a->positional(), ElementsAre("status", "--rate", "3", "--bogus"));
  auto b = ParseArgs(spec, {"--bogus", "status"});
  ASSERT_FALSE(b.ok());
  EXPECT_THAT(b.status().message(), HasSubstr("unknown flag --bogus for 'entrowatch'"));
}

TEST(ParseArgsTest, RejectsBadCommandLines) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"t", "--bogus"}, "unknown flag --bogus for 'replay'"},
      {{"t", "--bogus=1"}, "unknown flag --bogus for 'replay'"},
      {{"t", "-x"}, "unknown flag -x for 'replay'"},
      {{"t", "--rate"}, "--rate needs a value (N)"},
      {{"t", "--print-verdicts=yes"}, "--print-verdicts takes no value"},
      {{"t", "--rate", "1", "--rate", "2"}, "--rate given twice"},
      {{"t", "--print-verdicts", "--print-verdicts"}, "--print-verdicts given twice"},
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

TEST(ParseArgsTest, ErrorsNameTheFlagNotOneContainingIt) {
  CommandSpec spec = Spec();
  spec.flags = {{"timeout", "SECONDS", "RPC deadline"},
                {"connect-timeout", "SECONDS", "connection deadline"}};
  auto a = ParseArgs(spec, {"t", "--timeout", "3", "--connect-timeout"});
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().message(), "--connect-timeout needs a value (SECONDS)");
  auto b = ParseArgs(spec, {"t", "--connect-timeout", "3", "--timeout"});
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().message(), "--timeout needs a value (SECONDS)");
}

TEST(ParseArgsTest, HelpSkipsThePositionalCheck) {
  for (const char* help : {"--help", "-h"}) {
    auto a = ParseArgs(Spec(), {help});
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_TRUE(a->help());
  }
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

TEST(ParseArgsTest, PositionalIntegersAreRangeChecked) {
  CommandSpec spec = Spec();
  spec.max_positional = 2;
  auto a = ParseArgs(spec, {"12", "x"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(*a->PositionalInt(0, "ROWS", 1, 100), 12);
  EXPECT_THAT(a->PositionalInt(0, "ROWS", 1, 10).status().message(),
              HasSubstr("ROWS: expected an integer in [1, 10], got \"12\""));
  EXPECT_FALSE(a->PositionalInt(1, "VOCAB", 1, 100).ok());
}

TEST(FormatHelpTest, ListsEveryFlagAndHelp) {
  const std::string help = FormatHelp(Spec());
  EXPECT_THAT(help, HasSubstr("usage: entrowatch replay FILE [flags]"));
  EXPECT_THAT(help, HasSubstr("Stream a trace."));
  EXPECT_THAT(help, HasSubstr("--rate N"));
  EXPECT_THAT(help, HasSubstr("--print-verdicts"));
  EXPECT_THAT(help, HasSubstr("--help"));
}

}  // namespace
}  // namespace entrowatch::common
