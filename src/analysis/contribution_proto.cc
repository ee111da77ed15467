#include "analysis/contribution_proto.h"

namespace entrowatch::analysis {

store::v1::Contribution ToProto(const ReportContribution& c) {
  store::v1::Contribution p;
  p.set_rank(c.rank);
  p.set_world_size(c.world_size);
  p.set_step(c.step);
  p.set_phase(c.phase);
  p.mutable_entropies()->Add(c.entropies.begin(), c.entropies.end());
  p.mutable_normalized()->Add(c.normalized.begin(), c.normalized.end());
  p.mutable_generated()->Reserve(static_cast<int>(c.generated.size()));
  for (bool generated : c.generated) {
    p.add_generated(generated);
  }
  p.set_top1_sum(c.top1_sum);
  p.set_top1_count(c.top1_count);
  p.set_surprisal_sum(c.surprisal_sum);
  p.set_surprisal_count(c.surprisal_count);
  for (const auto& [layer, heads] : c.layers) {
    store::v1::LayerHeads& out = (*p.mutable_layers())[layer];
    for (const HeadAccum& head : heads) {
      store::v1::HeadAccum* h = out.add_heads();
      h->set_sum(head.sum);
      h->set_count(head.count);
    }
  }
  p.set_has_grad(c.has_grad);
  p.set_grad_norm(c.grad_norm);
  p.set_has_loss(c.has_loss);
  p.set_loss(c.loss);
  p.set_learning_rate(c.learning_rate);
  p.mutable_scalars()->insert(c.scalars.begin(), c.scalars.end());
  p.mutable_max_logits()->insert(c.max_logits.begin(), c.max_logits.end());
  *p.mutable_summary() = c.summary;
  return p;
}

ReportContribution FromProto(const store::v1::Contribution& p) {
  ReportContribution c;
  c.rank = p.rank();
  c.world_size = p.world_size();
  c.step = p.step();
  c.phase = p.phase();
  c.entropies.assign(p.entropies().begin(), p.entropies().end());
  c.normalized.assign(p.normalized().begin(), p.normalized().end());
  c.generated.assign(p.generated().begin(), p.generated().end());
  c.top1_sum = p.top1_sum();
  c.top1_count = p.top1_count();
  c.surprisal_sum = p.surprisal_sum();
  c.surprisal_count = p.surprisal_count();
  for (const auto& [layer, heads] : p.layers()) {
    std::vector<HeadAccum>& out = c.layers[layer];
    for (const store::v1::HeadAccum& head : heads.heads()) {
      out.push_back({head.sum(), head.count()});
    }
  }
  c.has_grad = p.has_grad();
  c.grad_norm = p.grad_norm();
  c.has_loss = p.has_loss();
  c.loss = p.loss();
  c.learning_rate = p.learning_rate();
  for (const auto& [name, value] : p.scalars()) {
    c.scalars.emplace(name, value);
  }
  for (const auto& [layer, value] : p.max_logits()) {
    c.max_logits.emplace(layer, value);
  }
  c.summary = p.summary();
  return c;
}

}  // namespace entrowatch::analysis
