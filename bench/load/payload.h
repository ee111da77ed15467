#pragma once

// Report payloads for the load generator, serialized without copying the
// large part: the logits block is encoded once and shared by every report
// that carries it (protobuf concatenation of two encodings is their merge).

#include <grpcpp/support/byte_buffer.h>

#include <cstdint>
#include <string>
#include <vector>

namespace entrowatch::load {

struct PayloadOptions {
  int64_t logits_rows = 64;
  int64_t vocab = 152064;
  int logits_every = 10;   // one report in this many carries the logits block; 0 = never
  int token_values = 512;  // client-side token entropies in every report
  uint64_t seed = 1;
};

// Which stream a report belongs to: one (run, rank).
struct StreamIdentity {
  std::string run_id;
  uint32_t rank = 0;
  uint32_t world_size = 1;
  int index = 0;  // stream number; staggers which steps carry logits
};

// Immutable after construction; Build() is thread-safe. Buffers returned by
// Build() reference memory owned by this object, which must outlive them.
class PayloadFactory {
 public:
  explicit PayloadFactory(const PayloadOptions& options);
  PayloadFactory(const PayloadFactory&) = delete;
  PayloadFactory& operator=(const PayloadFactory&) = delete;

  // True when this stream's report for `step` carries the logits block.
  bool HasLogits(const StreamIdentity& id, uint64_t step) const;

  // The serialized Report for one step: grad norm, loss, learning rate and
  // token entropies, plus the shared logits block when with_logits (and the
  // options give one). Sets *bytes to the serialized size.
  grpc::ByteBuffer Build(const StreamIdentity& id, uint64_t step, uint64_t seq, bool with_logits,
                         int64_t* bytes) const;

  int64_t logits_bytes() const { return static_cast<int64_t>(logits_field_.size()); }

 private:
  const PayloadOptions options_;
  std::string logits_field_;  // Report field 8 (one LogitsBlock), encoded
  std::vector<float> token_entropies_;
};

}  // namespace entrowatch::load
