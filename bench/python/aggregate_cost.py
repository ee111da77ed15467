#!/usr/bin/python3
"""Cost per step of in-job aggregation (Monitor(..., aggregate=group)) over gloo.

Spawns --world processes (gloo, 127.0.0.1). Every step each rank summarizes a
step like a monitored LLM step (logits rows of --rows x --vocab bf16 with
targets, head entropies of --layers layers x --heads heads, grad norm, loss,
one named scalar), then, after a barrier, runs the step's two collectives
(entrowatch's Aggregator, no daemon involved). Anchors measured in the same processes, in
the same steps: a bare all_reduce of one float64 (the group's latency floor)
and a bare all_reduce of as many float64 as the step's reduce vector.

    /usr/bin/python3 bench/python/aggregate_cost.py --world 4 --steps 50

The entrowatch package must be importable (installed, or PYTHONPATH with
generated stubs).
"""

import argparse
import datetime
import os
import platform
import socket
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from entrowatch import _aggregate, _report


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def step_report(rng, step, args):
    report = _report.StepReport(step, 0)
    rows = torch.from_numpy(rng.normal(0, 3, (args.rows, args.vocab)).astype(np.float32))
    targets = rng.integers(0, args.vocab, args.rows)
    report.logits.append(_report.LogitsItem(rows.bfloat16(), args.vocab, 1.0, targets, None))
    for layer in range(args.layers):
        report.attention_entropies.append(
            (layer, rng.uniform(0.5, 3.0, args.heads).astype(np.float32)))
    report.grad_norm = 1.0 + 0.01 * step
    report.loss = 2.0
    report.named_scalars = {"reward": 0.5}
    return report


def worker(rank, args, port, queue):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=args.world,
                            timeout=datetime.timedelta(seconds=120))
    agg = _aggregate.Aggregator(dist.group.WORLD, rank, 0.8)
    rng = np.random.default_rng(rank)
    times = {"local summary": [], "all_gather + all_reduce": [], "anchor: all_reduce 1 float64": [],
             "anchor: all_reduce N float64": []}
    n = 0
    for step in range(args.warmup + args.steps):
        report = step_report(rng, step, args)
        dist.barrier()
        summary = agg.summarize(report, True, _report.Dropped())
        dist.barrier()  # the collectives alone, not the wait for the slowest rank's summary
        agg.exchange(*summary)
        local, collectives = agg.last_local_s, agg.last_collectives_s
        n = summary[1].size
        one, many = torch.zeros(1, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
        dist.barrier()
        t0 = time.perf_counter()
        dist.all_reduce(one)
        t1 = time.perf_counter()
        dist.all_reduce(many)
        t2 = time.perf_counter()
        if step >= args.warmup:
            times["local summary"].append(local)
            times["all_gather + all_reduce"].append(collectives)
            times["anchor: all_reduce 1 float64"].append(t1 - t0)
            times["anchor: all_reduce N float64"].append(t2 - t1)
    dist.destroy_process_group()
    queue.put((rank, n, times))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", type=int, default=4)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rows", type=int, default=32)
    p.add_argument("--vocab", type=int, default=152064)
    p.add_argument("--layers", type=int, default=28)
    p.add_argument("--heads", type=int, default=28)
    args = p.parse_args()
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=worker, args=(r, args, port, queue)) for r in range(args.world)]
    for proc in procs:
        proc.start()
    results = sorted(queue.get(timeout=600) for _ in procs)
    for proc in procs:
        proc.join(60)
    n = results[0][1]
    print(f"in-job aggregation over gloo ({datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC, "
          f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, load average "
          f"{os.getloadavg()[0]:.1f})")
    print(f"  {args.world} processes, {args.steps} steps; per rank per step: logits "
          f"{args.rows}x{args.vocab} bf16, {args.layers} layers x {args.heads} heads, grad norm, "
          f"loss, 1 named scalar; reduce vector {n} float64, all_gather "
          f"{_aggregate.HEADER_SLOTS} float64 per rank")
    print(f"    {'ms per step, median over steps and ranks':44s} {'p50':>8s} {'p90':>8s}")
    for name in results[0][2]:
        values = np.concatenate([r[2][name] for r in results]) * 1e3
        print(f"    {name:44s} {np.percentile(values, 50):8.3f} {np.percentile(values, 90):8.3f}")


if __name__ == "__main__":
    main()
