#include "store/legacy_contribution.h"

#include <cstdint>
#include <cstring>
#include <string>

namespace entrowatch::store {
namespace {

// Reads the record front to back; every read fails once one did.
class Reader {
 public:
  explicit Reader(absl::string_view in) : in_(in) {}

  template <typename T>
  T Get() {
    T v{};
    if (!ok_ || in_.size() < sizeof(T)) {
      ok_ = false;
      return v;
    }
    std::memcpy(&v, in_.data(), sizeof(T));
    in_.remove_prefix(sizeof(T));
    return v;
  }
  // A length-prefixed array of fixed-size elements; the count of elements.
  uint64_t Count(size_t element_size) {
    const uint64_t n = Get<uint64_t>();
    if (ok_ && n > in_.size() / element_size) {
      ok_ = false;
    }
    return ok_ ? n : 0;
  }
  std::string Bytes() {
    const uint64_t n = Count(1);
    std::string out(in_.substr(0, n));
    in_.remove_prefix(n);
    return out;
  }
  bool ok() const { return ok_; }
  bool done() const { return ok_ && in_.empty(); }

 private:
  absl::string_view in_;
  bool ok_ = true;
};

}  // namespace

absl::StatusOr<v1::Contribution> DecodeLegacyContribution(absl::string_view bytes) {
  v1::Contribution c;
  Reader r(bytes);
  c.set_rank(r.Get<uint32_t>());
  c.set_world_size(r.Get<uint32_t>());
  c.set_step(r.Get<uint64_t>());
  c.set_phase(static_cast<entrowatch::v1::Phase>(r.Get<int32_t>()));
  for (uint64_t i = 0, n = r.Count(sizeof(float)); i < n; ++i) {
    c.add_entropies(r.Get<float>());
  }
  for (uint64_t i = 0, n = r.Count(sizeof(float)); i < n; ++i) {
    c.add_normalized(r.Get<float>());
  }
  for (uint64_t i = 0, n = r.Count(sizeof(uint8_t)); i < n; ++i) {
    c.add_generated(r.Get<uint8_t>() != 0);
  }
  c.set_top1_sum(r.Get<double>());
  c.set_top1_count(r.Get<int64_t>());
  c.set_surprisal_sum(r.Get<double>());
  c.set_surprisal_count(r.Get<int64_t>());
  for (uint64_t i = 0, layers = r.Get<uint64_t>(); r.ok() && i < layers; ++i) {
    v1::LayerHeads& heads = (*c.mutable_layers())[r.Get<uint32_t>()];
    for (uint64_t h = 0, n = r.Count(sizeof(double) + sizeof(int64_t)); h < n; ++h) {
      v1::HeadAccum* head = heads.add_heads();
      head->set_sum(r.Get<double>());
      head->set_count(r.Get<int64_t>());
    }
  }
  c.set_has_grad(r.Get<uint8_t>() != 0);
  c.set_grad_norm(r.Get<double>());
  c.set_has_loss(r.Get<uint8_t>() != 0);
  c.set_loss(r.Get<double>());
  c.set_learning_rate(r.Get<double>());
  // Named scalars and max attention logits: a trailing section that the
  // oldest records do not have.
  if (r.ok() && !r.done()) {
    for (uint64_t i = 0, n = r.Get<uint64_t>(); r.ok() && i < n; ++i) {
      std::string name = r.Bytes();
      (*c.mutable_scalars())[name] = r.Get<double>();
    }
    for (uint64_t i = 0, n = r.Get<uint64_t>(); r.ok() && i < n; ++i) {
      const uint32_t layer = r.Get<uint32_t>();
      (*c.mutable_max_logits())[layer] = r.Get<double>();
    }
  }
  if (!r.done() || c.normalized_size() != c.entropies_size() ||
      c.generated_size() != c.entropies_size()) {
    return absl::DataLossError("not a version 1 contribution record");
  }
  return c;
}

}  // namespace entrowatch::store
