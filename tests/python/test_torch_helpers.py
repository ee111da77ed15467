"""entrowatch.torch helpers against float64 references (no daemon needed)."""

import math

import numpy as np
import pytest
import torch

import entrowatch.torch as ew_torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(20, 8)
        self.blocks = torch.nn.ModuleList(torch.nn.Sequential(torch.nn.Linear(8, 8),
                                                              torch.nn.Linear(8, 8))
                                          for _ in range(2))
        self.head = torch.nn.Linear(8, 20)
        self.frozen = torch.nn.Linear(8, 8)
        self.frozen.requires_grad_(False)

    def forward(self, x):
        h = self.embed(x)
        for b in self.blocks:
            h = b(h)
        return self.head(h)


def test_grad_norms_global_and_per_layer():
    torch.manual_seed(0)
    net = Net()
    (net(torch.randint(0, 20, (4, 5))) ** 2).mean().backward()
    for p in net.blocks[1].parameters():
        p.grad.mul_(1e3)  # large and small layers alike
    total, names, per = ew_torch.grad_norms(net, per_layer=True)
    groups = {}
    for name, p in net.named_parameters():
        if p.grad is not None:
            key = name.split(".")[0] if not name.startswith("blocks") else ".".join(name.split(".")[:2])
            groups[key] = groups.get(key, 0.0) + float(p.grad.double().square().sum())
    assert names == ["embed", "blocks.0", "blocks.1", "head"]
    assert per.tolist() == pytest.approx([math.sqrt(groups[n]) for n in names], rel=1e-5)
    assert float(total) == pytest.approx(math.sqrt(sum(groups.values())), rel=1e-5)
    assert ew_torch.grad_norms(net)[1:] == (None, None)


def test_grad_norms_without_gradients():
    assert ew_torch.grad_norms(Net()) == (None, None, None)


def test_mha_qk_matches_the_module():
    torch.manual_seed(1)
    mha = torch.nn.MultiheadAttention(12, 3, batch_first=True)
    x = torch.randn(2, 7, 12)
    _, weights = mha(x, x, x, need_weights=True, average_attn_weights=False)
    q, k = ew_torch.mha_qk(mha, (x, x, x), None, batch_index=1)
    assert q.shape == (3, 7, 4) and k.shape == (3, 7, 4)
    scores = (q.double() @ k.double().transpose(1, 2)) / math.sqrt(4)
    probs = torch.softmax(scores, dim=-1)
    np.testing.assert_allclose(probs.numpy(), weights[1].detach().double().numpy(), rtol=1e-4,
                               atol=1e-6)


def test_watch_rejects_unknown_attention_modules():
    net = Net()
    with pytest.raises(TypeError, match="pass qk_fn"):
        ew_torch.watch(net, monitor=None, attention_modules=[net.head])
