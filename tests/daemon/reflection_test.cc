// gRPC server reflection on the real entrowatchd: the services are listed and
// the wire API is described without the .proto (what grpcurl, grpcui, evans
// and Postman do), and grpc.reflection: false turns it off.

#include <grpcpp/grpcpp.h>

#include <memory>
#include <set>
#include <string>

#include "entrowatch/v1/entrowatch.pb.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"
#include "gtest/gtest.h"
#include "reflection_v1alpha.grpc.pb.h"
#include "testing/daemon_process.h"

namespace entrowatch::testing {
namespace {

namespace refl = ::grpc::reflection::v1alpha;
using ::testing::IsSupersetOf;

// One request/response exchange on a fresh reflection stream.
grpc::Status Ask(const std::string& address, const refl::ServerReflectionRequest& request,
                 refl::ServerReflectionResponse* response) {
  auto stub = refl::ServerReflection::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto stream = stub->ServerReflectionInfo(&context);
  if (stream->Write(request) && stream->WritesDone() && stream->Read(response)) {
    refl::ServerReflectionResponse extra;
    while (stream->Read(&extra)) {
    }
  }
  return stream->Finish();
}

TEST(ReflectionTest, ListsTheServicesAndDescribesReportLikeTheProto) {
  auto daemon = DaemonProcess::Start();
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  const std::string address = (*daemon)->grpc_address();

  refl::ServerReflectionRequest list;
  list.set_list_services("*");
  refl::ServerReflectionResponse listed;
  grpc::Status status = Ask(address, list, &listed);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_TRUE(listed.has_list_services_response()) << listed.DebugString();
  std::set<std::string> names;
  for (const auto& service : listed.list_services_response().service()) {
    names.insert(service.name());
  }
  EXPECT_THAT(names, IsSupersetOf({"entrowatch.v1.Monitor", "grpc.health.v1.Health",
                                   "grpc.reflection.v1alpha.ServerReflection"}));

  refl::ServerReflectionRequest describe;
  describe.set_file_containing_symbol("entrowatch.v1.Report");
  refl::ServerReflectionResponse described;
  status = Ask(address, describe, &described);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_TRUE(described.has_file_descriptor_response()) << described.DebugString();

  // The served files (entrowatch.proto and its imports) build a pool in
  // which Report and Monitor match what the daemon was compiled from.
  google::protobuf::DescriptorPool pool;
  std::map<std::string, google::protobuf::FileDescriptorProto> files;
  for (const std::string& bytes : described.file_descriptor_response().file_descriptor_proto()) {
    google::protobuf::FileDescriptorProto file;
    ASSERT_TRUE(file.ParseFromString(bytes));
    files[file.name()] = file;
  }
  ASSERT_TRUE(files.count("entrowatch/v1/entrowatch.proto")) << described.DebugString();
  // Dependencies first; the imports are well-known types without imports of their own.
  for (const auto& [name, file] : files) {
    if (name != "entrowatch/v1/entrowatch.proto") {
      ASSERT_NE(pool.BuildFile(file), nullptr) << name;
    }
  }
  ASSERT_NE(pool.BuildFile(files["entrowatch/v1/entrowatch.proto"]), nullptr);

  const google::protobuf::Descriptor* served = pool.FindMessageTypeByName("entrowatch.v1.Report");
  ASSERT_NE(served, nullptr);
  const google::protobuf::Descriptor* compiled = entrowatch::v1::Report::descriptor();
  ASSERT_EQ(served->field_count(), compiled->field_count());
  for (int i = 0; i < compiled->field_count(); ++i) {
    const google::protobuf::FieldDescriptor* field =
        served->FindFieldByName(compiled->field(i)->name());
    ASSERT_NE(field, nullptr) << compiled->field(i)->name();
    EXPECT_EQ(field->number(), compiled->field(i)->number()) << field->name();
    EXPECT_EQ(field->type(), compiled->field(i)->type()) << field->name();
  }
  const google::protobuf::ServiceDescriptor* monitor =
      pool.FindServiceByName("entrowatch.v1.Monitor");
  ASSERT_NE(monitor, nullptr);
  for (const char* method : {"Stream", "Submit", "GetRun", "ListRuns", "EndRun", "EndIncident"}) {
    EXPECT_NE(monitor->FindMethodByName(method), nullptr) << method;
  }

  // An unknown symbol is a reflection error, not a broken stream.
  refl::ServerReflectionRequest unknown;
  unknown.set_file_containing_symbol("entrowatch.v1.NoSuchMessage");
  refl::ServerReflectionResponse answer;
  status = Ask(address, unknown, &answer);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(answer.error_response().error_code(), grpc::StatusCode::NOT_FOUND)
      << answer.DebugString();
}

TEST(ReflectionTest, OffByConfigTheServiceIsUnimplemented) {
  auto daemon = DaemonProcess::Start("grpc: {listen: \"127.0.0.1:0\", reflection: false}\n");
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  refl::ServerReflectionRequest list;
  list.set_list_services("*");
  refl::ServerReflectionResponse listed;
  const grpc::Status status = Ask((*daemon)->grpc_address(), list, &listed);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNIMPLEMENTED) << status.error_message();
}

}  // namespace
}  // namespace entrowatch::testing
