#!/usr/bin/python3
"""Records entrowatch traces from real training of a small transformer LM.

Trains a character-level transformer on Python's own library sources (CPU,
Debian's python3-torch) and writes one Report per training step in the
protobuf JSON mapping (JSONL), with a NAME.meta.json sidecar that states the
onset of the pathology and the verdicts the analysis must reach. Each report
carries a sample of per-token entropies computed from the step's logits, the
global gradient norm (before any clipping), the per-head attention entropies of
every layer, the loss and the learning rate.

Scenarios (all share the model, the data and the first steps):
  real-healthy    ordinary run: warm-up then cosine decay of the learning rate.
  real-lr-spike   healthy until --onset, then the learning rate is set 60x too
                  high: the loss spikes and the gradient norm explodes.
  real-memorize   healthy until --onset, then training continues on one tiny
                  fixed batch, which the model memorizes.

Usage: /usr/bin/python3 scripts/record_traces.py [--out tests/data] [SCENARIO...]
A run takes well under a minute of CPU per scenario.
"""

import argparse
import glob
import json
import math
import os
import random

import torch
import torch.nn as nn
import torch.nn.functional as F

CONTEXT = 64
BATCH = 16
D_MODEL = 96
HEADS = 4
LAYERS = 3
BASE_LR = 1e-3
SAMPLED_TOKENS = 24  # token entropies sent per step: keeps traces small


