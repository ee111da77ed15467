#include "payload.h"

#include <grpcpp/support/slice.h>

#include <cmath>
#include <random>

#include "common/half.h"
#include "entrowatch/v1/entrowatch.pb.h"

namespace entrowatch::load {

PayloadFactory::PayloadFactory(const PayloadOptions& options) : options_(options) {
  std::mt19937_64 rng(options.seed);
  // Entropies spread over [0, log V], like a model midway through training.
  std::uniform_real_distribution<float> entropy(0.0f, std::log(static_cast<float>(options.vocab)));
  token_entropies_.resize(static_cast<size_t>(options.token_values));
  for (float& h : token_entropies_) {
    h = entropy(rng);
  }
  if (options.logits_every <= 0 || options.logits_rows <= 0) {
    return;
  }
  entrowatch::v1::Report holder;
  entrowatch::v1::LogitsBlock* block = holder.add_logits();
  entrowatch::v1::Tensor* tensor = block->mutable_logits();
  tensor->set_dtype(entrowatch::v1::BFLOAT16);
  tensor->add_shape(static_cast<uint64_t>(options.logits_rows));
  tensor->add_shape(static_cast<uint64_t>(options.vocab));
  block->set_valid_vocab(static_cast<uint32_t>(options.vocab));
  std::string* data = tensor->mutable_data();
  data->resize(static_cast<size_t>(options.logits_rows * options.vocab) * sizeof(uint16_t));
  std::normal_distribution<float> logit(0.0f, 3.0f);
  for (size_t i = 0; i < data->size() / sizeof(uint16_t); ++i) {
    const uint16_t bits = common::FloatToBFloat16(logit(rng));
    (*data)[2 * i] = static_cast<char>(bits & 0xff);
    (*data)[2 * i + 1] = static_cast<char>(bits >> 8);
  }
  logits_field_ = holder.SerializeAsString();
}

bool PayloadFactory::HasLogits(const StreamIdentity& id, uint64_t step) const {
  if (logits_field_.empty()) {
    return false;
  }
  // Staggered so that streams do not all send their logits on the same step.
  const uint64_t every = static_cast<uint64_t>(options_.logits_every);
  return (step + static_cast<uint64_t>(id.index)) % every == 0;
}

grpc::ByteBuffer PayloadFactory::Build(const StreamIdentity& id, uint64_t step, uint64_t seq,
                                       bool with_logits, int64_t* bytes) const {
  entrowatch::v1::Report report;
  report.set_run_id(id.run_id);
  report.set_rank(id.rank);
  report.set_world_size(id.world_size);
  report.set_step(step);
  report.set_seq(seq);
  report.set_phase(entrowatch::v1::TRAIN);
  report.mutable_grad()->set_global_norm(1.0 + 0.01 * static_cast<double>(step % 7));
  report.mutable_scalars()->set_loss(2.5 - 0.001 * static_cast<double>(step % 100));
  report.mutable_scalars()->set_learning_rate(3e-4);
  if (!token_entropies_.empty()) {
    entrowatch::v1::TokenEntropies* values = report.add_token_entropies();
    values->mutable_values()->Add(token_entropies_.begin(), token_entropies_.end());
    values->set_vocab_size(static_cast<uint32_t>(options_.vocab));
  }
  grpc::Slice slices[2] = {grpc::Slice(report.SerializeAsString()), grpc::Slice()};
  size_t count = 1;
  if (with_logits && !logits_field_.empty()) {
    slices[1] = grpc::Slice(logits_field_.data(), logits_field_.size(), grpc::Slice::STATIC_SLICE);
    count = 2;
  }
  *bytes = static_cast<int64_t>(slices[0].size() + (count == 2 ? slices[1].size() : 0));
  return grpc::ByteBuffer(slices, count);
}

}  // namespace entrowatch::load
