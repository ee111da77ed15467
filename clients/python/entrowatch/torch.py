"""PyTorch integration: forward hooks that feed a Monitor, and grad norms.

    watch = entrowatch.torch.watch(model, monitor, lm_head=model.head,
                                   attention_modules=[b.attn for b in model.blocks], every=10)
    for step, batch in enumerate(loader):
        watch.step = step          # optional: by default training forwards are counted
        loss = loss_fn(model(batch))
        loss.backward()
        watch.log_grad_norm()      # after backward, before zero_grad
        optimizer.step(); optimizer.zero_grad()

Hooks only log on training-mode forwards of every N-th step, and do all their
work on the tensors' device (row sampling, Q/K projections of one sequence);
host copies happen in the Monitor's sender thread. Under DDP, give each rank
its own Monitor (rank and world size come from torch.distributed) and watch
the DDP-wrapped model or its .module alike.
"""

import re

import torch
import torch.nn.functional as F

from entrowatch import _arrays

_NUMERIC = re.compile(r"^\d+$")


def _layer_key(name):
    parts = name.split(".")
    if parts[0] == "module":  # DistributedDataParallel / DataParallel wrapper
        parts = parts[1:]
    for i, part in enumerate(parts):
        if _NUMERIC.match(part):
            return ".".join(parts[:i + 1])
    return ".".join(parts[:-1]) or parts[0]


@torch.no_grad()
def grad_norms(model, per_layer=False):
    """(global L2 norm, layer names, per-layer norms) of model's gradients.

    The norms are device tensors (no synchronization); names and per-layer
    norms are None unless per_layer. Returns (None, None, None) when no
    parameter has a gradient.
    """
    named = [(n, p.grad) for n, p in model.named_parameters() if p.grad is not None]
    if not named:
        return None, None, None
    device = named[0][1].device
    squares = torch.stack([
        torch.linalg.vector_norm(g.coalesce().values() if g.is_sparse else g,
                                 dtype=torch.float32).to(device) for _, g in named]).square()
    total = squares.sum().sqrt()
    if not per_layer:
        return total, None, None
    names = []
    index = {}
    group = []
    for n, _ in named:
        key = _layer_key(n)
        if key not in index:
            index[key] = len(names)
            names.append(key)
        group.append(index[key])
    per = torch.zeros(len(names), device=device, dtype=torch.float32)
    per.index_add_(0, _arrays.index_on(group, device), squares)
    return total, names, per.sqrt()


def _logits_of(output):
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"lm_head output has no logits tensor: {type(output).__name__}")


@torch.no_grad()
def mha_qk(module, inputs, output, batch_index=0):
    """Per-head Q and K of one sequence from nn.MultiheadAttention's inputs.

    Returns ([heads, L, d], [heads, S, d]) on the module's device. Needs query
    and key passed positionally (as nn.Transformer* layers do).
    """
    if len(inputs) < 2:
        raise TypeError("nn.MultiheadAttention called with keyword query/key; pass them "
                        "positionally or give watch() a qk_fn")
    query, key = inputs[0], inputs[1]
    if query.dim() == 3:
        if module.batch_first:
            query, key = query[batch_index], key[batch_index]
        else:
            query, key = query[:, batch_index], key[:, batch_index]
    e, h = module.embed_dim, module.num_heads
    if module._qkv_same_embed_dim:
        w_q, w_k = module.in_proj_weight[:e], module.in_proj_weight[e:2 * e]
    else:
        w_q, w_k = module.q_proj_weight, module.k_proj_weight
    b_q = b_k = None
    if module.in_proj_bias is not None:
        b_q, b_k = module.in_proj_bias[:e], module.in_proj_bias[e:2 * e]
    q = F.linear(query, w_q, b_q)
    k = F.linear(key, w_k, b_k)
    d = e // h
    return (q.view(q.shape[0], h, d).transpose(0, 1), k.view(k.shape[0], h, d).transpose(0, 1))


class Watch:
    """Hooks registered by watch(); remove() unregisters them.

    step: the step hooks log at. Unless assigned, it counts training-mode
    forwards of the watched model (first forward = start_step). Assigning it
    turns counting off (use that with gradient accumulation).
    """

    def __init__(self, model, monitor, every, start_step):
        self.model = model
        self.monitor = monitor
        self.every = every
        self._step = start_step - 1
        self._counting = True
        self._handles = []

    @property
    def step(self):
        return self._step

    @step.setter
    def step(self, value):
        self._counting = False
        self._step = int(value)

    def active(self):
        """Whether hooks log on the current forward."""
        return self.model.training and self._step >= 0 and self._step % self.every == 0

    def log_grad_norm(self, per_layer=False):
        """Logs the model's gradient norm at the current step (if it is logged)."""
        if self.active():
            self.monitor.log_grad_norm(self._step, self.model, per_layer=per_layer)

    def remove(self):
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _count(self, module, inputs):
        if self._counting and module.training:
            self._step += 1


def watch(model, monitor, lm_head=None, attention_modules=None, every=1, rows=...,
          causal=True, qk_fn=None, queries=None, start_step=0):
    """Registers forward hooks on model's parts that log to monitor.

    lm_head: the module producing logits [..., vocab] (or a name in
    model.named_modules()); sampled rows go to monitor.log_logits.
    attention_modules: a list (layer = position) or dict {layer: module} of
    attention modules; nn.MultiheadAttention is understood, for others give
    qk_fn(module, inputs, output) -> (q, k) as [batch, heads, n, d] or
    [heads, n, d]. causal / queries go to log_attention. every: log on steps
    divisible by every. Returns a Watch.
    """
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    w = Watch(model, monitor, every, start_step)
    w._handles.append(model.register_forward_pre_hook(w._count))
    if isinstance(lm_head, str):
        lm_head = dict(model.named_modules())[lm_head]
    if lm_head is not None:
        def on_logits(module, inputs, output):
            if w.active():
                monitor.log_logits(w.step, _logits_of(output).detach(), rows=rows)

        w._handles.append(lm_head.register_forward_hook(on_logits))
    if attention_modules is not None:
        layers = (attention_modules.items() if isinstance(attention_modules, dict)
                  else enumerate(attention_modules))
        for layer, module in layers:
            extract = qk_fn
            if extract is None:
                if not isinstance(module, torch.nn.MultiheadAttention):
                    raise TypeError(f"attention module for layer {layer} is a "
                                    f"{type(module).__name__}: pass qk_fn to extract q and k")
                extract = mha_qk

            def on_attention(module, inputs, output, layer=layer, extract=extract):
                if w.active():
                    with torch.no_grad():
                        q, k = extract(module, inputs, output)
                    # q and k are fresh tensors made for this call: no copy needed.
                    monitor.log_attention(w.step, layer, q, k, causal=causal, queries=queries,
                                          _owned=qk_fn is None)

            w._handles.append(module.register_forward_hook(on_attention))
    return w