def load_corpus(pattern, max_bytes):
    text = []
    size = 0
    for path in sorted(glob.glob(pattern)):
        with open(path, encoding="utf-8", errors="replace") as f:
            chunk = f.read()
        text.append(chunk)
        size += len(chunk)
        if size >= max_bytes:
            break
    raw = "".join(text)
    return "".join(c if (32 <= ord(c) < 127 or c == "\n") else "?" for c in raw)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1 = nn.LayerNorm(D_MODEL)
        self.qkv = nn.Linear(D_MODEL, 3 * D_MODEL)
        self.proj = nn.Linear(D_MODEL, D_MODEL)
        self.ln2 = nn.LayerNorm(D_MODEL)
        self.mlp = nn.Sequential(nn.Linear(D_MODEL, 4 * D_MODEL), nn.GELU(),
                                 nn.Linear(4 * D_MODEL, D_MODEL))

    def forward(self, x, mask):
        b, t, _ = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(D_MODEL, dim=2)
        shape = (b, t, HEADS, D_MODEL // HEADS)
        q, k, v = (z.view(shape).transpose(1, 2) for z in (q, k, v))
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(D_MODEL // HEADS)
        probs = F.softmax(scores.masked_fill(mask[:t, :t], float("-inf")), dim=-1)
        # Per-head Shannon entropy, mean over batch and query positions.
        plogp = torch.where(probs > 0, probs * torch.log(probs), torch.zeros_like(probs))
        head_entropy = (-plogp.sum(-1)).mean(dim=(0, 2)).detach()
        y = (probs @ v).transpose(1, 2).reshape(b, t, D_MODEL)
        x = x + self.proj(y)
        return x + self.mlp(self.ln2(x)), head_entropy


class CharLM(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.tok = nn.Embedding(vocab, D_MODEL)
        self.pos = nn.Embedding(CONTEXT, D_MODEL)
        self.blocks = nn.ModuleList(Block() for _ in range(LAYERS))
        self.ln = nn.LayerNorm(D_MODEL)
        self.head = nn.Linear(D_MODEL, vocab)
        self.register_buffer("mask", torch.triu(torch.ones(CONTEXT, CONTEXT, dtype=torch.bool), 1))

    def forward(self, idx):
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
        layer_entropies = []
        for block in self.blocks:
            x, h = block(x, self.mask)
            layer_entropies.append(h)
        return self.head(self.ln(x)), layer_entropies


def lr_at(step, total):
    warmup = 20
    if step < warmup:
        return BASE_LR * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 1e-4 + 0.5 * (BASE_LR - 1e-4) * (1 + math.cos(math.pi * progress))


def record(name, steps, onset, out_dir, data, vocab, seed):
    torch.manual_seed(seed)
    rng = random.Random(seed)
    # Token sampling has its own generator so that the sample size does not
    # change the training run itself.
    pick_rng = random.Random(seed + 1)
    model = CharLM(len(vocab))
    opt = torch.optim.AdamW(model.parameters(), lr=BASE_LR, weight_decay=0.01)
    tiny = torch.stack([data[i:i + CONTEXT + 1] for i in
                        (rng.randrange(len(data) - CONTEXT - 1) for _ in range(BATCH))])
    lines = []
    for step in range(steps):
        if name == "real-memorize" and step >= onset:
            batch = tiny
        else:
            starts = [rng.randrange(len(data) - CONTEXT - 1) for _ in range(BATCH)]
            batch = torch.stack([data[i:i + CONTEXT + 1] for i in starts])
        x, y = batch[:, :-1], batch[:, 1:]
        lr = lr_at(step, steps)
        if name == "real-lr-spike" and step >= onset:
            lr = 60 * BASE_LR
        for group in opt.param_groups:
            group["lr"] = lr
        logits, layer_entropies = model(x)
        loss = F.cross_entropy(logits.reshape(-1, len(vocab)), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf")).item()
        opt.step()
        with torch.no_grad():
            logp = F.log_softmax(logits.reshape(-1, len(vocab)).double(), dim=-1)
            entropy = -(logp.exp() * logp).sum(-1)
            picks = pick_rng.sample(range(entropy.shape[0]), SAMPLED_TOKENS)
            values = [round(max(0.0, entropy[i].item()), 3) for i in picks]
        report = {
            "runId": name,
            "worldSize": 1,
            "step": str(step),
            "seq": str(step + 1),
            "phase": "TRAIN",
            "tokenEntropies": [{"values": values, "vocabSize": len(vocab)}],
            "attentionEntropies": [
                {"layer": layer, "headEntropy": [round(v, 3) for v in h.tolist()]}
                for layer, h in enumerate(layer_entropies)],
            "grad": {"globalNorm": round(grad_norm, 5)},
            "scalars": {"loss": round(loss.item(), 5), "learningRate": lr},
        }
        if step == steps - 1:
            report["final"] = True
        lines.append(json.dumps(report, separators=(",", ":")))
        if step % 50 == 0 or step == steps - 1:
            mean_h = sum(values) / len(values)
            print(f"{name} step {step:4d} loss {loss.item():.3f} grad {grad_norm:8.3f} "
                  f"H {mean_h:.3f} lr {lr:.2e}", flush=True)
    with open(os.path.join(out_dir, name + ".jsonl"), "w") as f:
        f.write("\n".join(lines) + "\n")


SCENARIOS = {
    # name: (steps, onset, meta)
    "real-healthy": (300, None, {
        "description": "Character-level transformer (3 layers, 4 heads, d=96) trained with "
                       "AdamW on Python library sources; warm-up then cosine learning rate.",
        "healthy": True,
    }),
    "real-lr-spike": (260, 150, {
        "description": "Same run, healthy until the onset, where the learning rate is set to "
                       "6e-2 (60x): the loss jumps from about 2.5 to peaks above 6 (a uniform "
                       "guess scores 4.6), the gradient norm grows about 10x while the "
                       "predictions turn confidently wrong (token entropy below its baseline), "
                       "and the heads of layer 0 collapse to one-hot attention.",
        "expected_states": ["PATHOLOGICAL_CONFIDENCE"],
        "expected_patterns": ["ENTROPY_COLLAPSE"],
        "max_delay_steps": 20,
    }),
    "real-memorize": (420, 100, {
        "description": "Same run, healthy until the onset, then trained on one fixed batch of "
                       "16 sequences, which it memorizes: token entropy falls towards zero.",
        "expected_states": ["COMFORT_ZONE"],
        "expected_patterns": ["ENTROPY_COLLAPSE"],
        "max_delay_steps": 150,
    }),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests",
                                                      "data"))
    parser.add_argument("--corpus", default="/usr/lib/python3.11/*.py")
    parser.add_argument("--corpus-bytes", type=int, default=2_000_000)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("scenarios", nargs="*", default=list(SCENARIOS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    text = load_corpus(args.corpus, args.corpus_bytes)
    vocab = sorted(set(text))
    index = {c: i for i, c in enumerate(vocab)}
    data = torch.tensor([index[c] for c in text], dtype=torch.long)
    os.makedirs(args.out, exist_ok=True)
    for name in args.scenarios:
        steps, onset, meta = SCENARIOS[name]
        record(name, steps, onset, args.out, data, vocab, args.seed)
        sidecar = {"run_id": name, "source": "recorded by scripts/record_traces.py",
                   "warmup_steps": 50}
        if onset is not None:
            sidecar["onset_step"] = onset
        sidecar.update(meta)
        with open(os.path.join(args.out, name + ".meta.json"), "w") as f:
            json.dump(sidecar, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
