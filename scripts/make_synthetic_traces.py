#!/usr/bin/python3
"""Writes the synthetic entrowatch traces of tests/data.

Each trace is a JSONL file of Reports (protobuf JSON mapping) with a
NAME.meta.json sidecar: the onset step of the pathology, the states and
patterns the analysis must reach and the maximum detection delay, or
"healthy": true. The signals are shaped after real training runs (a falling
learning curve with per-step sampling noise, a log-normal grad norm, a
U-shaped attention layer profile with distinct heads) so that each trace
isolates one pathology the recorded runs do not cover. Deterministic: the same
files on every run.

Usage: /usr/bin/python3 scripts/make_synthetic_traces.py [--out tests/data]
"""

import argparse
import json
import math
import os
import random

VOCAB = 32000
LOG_V = math.log(VOCAB)
TOKENS = 8
WARMUP = 50
PROMPT, GENERATED = 1, 2  # TokenKind values (the JSON mapping accepts enum numbers)
HEAD_OFFSETS = [-0.35, -0.1, 0.15, 0.3]
LAYER_PROFILE = [2.6, 1.6, 2.4]  # U-shaped: shallow and deep layers broader


def token_values(rng, mean, spread=0.25):
    """Per-token entropies around `mean` (gamma-shaped, relative std `spread`)."""
    k = 1.0 / (spread * spread)
    return [round(min(LOG_V, mean * rng.gammavariate(k, 1.0 / k)), 2) for _ in range(TOKENS)]


def attention(rng, profile, offsets=HEAD_OFFSETS, noise=0.03):
    return [{"layer": layer,
             "headEntropy": [round(max(0.0, mean + off * mean / 2 + rng.gauss(0, noise)), 3)
                             for off in offsets]}
            for layer, mean in enumerate(profile)]


def learning_curve(step):
    return 2.2 + 2.0 * math.exp(-step / 40.0)


def grad_norm(rng, step, scale=1.0):
    return round(scale * 0.8 * math.exp(-step / 600.0) * math.exp(rng.gauss(0, 0.15)), 3)


def report(name, step, phase="TRAIN", values=None, kinds=None, grad=None, layers=None):
    r = {"runId": name, "step": str(step), "seq": str(step + 1)}
    if phase != "TRAIN":  # an unspecified phase is TRAIN
        r["phase"] = phase
    if values is not None:
        block = {"values": values, "vocabSize": VOCAB}
        if kinds is not None:
            block["tokenKinds"] = kinds
        r["tokenEntropies"] = [block]
    if layers is not None:
        r["attentionEntropies"] = layers
    if grad is not None:
        r["grad"] = {"globalNorm": grad}
    return r


def train_trace(name, steps, shape, seed, with_attention=False):
    """shape(step) -> (entropy mean, grad scale, attention profile or None)."""
    rng = random.Random(seed)
    out = []
    for step in range(steps):
        mean, scale, profile = shape(step)
        layers = attention(rng, profile or LAYER_PROFILE) if with_attention else None
        out.append(report(name, step, values=token_values(rng, mean),
                          grad=grad_norm(rng, step, scale), layers=layers))
    return out


