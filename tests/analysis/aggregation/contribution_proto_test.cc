#include "analysis/contribution_proto.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "gtest/gtest.h"

namespace entrowatch::analysis {
namespace {

// Every field away from its default, so a field the conversion drops shows.
ReportContribution Full() {
  ReportContribution c;
  c.rank = 3;
  c.world_size = 8;
  c.step = (uint64_t{1} << 40) + 7;
  c.phase = entrowatch::v1::ROLLOUT;
  c.entropies = {0.5f, 7.25f, 0.0f};
  c.normalized = {0.05f, 0.9f, 0.0f};
  c.generated = {true, false, true};
  c.top1_sum = 1.75;
  c.top1_count = 3;
  c.surprisal_sum = 9.5;
  c.surprisal_count = 2;
  c.layers[0] = {{2.5, 4}, {1.25, 4}};
  c.layers[17] = {{0.125, 1}};
  c.has_grad = true;
  c.grad_norm = 12.5;
  c.has_loss = true;
  c.loss = std::numeric_limits<double>::quiet_NaN();
  c.learning_rate = 3e-4;
  c.scalars = {{"reward", -1.5}, {"kl", 0.0625}};
  c.max_logits = {{0, 31.0}, {17, -2.0}};
  entrowatch::v1::EntropySummary* e = c.summary.add_entropy();
  e->set_vocab_size(32000);
  e->set_count(5);
  e->set_sum(6.5);
  c.summary.add_ranks()->set_rank(3);
  return c;
}

void ExpectEqual(const ReportContribution& a, const ReportContribution& b) {
  EXPECT_EQ(a.rank, b.rank);
  EXPECT_EQ(a.world_size, b.world_size);
  EXPECT_EQ(a.step, b.step);
  EXPECT_EQ(a.phase, b.phase);
  EXPECT_EQ(a.entropies, b.entropies);
  EXPECT_EQ(a.normalized, b.normalized);
  EXPECT_EQ(a.generated, b.generated);
  EXPECT_EQ(a.top1_sum, b.top1_sum);
  EXPECT_EQ(a.top1_count, b.top1_count);
  EXPECT_EQ(a.surprisal_sum, b.surprisal_sum);
  EXPECT_EQ(a.surprisal_count, b.surprisal_count);
  ASSERT_EQ(a.layers.size(), b.layers.size());
  for (const auto& [layer, heads] : a.layers) {
    ASSERT_EQ(b.layers.count(layer), 1u) << "layer " << layer;
    const std::vector<HeadAccum>& other = b.layers.at(layer);
    ASSERT_EQ(heads.size(), other.size()) << "layer " << layer;
    for (size_t h = 0; h < heads.size(); ++h) {
      EXPECT_EQ(heads[h].sum, other[h].sum) << "layer " << layer << " head " << h;
      EXPECT_EQ(heads[h].count, other[h].count) << "layer " << layer << " head " << h;
    }
  }
  EXPECT_EQ(a.has_grad, b.has_grad);
  EXPECT_EQ(a.grad_norm, b.grad_norm);
  EXPECT_EQ(a.has_loss, b.has_loss);
  EXPECT_EQ(std::isnan(a.loss), std::isnan(b.loss));
  if (!std::isnan(a.loss)) {
    EXPECT_EQ(a.loss, b.loss);
  }
  EXPECT_EQ(a.learning_rate, b.learning_rate);
  EXPECT_EQ(a.scalars, b.scalars);
  EXPECT_EQ(a.max_logits, b.max_logits);
  EXPECT_EQ(a.summary.SerializeAsString(), b.summary.SerializeAsString());
}

TEST(ContributionProtoTest, RoundTripsEveryFieldThroughTheWireFormat) {
  const ReportContribution original = Full();
  store::v1::Contribution parsed;
  ASSERT_TRUE(parsed.ParseFromString(ToProto(original).SerializeAsString()));
  ExpectEqual(original, FromProto(parsed));
}

TEST(ContributionProtoTest, SetsEveryFieldOfTheMessage) {
  // A field added to the message but not to ToProto stays at its default.
  const store::v1::Contribution p = ToProto(Full());
  const google::protobuf::Descriptor* d = p.GetDescriptor();
  const google::protobuf::Reflection* r = p.GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const google::protobuf::FieldDescriptor* f = d->field(i);
    if (f->is_repeated()) {
      EXPECT_GT(r->FieldSize(p, f), 0) << f->name();
    } else {
      EXPECT_TRUE(r->HasField(p, f)) << f->name();
    }
  }
}

TEST(ContributionProtoTest, DefaultsRoundTrip) {
  ExpectEqual(ReportContribution(), FromProto(ToProto(ReportContribution())));
}

}  // namespace
}  // namespace entrowatch::analysis
