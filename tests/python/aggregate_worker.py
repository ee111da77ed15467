"""One rank of a 4-process gloo job logging the same deterministic values with
or without in-job aggregation (Monitor(..., aggregate=group)).

Run by test_aggregate.py with RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT set;
argv: grpc address, run id, steps, "aggregate" or "per-rank", output JSON path.
"""

import datetime
import json
import sys

import numpy as np
import torch
import torch.distributed as dist

import entrowatch

VOCAB = 96
ENTROPY_VOCAB = 50


def log_step(mon, rank, step):
    rng = np.random.default_rng(1000 * step + rank)
    # Entropies move with the step (sharper logits later), differently per rank.
    scale = 0.5 + 0.25 * step + 0.5 * rank
    logits = torch.from_numpy(rng.normal(0, scale, (2, 6, VOCAB)).astype(np.float32))
    logits[..., 90:] = -float("inf")  # padded columns
    targets = torch.from_numpy(rng.integers(0, 90, (2, 6)))
    targets[0, 0] = -100  # ignore_index: not a token
    kinds = torch.full((2, 6), entrowatch.PROMPT)
    kinds[1] = entrowatch.GENERATED
    mon.log_logits(step, logits.bfloat16() if rank % 2 else logits, rows=None, valid_vocab=90,
                   temperature=0.9, targets=targets, token_kinds=kinds)
    mon.log_token_entropies(step, rng.uniform(0, np.log(ENTROPY_VOCAB), 5).astype(np.float32),
                            vocab_size=ENTROPY_VOCAB)
    q = torch.from_numpy(rng.normal(0, 1, (4, 5, 8)).astype(np.float32))
    k = torch.from_numpy(rng.normal(0, 1 + 0.1 * step, (2, 7, 8)).astype(np.float32))
    mon.log_attention(step, 0, q, k, causal=True)
    mon.log_attention_entropies(step, 2, rng.uniform(0.5, 2.0, 3).astype(np.float32))
    mon.log_grad_norm(step, 1.0 + 0.05 * step + 0.01 * rank)
    mon.log_scalars(step, loss=torch.tensor(3.0 - 0.1 * step + 0.02 * rank), lr=1e-3,
                    reward=0.1 * rank + 0.01 * step)


def main(address, run_id, steps, mode, out_path):
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    rank = dist.get_rank()
    aggregate = dist.group.WORLD if mode == "aggregate" else None
    mon = entrowatch.Monitor(address, run_id=run_id, aggregate=aggregate)
    local_s, collectives_s = [], []
    if aggregate is not None:
        combine = mon._combine

        def timed(report):
            out = combine(report)
            local_s.append(mon._aggregator.last_local_s)
            collectives_s.append(mon._aggregator.last_collectives_s)
            return out

        mon._combine = timed
    for step in range(steps):
        log_step(mon, rank, step)
    ok = mon.flush(60)
    dist.barrier()
    ok = mon.close(finish=rank == 0) and ok
    dist.destroy_process_group()
    with open(out_path, "w") as f:
        json.dump({"rank": rank, "stats": vars(mon.stats), "dropped": vars(mon.dropped),
                   "local_s": local_s, "collectives_s": collectives_s},
                  f)
    return 0 if ok and mon.stats.rejected == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]))
