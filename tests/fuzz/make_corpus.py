"""Writes the seed corpus of report_fuzzer: small serialized Reports, valid
ones covering every block kind and dtype, and invalid ones breaking one
validation rule each, plus bytes that are not a Report at all.

usage: /usr/bin/python3 tests/fuzz/make_corpus.py   (rewrites tests/fuzz/corpus/)
Needs protoc and Debian's python3-protobuf."""

import os
import random
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus")


def load_proto_module(tmp):
    subprocess.run(["protoc", "-I", os.path.join(ROOT, "proto"), f"--python_out={tmp}",
                    "entrowatch/v1/entrowatch.proto"], check=True)
    sys.path.insert(0, tmp)
    from entrowatch.v1 import entrowatch_pb2  # noqa: E402 (generated just above)
    return entrowatch_pb2


def f32(values):
    return struct.pack(f"<{len(values)}f", *values)


def f16(values):
    return struct.pack(f"<{len(values)}e", *values)


def bf16(values):
    return b"".join(struct.pack("<I", struct.unpack("<I", struct.pack("<f", v))[0])[2:]
                    for v in values)


def tensor(pb, dtype, shape, data):
    t = pb.Tensor(dtype=dtype, shape=shape, data=data)
    return t


def base(pb, **fields):
    r = pb.Report(run_id="fuzz-run", rank=0, world_size=2, step=7, seq=8, phase=pb.TRAIN)
    for key, value in fields.items():
        setattr(r, key, value)
    return r


def reports(pb):
    rng = random.Random(7)
    out = {}

    r = base(pb)
    r.grad.global_norm = 0.5
    r.grad.layer_norms["layers.0"] = 0.25
    r.scalars.loss = 2.3
    r.scalars.learning_rate = 3e-4
    out["valid_scalars"] = r

    r = base(pb)
    r.token_entropies.add(values=[0.1, 2.0, 3.3], vocab_size=50257,
                          token_kinds=[pb.PROMPT, pb.GENERATED, pb.GENERATED])
    out["valid_token_entropies"] = r

    r = base(pb)
    rows, vocab = 4, 16
    r.logits.add(logits=tensor(pb, pb.FLOAT32, [rows, vocab],
                               f32([rng.gauss(0, 3) for _ in range(rows * vocab)])),
                 target_ids=[1, 2, 3, 15], token_kinds=[pb.PROMPT] * 2 + [pb.GENERATED] * 2)
    out["valid_logits_f32"] = r

    r = base(pb, phase=pb.ROLLOUT)
    rows, vocab = 3, 32
    block = r.logits.add(logits=tensor(pb, pb.BFLOAT16, [rows, vocab],
                                       bf16([rng.gauss(0, 2) for _ in range(rows * vocab)])),
                         valid_vocab=30, temperature=0.7)
    block.sampling.top_k = 5
    block.sampling.top_p = 0.9
    out["valid_logits_bf16_sampling"] = r

    # Adversarial rows: one-hot by a huge logit, -inf padding, uniform.
    r = base(pb)
    inf = float("inf")
    values = [60000.0] + [0.0] * 7 + [-inf] * 4 + [1.0] * 4 + [-inf] * 4 + [2.0] * 8
    r.logits.add(logits=tensor(pb, pb.FLOAT16, [3, 8], f16(values)))
    out["valid_logits_f16_adversarial"] = r

    r = base(pb)
    heads, kv_heads, nq, nk, d = 2, 1, 3, 5, 4
    r.attention.add(layer=3,
                    q=tensor(pb, pb.FLOAT32, [heads, nq, d],
                             f32([rng.gauss(0, 1) for _ in range(heads * nq * d)])),
                    k=tensor(pb, pb.FLOAT32, [kv_heads, nk, d],
                             f32([rng.gauss(0, 1) for _ in range(kv_heads * nk * d)])),
                    causal=True, query_kinds=[pb.PROMPT, pb.GENERATED, pb.GENERATED])
    r.attention_entropies.add(layer=1, head_entropy=[1.5, 0.2])
    out["valid_attention"] = r

    r = base(pb)
    r.logits.add(logits=tensor(pb, pb.FLOAT32, [2, 4],
                               f32([0.0, float("nan"), 1.0, 2.0, 0.0, 0.0, 0.0, 0.0])))
    out["logits_nan_row"] = r

    r = base(pb, run_id="bad run id!")
    out["invalid_run_id"] = r

    r = base(pb, rank=5)
    out["invalid_rank"] = r

    r = base(pb)
    r.logits.add(logits=tensor(pb, pb.FLOAT32, [2, 4], f32([0.0] * 7)))
    out["invalid_data_length"] = r

    r = base(pb)
    r.logits.add(logits=tensor(pb, pb.FLOAT32, [1, 4], f32([0.0] * 4)), target_ids=[4])
    out["invalid_target_id"] = r

    r = base(pb)
    r.logits.add(logits=tensor(pb, pb.FLOAT32, [1, 4], f32([0.0] * 4)), temperature=-1.0)
    out["invalid_temperature"] = r

    r = base(pb)
    r.logits.add(logits=tensor(pb, pb.BFLOAT16, [2**40, 2**40], b""))
    out["invalid_shape_overflow"] = r

    r = base(pb)
    r.attention.add(layer=0, q=tensor(pb, pb.FLOAT32, [3, 1, 2], f32([0.0] * 6)),
                    k=tensor(pb, pb.FLOAT32, [2, 1, 2], f32([0.0] * 4)))
    out["invalid_gqa_heads"] = r

    r = base(pb)
    r.token_entropies.add(values=[1.0], vocab_size=0)
    out["invalid_vocab_size"] = r

    return out


def main():
    with tempfile.TemporaryDirectory() as tmp:
        pb = load_proto_module(tmp)
        os.makedirs(CORPUS, exist_ok=True)
        for name in os.listdir(CORPUS):
            os.remove(os.path.join(CORPUS, name))
        for name, report in sorted(reports(pb).items()):
            with open(os.path.join(CORPUS, name + ".pb"), "wb") as f:
                f.write(report.SerializeToString())
        valid = reports(pb)["valid_logits_f32"].SerializeToString()
        with open(os.path.join(CORPUS, "truncated.pb"), "wb") as f:
            f.write(valid[: len(valid) // 2])
    print(f"wrote {len(os.listdir(CORPUS))} files to {CORPUS}")


if __name__ == "__main__":
    main()
