// Security of the real entrowatchd: bearer tokens per run glob, TLS, mutual
// TLS and basic auth on /metrics, with certificates made by openssl here.

#include <grpcpp/grpcpp.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "daemon/report_builder.h"
#include "entrowatch/v1/entrowatch.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/daemon_process.h"

namespace entrowatch::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A CA, a server certificate for 127.0.0.1 and a client certificate, in dir.
void MakeCertificates(const std::string& dir) {
  const std::string cmd = absl::StrCat(
      "set -e; cd '", dir, "';",
      "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 "
      "-subj /CN=entrowatch-test-ca;",
      "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1;",
      "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost' > san.ext;",
      "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem "
      "-days 1 -extfile san.ext;",
      "openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj /CN=trainer;",
      "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem "
      "-days 1;",
      "openssl req -x509 -newkey rsa:2048 -nodes -keyout rogue.key -out rogue.pem -days 1 "
      "-subj /CN=rogue");
  CommandResult r = RunCommand(cmd);
  ASSERT_EQ(r.exit_code, 0) << r.output;
}

class SecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/entrowatch-certs-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { RunCommand("rm -rf '" + dir_ + "'"); }

  std::string Path(const std::string& name) const { return dir_ + "/" + name; }
  void Write(const std::string& name, const std::string& content) {
    std::ofstream(Path(name)) << content;
  }

  std::unique_ptr<v1::Monitor::Stub> Stub(const std::string& address,
                                          std::shared_ptr<grpc::ChannelCredentials> creds) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    return v1::Monitor::NewStub(grpc::CreateCustomChannel(address, creds, args));
  }

  std::string dir_;
};

grpc::Status Submit(v1::Monitor::Stub& stub, const v1::Report& r, const std::string& token) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  if (!token.empty()) {
    ctx.AddMetadata("authorization", "Bearer " + token);
  }
  v1::Ack ack;
  return stub.Submit(&ctx, r, &ack);
}

TEST_F(SecurityTest, TokensAuthenticateAndLimitRunsPerGlob) {
  Write("team-a.token", "secret-token-a\n");
  Write("team-b.token", "secret-token-b\n");
  auto daemon = DaemonProcess::Start(absl::StrCat(
      "security:\n  tokens:\n", "    - {name: team-a, token_file: ", Path("team-a.token"),
      ", runs: [\"a-*\"]}\n", "    - {name: team-b, token_file: ", Path("team-b.token"),
      ", runs: [\"b-*\", \"shared\"]}\n"));
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  auto stub = Stub((*daemon)->grpc_address(), grpc::InsecureChannelCredentials());

  grpc::Status s = Submit(*stub, MakeReport("a-1", 1, 1), "");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(s.error_message(), HasSubstr("authorization"));
  EXPECT_EQ(Submit(*stub, MakeReport("a-1", 1, 1), "wrong").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(Submit(*stub, MakeReport("a-1", 1, 1), "secret-token-a").ok());
  s = Submit(*stub, MakeReport("b-1", 1, 1), "secret-token-a");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(), HasSubstr("token 'team-a' may not access run 'b-1'"));
  EXPECT_TRUE(Submit(*stub, MakeReport("b-1", 1, 1), "secret-token-b").ok());

  // Reads follow the same grants.
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer secret-token-a");
    v1::GetRunRequest req;
    req.set_run_id("b-1");
    v1::RunStatus status;
    EXPECT_EQ(stub->GetRun(&ctx, req, &status).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer secret-token-a");
    v1::ListRunsResponse runs;
    ASSERT_TRUE(stub->ListRuns(&ctx, v1::ListRunsRequest(), &runs).ok());
    ASSERT_EQ(runs.runs_size(), 1);
    EXPECT_EQ(runs.runs(0).run_id(), "a-1");
  }
  // On a stream, a report for a run the token may not write gets its own Ack.
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer secret-token-a");
    auto stream = stub->Stream(&ctx);
    ASSERT_TRUE(stream->Write(MakeReport("b-2", 1, 1)));
    ASSERT_TRUE(stream->Write(MakeReport("a-2", 1, 1)));
    stream->WritesDone();
    std::vector<int> codes;
    v1::Ack ack;
    while (stream->Read(&ack)) {
      codes.push_back(ack.code());
      if (ack.code() != 0) {
        EXPECT_THAT(ack.message(), HasSubstr("may not access run 'b-2'"));
      }
    }
    EXPECT_TRUE(stream->Finish().ok());
    std::sort(codes.begin(), codes.end());
    EXPECT_THAT(codes,
                ::testing::ElementsAre(0, static_cast<int>(grpc::StatusCode::PERMISSION_DENIED)));
  }
  // A stream without a token is refused as a whole.
  {
    grpc::ClientContext ctx;
    auto stream = stub->Stream(&ctx);
    stream->Write(MakeReport("a-3", 1, 1));
    stream->WritesDone();
    v1::Ack ack;
    while (stream->Read(&ack)) {
    }
    EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  EXPECT_THAT((*daemon)->Log(), Not(HasSubstr("secret-token")));
}

TEST_F(SecurityTest, MissingTokenFileFailsStartNamingTheFile) {
  auto daemon = DaemonProcess::Start(absl::StrCat(
      "security:\n  tokens:\n    - {name: x, token_file: ", Path("absent"), ", runs: [\"*\"]}\n"));
  ASSERT_FALSE(daemon.ok());
  EXPECT_THAT(std::string(daemon.status().message()), HasSubstr(Path("absent")));
}

