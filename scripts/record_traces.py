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
The scenarios below also carry the maximum attention logit of every layer:
  real-corrupt-shard       40 steps of uniformly random characters, then clean data.
  real-lr-x50              the learning rate x50 from a late step on.
  real-lr-too-low          the learning rate 1000x too low after the warm-up.
  real-healthy-recipe      the usual recipe: warm-up, cosine decay, AdamW weight
                           decay 0.1, gradient clipping.
  real-healthy-outliers    the same with a few isolated random-character batches.
  real-two-rank-bad-shard  two data-parallel ranks; rank 1 reads a corrupted shard.
  real-rl-collapse         GRPO-style RL (phase ROLLOUT) from a pretrained model,
                           rewarded for one letter: generated-token entropy collapses.

Usage: /usr/bin/python3 scripts/record_traces.py [--out tests/data] [SCENARIO...]
A run takes about a minute of CPU per scenario (real-rl-collapse: several).
"""

import argparse
import copy
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
        masked = scores.masked_fill(mask[:t, :t], float("-inf"))
        # Maximum attention logit q.k * scale over heads, queries and the batch
        # (causally visible keys only).
        max_logit = masked.detach().amax().item()
        probs = F.softmax(masked, dim=-1)
        # Per-head Shannon entropy, mean over batch and query positions.
        plogp = torch.where(probs > 0, probs * torch.log(probs), torch.zeros_like(probs))
        head_entropy = (-plogp.sum(-1)).mean(dim=(0, 2)).detach()
        y = (probs @ v).transpose(1, 2).reshape(b, t, D_MODEL)
        x = x + self.proj(y)
        return x + self.mlp(self.ln2(x)), (head_entropy, max_logit)


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
            x, stats = block(x, self.mask)
            layer_entropies.append(stats)
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
                for layer, (h, _) in enumerate(layer_entropies)],
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



# ---------------------------------------------------------------------------
# Scenarios recorded with the maximum attention logit per layer. Runs that share
# their recipe and seed also share their first steps: those steps are trained
# once and the later scenarios continue from a snapshot (training is
# deterministic on one thread, so the continuation equals a run from scratch).

HORIZON = 300  # steps of the learning-rate schedule of the default recipe
SNAPSHOT_STEPS = (60, 100, 150, 200)
RL_BASE_STEP = 150  # the RL run starts from the default run's model at this step


def attention_blocks(layer_stats):
    return [{"layer": layer, "headEntropy": [round(v, 3) for v in h.tolist()],
             "maxLogit": round(m, 4)} for layer, (h, m) in enumerate(layer_stats)]


def entropy_sample(logits, pick_rng, positions=None):
    """Entropies (nats) of SAMPLED_TOKENS rows of logits[n, vocab], picked at random."""
    with torch.no_grad():
        logp = F.log_softmax(logits.double(), dim=-1)
        entropy = -(logp.exp() * logp).sum(-1)
    rows = list(range(entropy.shape[0])) if positions is None else positions
    picks = pick_rng.sample(rows, min(SAMPLED_TOKENS, len(rows)))
    return [round(max(0.0, entropy[i].item()), 3) for i in picks]


def make_report(run_id, step, values, layer_stats, grad_norm, loss, lr, rank=0, world_size=1,
                phase="TRAIN", kinds=None, named=None):
    tokens = {"values": values, "vocabSize": VOCAB_SIZE[0]}
    if kinds:
        tokens["tokenKinds"] = kinds
    scalars = {"loss": round(loss, 5), "learningRate": lr}
    if named:
        scalars["values"] = {k: round(v, 5) for k, v in named.items()}
    report = {"runId": run_id, "rank": rank, "worldSize": world_size, "step": str(step),
              "seq": str(step + 1), "phase": phase, "tokenEntropies": [tokens],
              "attentionEntropies": attention_blocks(layer_stats),
              "grad": {"globalNorm": round(grad_norm, 5)}, "scalars": scalars}
    if rank == 0:
        del report["rank"]
    return report


VOCAB_SIZE = [0]


class Run:
    """A language-model training run: recipe "default" (AdamW, weight decay 0.01,
    warm-up then cosine, no clipping; the recipe of real-healthy) or "recipe" (the
    usual one: AdamW betas (0.9, 0.95), weight decay 0.1, 30 warm-up steps, cosine
    decay to 10%, gradient clipping at 1.0)."""

    def __init__(self, recipe, data, vocab, seed):
        torch.manual_seed(seed)
        self.recipe = recipe
        self.data = data
        self.vocab = len(vocab)
        self.rng = random.Random(seed)
        self.pick_rng = random.Random(seed + 1)
        self.noise = torch.Generator().manual_seed(seed + 2)
        self.model = CharLM(self.vocab)
        if recipe == "default":
            self.opt = torch.optim.AdamW(self.model.parameters(), lr=BASE_LR, weight_decay=0.01)
        else:
            self.opt = torch.optim.AdamW(self.model.parameters(), lr=BASE_LR,
                                         betas=(0.9, 0.95), weight_decay=0.1)
        # Same draws as record(), so the default recipe retraces real-healthy.
        [self.rng.randrange(len(data) - CONTEXT - 1) for _ in range(BATCH)]
        self.step = 0
        self.reports = []  # report dicts without runId

    def lr(self, step):
        if self.recipe == "default":
            return lr_at(step, HORIZON)
        warmup = 30
        if step < warmup:
            return BASE_LR * (step + 1) / warmup
        progress = min(1.0, (step - warmup) / (HORIZON - warmup))
        return 0.1 * BASE_LR + 0.45 * BASE_LR * (1 + math.cos(math.pi * progress))

    def clean_batch(self, rows=BATCH):
        starts = [self.rng.randrange(len(self.data) - CONTEXT - 1) for _ in range(rows)]
        return torch.stack([self.data[i:i + CONTEXT + 1] for i in starts])

    def noise_batch(self, rows=BATCH):
        """Uniformly random characters: a corrupted shard."""
        return torch.randint(0, self.vocab, (rows, CONTEXT + 1), generator=self.noise)

    def train(self, batches, lr):
        """One optimizer step on the union of batches (one per rank, gradients
        averaged as DDP does); returns per batch (loss, logits, layer stats) and the
        global gradient norm before clipping."""
        for group in self.opt.param_groups:
            group["lr"] = lr
        outs = []
        total = 0
        for batch in batches:
            x, y = batch[:, :-1], batch[:, 1:]
            logits, stats = self.model(x)
            loss = F.cross_entropy(logits.reshape(-1, self.vocab), y.reshape(-1))
            total = total + loss / len(batches)
            outs.append((loss.item(), logits.reshape(-1, self.vocab).detach(), stats))
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        limit = 1.0 if self.recipe == "recipe" else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), limit).item()
        self.opt.step()
        return outs, grad_norm

    def snapshot(self):
        return {"model": copy.deepcopy(self.model.state_dict()),
                "opt": copy.deepcopy(self.opt.state_dict()),
                "rng": self.rng.getstate(), "pick_rng": self.pick_rng.getstate(),
                "noise": self.noise.get_state(), "torch": torch.get_rng_state(),
                "step": self.step, "reports": copy.deepcopy(self.reports)}

    def restore(self, snap):
        self.model.load_state_dict(snap["model"])
        self.opt.load_state_dict(snap["opt"])
        self.rng.setstate(snap["rng"])
        self.pick_rng.setstate(snap["pick_rng"])
        self.noise.set_state(snap["noise"])
        torch.set_rng_state(snap["torch"])
        self.step = snap["step"]
        self.reports = copy.deepcopy(snap["reports"])


_SNAPSHOTS = {}


def start_run(recipe, diverge, data, vocab, seed):
    """A Run of recipe advanced to the latest snapshot at or before step diverge."""
    run = Run(recipe, data, vocab, seed)
    best = max((s for (r, s) in _SNAPSHOTS if r == recipe and s <= diverge), default=None)
    if best is not None:
        run.restore(_SNAPSHOTS[(recipe, best)])
    return run


def keep_snapshot(run):
    if run.step in SNAPSHOT_STEPS and (run.recipe, run.step) not in _SNAPSHOTS:
        _SNAPSHOTS[(run.recipe, run.step)] = run.snapshot()


def lm_scenario(name, cfg, data, vocab, seed):
    """Language-model scenarios: default or usual recipe with an event at onset."""
    steps, onset = cfg["steps"], cfg.get("onset")
    kind = cfg["kind"]
    ranks = 2 if kind == "bad-rank" else 1
    diverge = onset if onset is not None else min(cfg.get("outliers", [steps]))
    if ranks == 2:
        diverge = 0  # a different batch layout from step 0
    run = start_run(cfg["recipe"], diverge, data, vocab, seed)
    while run.step < steps:
        step = run.step
        if ranks == 1:
            keep_snapshot(run)
        lr = run.lr(step)
        if kind == "lr-low" and step >= onset:
            lr = BASE_LR / 1000
        if kind == "lr-x50" and step >= onset:
            lr *= 50
        if ranks == 2:
            half = BATCH // 2
            bad = step >= onset
            batches = [run.clean_batch(half),
                       run.noise_batch(half) if bad else run.clean_batch(half)]
        elif ((kind == "corrupt" and onset <= step < onset + cfg["length"])
              or step in cfg.get("outliers", ())):
            batches = [run.noise_batch()]
        else:
            batches = [run.clean_batch()]
        outs, grad_norm = run.train(batches, lr)
        for rank, (loss, logits, stats) in enumerate(outs):
            values = entropy_sample(logits, run.pick_rng)
            run.reports.append(make_report(None, step, values, stats, grad_norm, loss, lr,
                                           rank=rank, world_size=ranks))
        if step % 50 == 0 or step == steps - 1:
            print(f"{name} step {step:4d} loss {outs[-1][0]:.3f} grad {grad_norm:8.3f} "
                  f"lr {lr:.2e} maxlogit {outs[-1][2][0][1]:.2f}", flush=True)
        run.step += 1
    return run.reports[:steps * ranks], None


RL_PROMPTS, RL_GROUP, RL_PROMPT_LEN, RL_GEN_LEN = 4, 8, 12, 12
RL_LR, RL_BETA, RL_CLIP = 3e-4, 0.04, 0.2


def rl_scenario(name, cfg, data, vocab, seed):
    """GRPO-style policy gradient from the default run's model at step 150:
    groups of RL_GROUP sampled completions per prompt, group-normalized advantages,
    a clipped surrogate over two epochs, a k3 KL penalty to the frozen starting
    model; reward = share of the RL_GEN_LEN completion characters that are "e"
    (a completion ends at its first newline)."""
    base = start_run("default", RL_BASE_STEP, data, vocab, seed)
    while base.step < RL_BASE_STEP:  # pretraining, not recorded
        keep_snapshot(base)
        base.train([base.clean_batch()], base.lr(base.step))
        base.step += 1
    policy = base.model
    ref = copy.deepcopy(policy).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(policy.parameters(), lr=RL_LR, weight_decay=0.0)
    rng = random.Random(seed + 10)
    pick_rng = random.Random(seed + 11)
    sampler = torch.Generator().manual_seed(seed + 12)
    target = vocab.index("e")
    newline = vocab.index("\n")
    reports = []
    for step in range(cfg["steps"]):
        starts = [rng.randrange(len(data) - RL_PROMPT_LEN) for _ in range(RL_PROMPTS)]
        prompts = torch.stack([data[i:i + RL_PROMPT_LEN] for i in starts])
        seqs = prompts.repeat_interleave(RL_GROUP, dim=0)
        gen_entropy = []
        with torch.no_grad():
            for _ in range(RL_GEN_LEN):
                logits, _ = policy(seqs)
                logp = F.log_softmax(logits[:, -1].double(), dim=-1)
                gen_entropy.append(-(logp.exp() * logp).sum(-1))
                nxt = torch.multinomial(logp.exp(), 1, generator=sampler)
                seqs = torch.cat([seqs, nxt], dim=1)
        gen = seqs[:, RL_PROMPT_LEN:]
        # Response mask: up to and including the first newline.
        after_nl = (gen == newline).long().cumsum(1) - (gen == newline).long()
        mask = (after_nl == 0).double()
        length = mask.sum(1)
        reward = ((gen == target).double() * mask).sum(1) / RL_GEN_LEN
        r = reward.view(RL_PROMPTS, RL_GROUP)
        adv = ((r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + 1e-4)).view(-1, 1)
        gen_entropy = torch.stack(gen_entropy, dim=1)  # [completions, RL_GEN_LEN]
        valid = [i for i in range(mask.numel()) if mask.view(-1)[i] > 0]
        picks = pick_rng.sample(valid, min(SAMPLED_TOKENS, len(valid)))
        values = [round(max(0.0, gen_entropy.view(-1)[i].item()), 3) for i in picks]
        x = seqs[:, :-1]
        with torch.no_grad():
            ref_logits, _ = ref(x)
            ref_lp = F.log_softmax(ref_logits[:, RL_PROMPT_LEN - 1:].double(), -1).gather(
                -1, gen.unsqueeze(-1)).squeeze(-1)
        old_lp = None
        losses, norms = [], []
        for epoch in range(2):
            logits, stats = policy(x)
            lp = F.log_softmax(logits[:, RL_PROMPT_LEN - 1:].double(), -1).gather(
                -1, gen.unsqueeze(-1)).squeeze(-1)
            if old_lp is None:
                old_lp = lp.detach()
                first_stats = stats
                kl_tokens = (torch.exp(ref_lp - old_lp) - (ref_lp - old_lp) - 1)
                kl = ((kl_tokens * mask).sum() / mask.sum()).item()
            ratio = torch.exp(lp - old_lp)
            clipped = torch.clamp(ratio, 1 - RL_CLIP, 1 + RL_CLIP)
            surrogate = torch.minimum(ratio * adv, clipped * adv)
            kl_pen = torch.exp(ref_lp - lp) - (ref_lp - lp) - 1
            loss = -(((surrogate - RL_BETA * kl_pen) * mask).sum() / mask.sum())
            if epoch == 1:
                clip_fraction = ((((ratio - 1).abs() > RL_CLIP).double() * mask).sum()
                                 / mask.sum()).item()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            norms.append(torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0).item())
            losses.append(loss.item())
            opt.step()
        named = {"reward": reward.mean().item(), "kl": kl,
                 "response_length": length.mean().item(), "clip_fraction": clip_fraction}
        report = make_report(None, step, values, first_stats, sum(norms) / 2, sum(losses) / 2,
                             RL_LR, phase="ROLLOUT", kinds=["GENERATED"] * len(values),
                             named=named)
        reports.append(report)
        if step % 10 == 0 or step == cfg["steps"] - 1:
            print(f"{name} step {step:4d} H {sum(values) / len(values):.3f} "
                  f"reward {named['reward']:.3f} kl {kl:.4f} len {named['response_length']:.1f} "
                  f"clip {clip_fraction:.3f} grad {sum(norms) / 2:.3f}", flush=True)
    # Onset: the first step whose mean sampled entropy is under half the mean of
    # the first five steps.
    means = [sum(r["tokenEntropies"][0]["values"]) / len(r["tokenEntropies"][0]["values"])
             for r in reports]
    start = sum(means[:5]) / 5
    onset = next((i for i, m in enumerate(means) if m < 0.5 * start), None)
    return reports, onset


NEW_SCENARIOS = {
    "real-corrupt-shard": ({"kind": "corrupt", "recipe": "default", "steps": 300, "onset": 200,
                            "length": 40}, {
        "description": "Same run as real-healthy until the onset; steps 200-239 train on "
                       "uniformly random characters (a corrupted shard), then on clean data "
                       "again. Loss 2.3-2.5 to 5.5 and grad norm 0.5 to 1.9 at step 200; the "
                       "model then learns the noise's uniform distribution (loss 4.6, token "
                       "entropy 4.5 nats, grad norm back to 0.4 by step 226); clean data at "
                       "240 brings grad norms of 4.9 and 5.3 (steps 240, 242) and the loss "
                       "back to 2.8 by 246.",
        "expected_states": ["PANIC_ZONE"],
        "expected_patterns": ["LOSS_SPIKE", "GRAD_NORM_SPIKE"],
        "max_delay_steps": 5,
    }),
    "real-lr-x50": ({"kind": "lr-x50", "recipe": "default", "steps": 300, "onset": 200}, {
        "description": "Same run as real-healthy until the onset, where the scheduled learning "
                       "rate is multiplied by 50 for the rest of the run: the gradient norm goes "
                       "from 0.4 to 1.9 at step 201 and 3.3 at 203, the loss from 2.3 to 3.8 at "
                       "203 and stays near 2.7 (real-healthy: 2.4); the mean attention entropy "
                       "of layer 2 falls from 2.84 to 0.65 nats by step 211 (layer 0: 2.87 to "
                       "0.7 by 225) while the maximum attention logit of layer 1 grows from 9 "
                       "to 112 by step 212 and near 280 later (maxLogit per layer from the "
                       "model's Q/K). Token entropy does not fall.",
        "expected_states": [],
        "expected_patterns": ["GRAD_NORM_SPIKE", "ATTENTION_LOGIT_GROWTH", "ENTROPY_COLLAPSE"],
        "max_delay_steps": 20,
    }),
    "real-lr-too-low": ({"kind": "lr-low", "recipe": "default", "steps": 260, "onset": 60}, {
        "description": "Same run as real-healthy until the onset, then the learning rate is "
                       "1e-6 (1000x below the peak) for the rest of the run: the loss stops "
                       "falling and stays at about 2.75 (mean of 20 steps; real-healthy reaches "
                       "2.4), mean token entropy stays at about 2.85 nats (real-healthy: 2.5) "
                       "and the gradient norm at about 0.4.",
        "expected_states": ["STAGNATION"],
        "expected_patterns": [],
        "max_delay_steps": 150,
    }),
    "real-healthy-recipe": ({"kind": "healthy", "recipe": "recipe", "steps": 300}, {
        "description": "The usual recipe: AdamW betas (0.9, 0.95), weight decay 0.1, 30 linear "
                       "warm-up steps, cosine decay to 10%, gradient clipping at 1.0 (the "
                       "reported grad norm is before clipping).",
        "healthy": True,
    }),
    "real-healthy-outliers": ({"kind": "outliers", "recipe": "recipe", "steps": 300,
                               "outliers": [100, 180, 260]}, {
        "description": "Same run as real-healthy-recipe, with one batch of uniformly random "
                       "characters at each step in isolated_outliers: loss 5.55 and grad norm "
                       "1.8-2.3 there (around them: loss 2.2-2.7, grad norm 0.35-0.6); the run "
                       "absorbs each at once, loss and grad norm are back in band at the next "
                       "step.",
        "healthy": True,
    }),
    "real-two-rank-bad-shard": ({"kind": "bad-rank", "recipe": "default", "steps": 240,
                                 "onset": 150}, {
        "description": "Data parallel on two ranks (8 sequences each, gradients averaged, "
                       "so both ranks report the same global grad norm); from the onset rank "
                       "1 reads a corrupted shard of uniformly random characters: its loss "
                       "and token entropy rise, rank 0's do not.",
        "bad_rank": 1,
        "expected_states": [],
        "expected_patterns": ["RANK_OUTLIER"],
        "max_delay_steps": 10,
    }),
    "real-rl-collapse": ({"kind": "rl", "steps": 120}, {
        "description": "GRPO-style policy gradient (phase ROLLOUT) from the default run's "
                       "model at step 150: 4 prompts x 8 sampled completions of 12 characters, "
                       "group-normalized advantages, clipped surrogate over two epochs, KL "
                       "penalty 0.04 to the starting model, reward = share of 'e' characters. "
                       "Token entropies are those of generated tokens; reward, kl, "
                       "response_length and clip_fraction are named scalars; scalars.loss is the "
                       "policy loss (near 0, either sign). The onset is the first step whose mean "
                       "generated entropy is under half that of steps 0-4. Recorded: generated "
                       "entropy 2.6 nats at step 0, 1.34 at 12, 0.42 at 20, about 0.25 from 50 "
                       "on; reward 0.06 to 0.73 at 12 and 0.95 from 20; KL 0 to 2.3 at 12 and "
                       "3.2-4.5 later; grad norm 0.7 falling to about 0.1.",
        "expected_patterns": ["ENTROPY_COLLAPSE", "REWARD_HACKING"],
        "max_delay_steps": 30,
    }),
}


def record_new(name, out_dir, data, vocab, seed):
    cfg, meta = NEW_SCENARIOS[name]
    VOCAB_SIZE[0] = len(vocab)
    if cfg["kind"] == "rl":
        reports, onset = rl_scenario(name, cfg, data, vocab, seed)
    else:
        reports, _ = lm_scenario(name, cfg, data, vocab, seed)
        onset = cfg.get("onset")
    lines = []
    for i, report in enumerate(reports):
        report = dict(report, runId=name)
        report = {"runId": name, **{k: v for k, v in report.items() if k != "runId"}}
        if i == len(reports) - 1:  # marks the run finished: the last rank's last report
            report["final"] = True
        lines.append(json.dumps(report, separators=(",", ":")))
    with open(os.path.join(out_dir, name + ".jsonl"), "w") as f:
        f.write("\n".join(lines) + "\n")
    sidecar = {"run_id": name, "source": "recorded by scripts/record_traces.py",
               "warmup_steps": 50}
    if onset is not None:
        sidecar["onset_step"] = onset
    if "outliers" in cfg:
        sidecar["isolated_outliers"] = cfg["outliers"]
    sidecar.update(meta)
    with open(os.path.join(out_dir, name + ".meta.json"), "w") as f:
        json.dump(sidecar, f, indent=2)
        f.write("\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests",
                                                      "data"))
    parser.add_argument("--corpus", default="/usr/lib/python3.11/*.py")
    parser.add_argument("--corpus-bytes", type=int, default=2_000_000)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("scenarios", nargs="*", default=list(SCENARIOS) + list(NEW_SCENARIOS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    text = load_corpus(args.corpus, args.corpus_bytes)
    vocab = sorted(set(text))
    index = {c: i for i, c in enumerate(vocab)}
    data = torch.tensor([index[c] for c in text], dtype=torch.long)
    os.makedirs(args.out, exist_ok=True)
    for name in args.scenarios:
        if name in NEW_SCENARIOS:
            record_new(name, args.out, data, vocab, args.seed)
            continue
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