def scenarios():
    onset = 100
    yield ("synth-healthy", train_trace(
        "synth-healthy", 140, lambda s: (learning_curve(s), 1.0, None), 1, with_attention=True),
        {"healthy": True, "description": "Falling learning curve, log-normal grad norm, "
                                          "U-shaped attention profile with distinct heads."})

    # The state traces start their pathology on the flat part of the learning
    # curve, where the moving baseline has caught up with it.
    late_onset = 150

    def panic(s):
        shock = late_onset <= s < late_onset + 15
        return (learning_curve(s) + (1.0 if shock else 0.0), 4.0 if shock else 1.0, None)
    yield ("synth-panic", train_trace("synth-panic", 180, panic, 2),
           {"onset_step": late_onset, "max_delay_steps": 8, "expected_states": ["PANIC_ZONE"],
            "description": "Data shock: for 15 steps entropy +1 nat and grad norm x4."})

    def stagnation(s):
        late = s >= late_onset
        return (learning_curve(s) + (0.8 if late else 0.0), 0.1 if late else 1.0, None)
    yield ("synth-stagnation", train_trace("synth-stagnation", 180, stagnation, 3),
           {"onset_step": late_onset, "max_delay_steps": 8, "expected_states": ["STAGNATION"],
            "description": "Vanishing updates: grad norm falls 10x and entropy rises 0.8 nats."})

    def pathological(s):
        late = s >= late_onset
        return (learning_curve(s) * (0.5 if late else 1.0), 4.0 if late else 1.0, None)
    yield ("synth-pathological", train_trace("synth-pathological", 180, pathological, 4),
           {"onset_step": late_onset, "max_delay_steps": 8,
            "expected_states": ["PATHOLOGICAL_CONFIDENCE"],
            "description": "Mode collapse under large updates: entropy halves, grad norm x4."})

    # Slow memorization: entropy slides towards zero far slower than the
    # baseline's half-life, so only the absolute bounds can call it.
    def slide(s):
        return 3.0 * math.exp(-s / 110.0)
    crossing_low = next(s for s in range(2000) if slide(s) / LOG_V <= 0.1)
    crossing_floor = next(s for s in range(2000) if slide(s) / LOG_V <= 0.05)
    yield ("synth-slow-memorization", train_trace(
        "synth-slow-memorization", crossing_floor + 30,
        lambda s: (slide(s), math.exp(-s / 300.0), None), 5),
        {"onset_step": crossing_low, "max_delay_steps": crossing_floor - crossing_low + 10,
         "expected_states": ["COMFORT_ZONE"], "expected_patterns": ["ENTROPY_COLLAPSE"],
         "description": "Entropy decays slowly (time constant 110 steps) to near zero; the "
                        "onset is where its normalized value crosses 0.1."})

    def overload(s):
        return ((0.965 * LOG_V) if s >= onset else learning_curve(s), 1.3 if s >= onset else 1.0,
                None)
    rng = random.Random(6)
    lines = []
    for s in range(160):
        mean, scale, _ = overload(s)
        values = ([round(mean * (1 + rng.uniform(-0.02, 0.02)), 2) for _ in range(TOKENS)]
                  if s >= onset else token_values(rng, mean))
        lines.append(report("synth-overload", s, values=values, grad=grad_norm(rng, s, scale)))
    yield ("synth-overload", lines,
           {"onset_step": onset, "max_delay_steps": 15, "expected_patterns": ["ENTROPIC_OVERLOAD"],
            "description": "Corrupted data: every token near the uniform entropy log(V)."})

    rng = random.Random(7)
    lines = []
    for s in range(130):
        layers = attention(rng, LAYER_PROFILE)
        if s >= onset:
            layers[2]["headEntropy"][1] = 0.73
        lines.append(report("synth-attention-locking", s, values=token_values(rng, learning_curve(s)),
                            grad=grad_norm(rng, s), layers=layers))
    yield ("synth-attention-locking", lines,
           {"onset_step": onset, "max_delay_steps": 22, "expected_patterns": ["ATTENTION_LOCKING"],
            "description": "Layer 2 head 1 entropy frozen at 0.73 nats from the onset."})

    rng = random.Random(8)
    lines = []
    for s in range(130):
        layers = attention(rng, LAYER_PROFILE)
        if s >= onset:
            shared = rng.gauss(0, 0.02)
            layers[1]["headEntropy"] = [round(1.6 + shared + rng.gauss(0, 0.001), 3)
                                        for _ in range(4)]
        lines.append(report("synth-head-redundancy", s, values=token_values(rng, learning_curve(s)),
                            grad=grad_norm(rng, s), layers=layers))
    yield ("synth-head-redundancy", lines,
           {"onset_step": onset, "max_delay_steps": 25, "expected_patterns": ["HEAD_REDUNDANCY"],
            "description": "The four heads of layer 1 become identical (to 0.1%) from the onset."})

    rng = random.Random(9)
    lines = []
    for s in range(130):
        profile = [2.0] * 3 if s >= onset else LAYER_PROFILE
        lines.append(report("synth-flat-profile", s, values=token_values(rng, learning_curve(s)),
                            grad=grad_norm(rng, s), layers=attention(rng, profile, noise=0.002)))
    yield ("synth-flat-profile", lines,
           {"onset_step": onset, "max_delay_steps": 25, "expected_patterns": ["FLAT_LAYER_PROFILE"],
            "description": "Every layer's mean attention entropy becomes 2.0 nats (curse of "
                           "depth); heads within a layer still differ."})

    rng = random.Random(10)
    lines = []
    for s in range(130):
        layers = attention(rng, LAYER_PROFILE)
        if s >= onset:
            layers[2]["headEntropy"] = [round(abs(rng.gauss(0.01, 0.005)), 3) for _ in range(4)]
        lines.append(report("synth-attention-collapse", s,
                            values=token_values(rng, learning_curve(s)), grad=grad_norm(rng, s),
                            layers=layers))
    yield ("synth-attention-collapse", lines,
           {"onset_step": onset, "max_delay_steps": 5, "expected_patterns": ["ENTROPY_COLLAPSE"],
            "description": "Every head of layer 2 attends one-hot from the onset."})

    def drift_train(s):
        return (learning_curve(s) + (0.006 * (s - onset) if s >= onset else 0.0), 1.0, None)
    yield ("synth-drift-train", train_trace("synth-drift-train", 300, drift_train, 11),
           {"onset_step": onset, "max_delay_steps": 150, "expected_patterns": ["ENTROPY_DRIFT"],
            "description": "Training entropy rises by 0.006 nats per step from the onset (about "
                           "a thirtieth of the per-step noise): a trend, not a spike."})

    rng = random.Random(12)
    lines = []
    for s in range(300):
        mean = 2.5 - (0.006 * (s - onset) if s >= onset else 0.0)
        lines.append(report("synth-drift-eval", s, phase="EVAL", values=token_values(rng, mean)))
    yield ("synth-drift-eval", lines,
           {"onset_step": onset, "max_delay_steps": 150, "expected_patterns": ["ENTROPY_DRIFT"],
            "description": "Evaluation-only run whose entropy falls 0.006 nats per step from the "
                           "onset: on EVAL both directions count."})

    rng = random.Random(13)
    lines = []
    for s in range(160):
        spike = onset <= s < onset + 3
        prompt = token_values(rng, 2.5)[:4]
        generated = token_values(rng, 1.2 + (1.5 if spike else 0.0), spread=0.3)
        lines.append(report("synth-rollout-spike", s, phase="ROLLOUT", values=prompt + generated,
                            kinds=[PROMPT] * 4 + [GENERATED] * TOKENS,
                            grad=grad_norm(rng, s)))
    yield ("synth-rollout-spike", lines,
           {"onset_step": onset, "max_delay_steps": 2,
            "expected_patterns": ["GENERATED_ENTROPY_SPIKE"],
            "description": "RL rollouts whose generated-token entropy jumps 1.5 nats for 3 steps."})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests",
                                                      "data"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for name, lines, meta in scenarios():
        lines[-1]["final"] = True
        with open(os.path.join(args.out, name + ".jsonl"), "w") as f:
            for r in lines:
                f.write(json.dumps(r, separators=(",", ":")) + "\n")
        sidecar = {"run_id": name, "source": "generated by scripts/make_synthetic_traces.py",
                   "warmup_steps": WARMUP}
        sidecar.update(meta)
        with open(os.path.join(args.out, name + ".meta.json"), "w") as f:
            json.dump(sidecar, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
