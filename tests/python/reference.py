"""Float64 references for what the daemon computes."""

import numpy as np


def token_entropy(logits, temperature=1.0, valid_vocab=None):
    z = np.asarray(logits, dtype=np.float64)[:, :valid_vocab] / temperature
    m = z.max(axis=1, keepdims=True)
    e = np.exp(z - m)
    d = e.sum(axis=1, keepdims=True)
    p = e / d
    # p = 0 where z = -inf (masked): those terms are 0, not nan.
    with np.errstate(invalid="ignore"):
        pz = np.where(p > 0, p * z, 0.0)
    return (np.log(d) + m).ravel() - pz.sum(axis=1)


def attention_entropy(q, k, causal=True):
    """[heads, nq] Shannon entropies; queries are the last nq key positions."""
    q = np.asarray(q, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    heads, nq, d = q.shape
    kv_heads, nk, _ = k.shape
    group = heads // kv_heads
    out = np.empty((heads, nq))
    for h in range(heads):
        s = q[h] @ k[h // group].T / np.sqrt(d)
        if causal:
            pos = np.arange(nk - nq, nk)[:, None]
            s = np.where(np.arange(nk)[None, :] <= pos, s, -np.inf)
        out[h] = token_entropy(s)
    return out


def bf16_round(x):
    """Values as bfloat16 holds them (round to nearest even), as float32."""
    bits = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return (bits.astype(np.uint32) << 16).view(np.float32)