TEST_F(SecurityTest, TlsServesOnlyTlsClients) {
  MakeCertificates(dir_);
  auto daemon =
      DaemonProcess::Start(absl::StrCat("security:\n  tls: {cert_file: ", Path("server.pem"),
                                        ", key_file: ", Path("server.key"), "}\n"));
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = Read(Path("ca.pem"));
  auto secure = Stub((*daemon)->grpc_address(), grpc::SslCredentials(tls));
  EXPECT_TRUE(Submit(*secure, MakeReport("tls-run", 1, 1), "").ok());
  auto plain = Stub((*daemon)->grpc_address(), grpc::InsecureChannelCredentials());
  EXPECT_EQ(Submit(*plain, MakeReport("tls-run", 2, 2), "").error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(SecurityTest, MutualTlsRefusesClientsWithoutAValidCertificate) {
  MakeCertificates(dir_);
  auto daemon = DaemonProcess::Start(absl::StrCat(
      "security:\n  tls: {cert_file: ", Path("server.pem"), ", key_file: ", Path("server.key"),
      ", client_ca_file: ", Path("ca.pem"), "}\n"));
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  grpc::SslCredentialsOptions with_cert;
  with_cert.pem_root_certs = Read(Path("ca.pem"));
  with_cert.pem_cert_chain = Read(Path("client.pem"));
  with_cert.pem_private_key = Read(Path("client.key"));
  auto good = Stub((*daemon)->grpc_address(), grpc::SslCredentials(with_cert));
  EXPECT_TRUE(Submit(*good, MakeReport("mtls-run", 1, 1), "").ok());

  grpc::SslCredentialsOptions no_cert;
  no_cert.pem_root_certs = Read(Path("ca.pem"));
  auto anonymous = Stub((*daemon)->grpc_address(), grpc::SslCredentials(no_cert));
  EXPECT_EQ(Submit(*anonymous, MakeReport("mtls-run", 2, 2), "").error_code(),
            grpc::StatusCode::UNAVAILABLE);

  grpc::SslCredentialsOptions rogue = with_cert;
  rogue.pem_cert_chain = Read(Path("rogue.pem"));
  rogue.pem_private_key = Read(Path("rogue.key"));
  auto impostor = Stub((*daemon)->grpc_address(), grpc::SslCredentials(rogue));
  EXPECT_EQ(Submit(*impostor, MakeReport("mtls-run", 3, 3), "").error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(SecurityTest, CliTakesTheSameCredentials) {
  MakeCertificates(dir_);
  Write("ops.token", "ops-secret\n");
  auto daemon = DaemonProcess::Start(absl::StrCat(
      "security:\n  tls: {cert_file: ", Path("server.pem"), ", key_file: ", Path("server.key"),
      ", client_ca_file: ", Path("ca.pem"),
      "}\n  tokens:\n    - {name: ops, token_file: ", Path("ops.token"), ", runs: [\"cli-*\"]}\n"));
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  Write("trace.jsonl",
        "{\"runId\": \"cli-run\", \"step\": \"1\", \"seq\": \"1\", "
        "\"tokenEntropies\": [{\"values\": [1.0], \"vocabSize\": 10}]}\n"
        "{\"runId\": \"other-run\", \"step\": \"1\", \"seq\": \"1\"}\n");
  const std::string cli = absl::StrCat(ENTROWATCH_CLI_PATH, " --addr ", (*daemon)->grpc_address(),
                                       " --tls-ca ", Path("ca.pem"), " --tls-cert ",
                                       Path("client.pem"), " --tls-key ", Path("client.key"));
  CommandResult replay = RunCommand(
      absl::StrCat(cli, " --token-file ", Path("ops.token"), " replay ", Path("trace.jsonl")));
  EXPECT_EQ(replay.exit_code, 1) << replay.output;  // line 2 is another team's run
  EXPECT_THAT(replay.output, HasSubstr("may not access run 'other-run'"));
  CommandResult status =
      RunCommand(absl::StrCat(cli, " --token-file ", Path("ops.token"), " status"));
  EXPECT_EQ(status.exit_code, 0) << status.output;
  EXPECT_THAT(status.output, HasSubstr("cli-run"));
  CommandResult anonymous = RunCommand(absl::StrCat(cli, " status"));
  EXPECT_EQ(anonymous.exit_code, 1);
  EXPECT_THAT(anonymous.output, HasSubstr("UNAUTHENTICATED"));
}

TEST_F(SecurityTest, MetricsBasicAuth) {
  Write("metrics.auth", "prometheus:scrape-secret\n");
  auto daemon = DaemonProcess::Start(
      absl::StrCat("security: {metrics_basic_auth_file: ", Path("metrics.auth"), "}\n"));
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  auto anonymous = HttpGet((*daemon)->metrics_address(), "/metrics", "", true);
  ASSERT_TRUE(anonymous.ok());
  EXPECT_THAT(*anonymous, HasSubstr(" 401 "));
  // base64("prometheus:scrape-secret")
  auto authorized = HttpGet((*daemon)->metrics_address(), "/metrics",
                            "Authorization: Basic cHJvbWV0aGV1czpzY3JhcGUtc2VjcmV0\r\n", true);
  ASSERT_TRUE(authorized.ok());
  EXPECT_THAT(*authorized, HasSubstr(" 200 "));
  EXPECT_THAT(*authorized, HasSubstr("entrowatch_build_info"));
}

}  // namespace
}  // namespace entrowatch::testing
