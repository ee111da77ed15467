#!/usr/bin/env python3
"""Train a tiny byte-level transformer LM on CPU, monitored by entrowatchd.

    entrowatchd --config config/entrowatch.yaml &       # listens on 127.0.0.1:50551
    .venv/bin/python examples/train_tiny_lm.py --steps 200   # a venv with entrowatch

The text is Python's own standard library sources. The model (about 240k
parameters, 4 layers) trains 200 steps in one to two minutes on two CPU cores.
Logits, attention Q/K of every layer, the gradient norm, loss and learning
rate go to the daemon; the health state it returns is printed as it changes.

Provoke a pathology and watch the daemon call it:
    --pathology lr-spike    multiply the learning rate by --spike-factor (300)
                            from --spike-step (120) on: the model collapses onto
                            confident predictions under huge updates
                            (PATHOLOGICAL_CONFIDENCE, ENTROPY_COLLAPSE)
    --pathology tiny-data   train on one short passage over and over: it is
                            memorized (COMFORT_ZONE, ENTROPY_COLLAPSE)
"""

import argparse
import glob
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import entrowatch
import entrowatch.torch

VOCAB = 256  # bytes


class Block(nn.Module):
    def __init__(self, d_model, heads):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = nn.MultiheadAttention(d_model, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(),
                                 nn.Linear(4 * d_model, d_model))

    def forward(self, x, mask):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class TinyLM(nn.Module):
    def __init__(self, d_model=64, layers=4, heads=4, context=64):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, d_model)
        self.pos = nn.Parameter(torch.zeros(context, d_model))
        self.blocks = nn.ModuleList(Block(d_model, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, VOCAB)
        self.register_buffer("mask", torch.triu(torch.full((context, context), float("-inf")), 1))

    def forward(self, idx):
        n = idx.shape[1]
        x = self.embed(idx) + self.pos[:n]
        for block in self.blocks:
            x = block(x, self.mask[:n, :n])
        return self.head(self.ln(x))


def load_text(limit_bytes):
    paths = sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "*.py")))
    chunks, size = [], 0
    for path in paths:
        with open(path, "rb") as f:
            data = f.read()
        chunks.append(data)
        size += len(data)
        if size >= limit_bytes:
            break
    return torch.frombuffer(bytearray(b"".join(chunks)[:limit_bytes]), dtype=torch.uint8).long()


def batches(data, batch, context, tiny, generator):
    if tiny:
        data = data[:context + batch]  # one short passage, memorized in a few dozen steps
    while True:
        starts = torch.randint(0, len(data) - context - 1, (batch,), generator=generator)
        x = torch.stack([data[s:s + context] for s in starts])
        y = torch.stack([data[s + 1:s + context + 1] for s in starts])
        yield x, y


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--address", default=os.environ.get("ENTROWATCH_ADDRESS", entrowatch.DEFAULT_ADDRESS))
    p.add_argument("--run-id", default=f"tiny-lm-{int(time.time())}")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=12)
    p.add_argument("--context", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--every", type=int, default=1, help="monitor every N-th step")
    p.add_argument("--rows", type=int, default=32, help="logits rows sampled per step")
    p.add_argument("--pathology", choices=["none", "lr-spike", "tiny-data"], default="none")
    p.add_argument("--spike-step", type=int, default=120)
    p.add_argument("--spike-factor", type=float, default=300.0)
    p.add_argument("--no-monitor", action="store_true", help="train without entrowatch")
    p.add_argument("--finish", action="store_true", help="mark the run finished at the end")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    args = p.parse_args(argv)

    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(args.seed)
    model = TinyLM(context=args.context)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    data = batches(load_text(2_000_000), args.batch, args.context, args.pathology == "tiny-data", gen)
    print(f"run {args.run_id}: {params} parameters, {args.steps} steps, daemon {args.address}")

    mon = watch = None
    if not args.no_monitor:
        mon = entrowatch.Monitor(args.address, run_id=args.run_id, rows=args.rows)
        mon.on_state(lambda v: print(f"  [entrowatch] step {v.step}: {v.state}"
                                     + (f" - {v.reason}" if v.reason else "")
                                     + (f" -> {v.recommended_action}" if v.recommended_action else "")
                                     + "".join(f"\n  [entrowatch]   anomaly {a.pattern} ({a.severity}):"
                                               f" {a.reason}" for a in v.anomalies)))
        watch = entrowatch.torch.watch(model, mon, lm_head=model.head,
                                       attention_modules=[b.attn for b in model.blocks],
                                       every=args.every)

    start = time.perf_counter()
    for step in range(args.steps):
        lr = args.lr * (args.spike_factor if args.pathology == "lr-spike" and step >= args.spike_step else 1)
        for group in opt.param_groups:
            group["lr"] = lr
        x, y = next(data)
        if watch is not None:
            watch.step = step
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if watch is not None:
            watch.log_grad_norm()
            if step % args.every == 0:
                mon.log_scalars(step, loss=loss.detach(), lr=lr)
        opt.step()
        if step % 20 == 0 or step == args.steps - 1:
            state = f"  state {mon.state}" if mon is not None else ""
            print(f"step {step:4d}  loss {loss.item():.3f}  ({math.exp(min(loss.item(), 20)):.1f} ppl){state}")
    elapsed = time.perf_counter() - start
    print(f"{args.steps} steps in {elapsed:.1f}s ({1000 * elapsed / args.steps:.1f} ms/step)")
    if mon is not None:
        mon.close(finish=args.finish)
        v = mon.verdict
        print(f"final state: {v.state if v else 'none (no verdict received)'}; "
              f"reports acked {mon.stats.acked}, dropped {mon.stats.dropped_queue_full}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
