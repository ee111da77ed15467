#pragma once

// Small builders for Reports in tests.

#include <cstring>
#include <string>
#include <vector>

#include "common/half.h"
#include "entrowatch/v1/entrowatch.pb.h"

namespace entrowatch::testing {

inline v1::Report MakeReport(const std::string& run, uint64_t step, uint64_t seq, uint32_t rank = 0,
                             uint32_t world_size = 1) {
  v1::Report r;
  r.set_run_id(run);
  r.set_step(step);
  r.set_seq(seq);
  r.set_rank(rank);
  r.set_world_size(world_size);
  return r;
}

inline void SetTensor(v1::Tensor* t, v1::DType dtype, const std::vector<uint64_t>& shape,
                      const std::vector<float>& values) {
  t->set_dtype(dtype);
  t->clear_shape();
  for (uint64_t d : shape) {
    t->add_shape(d);
  }
  std::string data;
  for (float v : values) {
    if (dtype == v1::FLOAT32) {
      data.append(reinterpret_cast<const char*>(&v), 4);
    } else {
      const uint16_t h = dtype == v1::FLOAT16 ? common::FloatToHalf(v) : common::FloatToBFloat16(v);
      data.append(reinterpret_cast<const char*>(&h), 2);
    }
  }
  t->set_data(data);
}

inline v1::LogitsBlock* AddLogits(v1::Report* r, uint64_t rows, uint64_t vocab,
                                  const std::vector<float>& values, v1::DType dtype = v1::FLOAT32) {
  v1::LogitsBlock* b = r->add_logits();
  SetTensor(b->mutable_logits(), dtype, {rows, vocab}, values);
  return b;
}

inline v1::TokenEntropies* AddEntropies(v1::Report* r, const std::vector<float>& values,
                                        uint32_t vocab) {
  v1::TokenEntropies* b = r->add_token_entropies();
  for (float v : values) {
    b->add_values(v);
  }
  b->set_vocab_size(vocab);
  return b;
}

}  // namespace entrowatch::testing
