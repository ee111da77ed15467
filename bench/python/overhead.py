#!/usr/bin/python3
"""Overhead of entrowatch monitoring on a training loop, and enqueue latency.

Trains examples/train_tiny_lm.py's model on CPU, alternating blocks of steps
with monitoring on (Monitor + entrowatch.torch.watch at default settings:
logits rows, attention Q/K of every layer, grad norm, loss and lr every step)
and off (hooks removed), in the same process, so machine noise hits both
alike. Reports the median per-step time of each mode, the median over block
pairs of monitored / unmonitored, and the latency distribution of every
monitoring call made on the training thread. A second phase times the log
calls alone (a new step per iteration, so each iteration also hands a report
to the sender), paced at --enqueue-interval-ms so the sender keeps up: the
client's own enqueue cost without the training step around it.

The back-to-back phase calls every log call once per step, 300 steps in a row
with nothing in between, for logits of 16 x 2000 fp32 and 32 x 152064 bf16
(all rows sent), so the sender thread encodes and sends while the caller goes
on. Its anchor is a plain copy (tensor.clone()) of the same logits, timed in
blocks of the same length interleaved with the monitored blocks, after the
sender drained, and a control: the same calls on a Monitor whose queue holds
nothing, so that its sender never works (what the calls cost on this machine
without a sender). Rounds alternate the three kinds of blocks; the table pools
every round.

    /usr/bin/python3 bench/python/overhead.py --daemon build/src/daemon/entrowatchd
    /usr/bin/python3 bench/python/overhead.py --address 127.0.0.1:50551
    /usr/bin/python3 bench/python/overhead.py --daemon ... --phases back-to-back

The entrowatch package must be importable (installed, or PYTHONPATH with
generated stubs).
"""

import argparse
import collections
import datetime
import json
import math
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

import entrowatch
import entrowatch.torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples"))
import train_tiny_lm as lm  # noqa: E402


def start_daemon(binary, workdir):
    config = os.path.join(workdir, "entrowatch.yaml")
    ready = os.path.join(workdir, "ready.json")
    with open(config, "w") as f:
        f.write('grpc: {listen: "127.0.0.1:0"}\nmetrics: {listen: "127.0.0.1:0"}\n')
    log = open(os.path.join(workdir, "entrowatchd.log"), "wb")
    proc = subprocess.Popen([binary, "--config", config, "--ready-file", ready], stdout=log,
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"entrowatchd exited with {proc.returncode}")
        try:
            with open(ready) as f:
                return proc, json.load(f)["grpc_address"]
        except (OSError, ValueError):
            time.sleep(0.02)
    proc.kill()
    raise SystemExit("entrowatchd did not become ready")


LOG_CALLS = ("log_logits", "log_token_entropies", "log_attention", "log_attention_entropies",
             "log_grad_norm", "log_scalars", "log_metrics")
BACK_TO_BACK_SIZES = (("16x2000 fp32", (16, 2000), torch.float32),
                      ("32x152064 bf16", (32, 152064), torch.bfloat16))


class TimedCalls:
    """Wraps a Monitor's log_* methods to record each call's latency."""

    def __init__(self, mon):
        self.latency = collections.defaultdict(list)
        for name in LOG_CALLS:
            setattr(mon, name, self._wrap(name, getattr(mon, name)))

    def _wrap(self, name, fn):
        def timed(*args, **kwargs):
            t0 = time.perf_counter_ns()
            fn(*args, **kwargs)
            self.latency[name].append(time.perf_counter_ns() - t0)
        return timed


def latency_table(latency_ns):
    return {name: {"calls": len(v), "p50": percentile(v, 0.5) / 1e3,
                   "p99": percentile(v, 0.99) / 1e3, "max": max(v) / 1e3}
            for name, v in sorted(latency_ns.items())}


def print_latency(title, table):
    print(title)
    print(f"    {'call':16s} {'calls':>6s} {'p50':>8s} {'p99':>8s} {'max':>9s}")
    for name, l in table.items():
        print(f"    {name:16s} {l['calls']:6d} {l['p50']:8.1f} {l['p99']:8.1f} {l['max']:9.1f}")


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def back_to_back(address, rounds, steps):
    """Per size: latency of every log call made back to back, and of a plain copy."""
    results = {}
    gen = torch.Generator().manual_seed(1)
    for label, shape, dtype in BACK_TO_BACK_SIZES:
        logits = (3 * torch.randn(shape, generator=gen)).to(dtype)
        rows, vocab = shape
        entropies = torch.rand(rows, generator=gen) * math.log(vocab)
        q = torch.randn(4, 16, 32, generator=gen)
        k = torch.randn(2, 16, 32, generator=gen)
        heads = torch.rand(4, generator=gen)
        mon = entrowatch.Monitor(address, run_id=f"bench-b2b-{rows}x{vocab}-{os.getpid()}",
                                 rank=0, world_size=1)
        # Control: the same calls with a queue that holds nothing, so its sender
        # never works: what the calls cost on this machine without a sender.
        idle = entrowatch.Monitor(address, run_id=f"bench-b2b-idle-{os.getpid()}", rank=0,
                                  world_size=1, max_queue_reports=0)
        timed, timed_idle = TimedCalls(mon), TimedCalls(idle)
        copy_ns = []
        step = 0

        def block(m):
            nonlocal step
            for _ in range(steps):
                m.log_logits(step, logits)
                m.log_token_entropies(step, entropies, vocab_size=vocab)
                m.log_attention(step, 0, q, k)
                m.log_attention_entropies(step, 1, heads)
                m.log_grad_norm(step, 1.5)
                m.log_scalars(step, loss=2.0, lr=3e-4)
                m.log_metrics(step, {"reward": 0.5, "actor/kl_loss": 0.01})
                step += 1

        for _ in range(rounds):
            mon.flush(120)
            block(mon)
            mon.flush(120)
            for _ in range(steps):
                t0 = time.perf_counter_ns()
                copy = logits.clone()
                copy_ns.append(time.perf_counter_ns() - t0)
                del copy
            block(idle)
        all_acked = mon.flush(120)
        table = latency_table(timed.latency)
        table["plain copy (anchor)"] = latency_table({"copy": copy_ns})["copy"]
        results[label] = {"latency_us": table, "all_acknowledged": all_acked,
                          "client_stats": vars(mon.stats).copy(),
                          "latency_us_sender_idle": latency_table(timed_idle.latency)}
        mon.close()
        idle.close()
    return results


def print_back_to_back(results, rounds, steps):
    print(f"  back to back: {rounds} rounds x {steps} steps, every log call once per step "
          f"(us; anchor: clone of the same logits, in interleaved blocks)")
    for label, r in results.items():
        table = r["latency_us"]
        anchor = table["plain copy (anchor)"]
        print(f"  logits {label}: reports acked {r['client_stats']['acked']}, dropped "
              f"{r['client_stats']['dropped_queue_full']}")
        print(f"    {'call':38s} {'calls':>6s} {'p50':>9s} {'p99':>9s} {'max':>10s} "
              f"{'p50/anchor':>10s} {'p99/anchor':>10s}")
        rows = list(table.items())
        rows += [(f"{name} (sender idle)", l) for name, l in r["latency_us_sender_idle"].items()]
        for name, l in rows:
            print(f"    {name:38s} {l['calls']:6d} {l['p50']:9.1f} {l['p99']:9.1f} {l['max']:10.1f} "
                  f"{l['p50'] / anchor['p50']:10.2f} {l['p99'] / anchor['p99']:10.2f}")


def loop_phase(address, args):
    """The training loop with monitoring on and off, then the paced enqueue latency."""
    gen = torch.Generator().manual_seed(0)
    model = lm.TinyLM()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    data = lm.batches(lm.load_text(2_000_000), 12, 64, False, gen)
    mon = entrowatch.Monitor(address, run_id=f"bench-overhead-{os.getpid()}", rank=0, world_size=1)
    timed = TimedCalls(mon)
    step = 0

    def run(steps, monitored):
        nonlocal step
        watch = None
        if monitored:
            watch = entrowatch.torch.watch(model, mon, lm_head=model.head,
                                           attention_modules=[b.attn for b in model.blocks])
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            x, y = next(data)
            if watch is not None:
                watch.step = step
            logits = model(x)
            loss = F.cross_entropy(logits.reshape(-1, lm.VOCAB), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if watch is not None:
                watch.log_grad_norm()
                mon.log_scalars(step, loss=loss.detach(), lr=3e-3)
            opt.step()
            times.append(time.perf_counter() - t0)
            step += 1
        if watch is not None:
            watch.remove()
        return times

    run(args.warmup_steps, True)
    run(args.warmup_steps, False)
    timed.latency.clear()
    per_mode = {True: [], False: []}
    ratios = []
    for _ in range(args.blocks):
        order = [True, False]
        random.shuffle(order)
        medians = {}
        for monitored in order:
            times = run(args.steps_per_block, monitored)
            per_mode[monitored].extend(times)
            medians[monitored] = statistics.median(times)
        ratios.append(medians[True] / medians[False])
    flushed = mon.flush(30)
    loop_latency = dict(timed.latency)

    timed.latency.clear()
    logits = torch.randn(12, 64, lm.VOCAB)
    for i in range(args.enqueue_iterations):
        mon.log_logits(step + i, logits)
        mon.log_scalars(step + i, loss=2.0, lr=3e-3)
        time.sleep(args.enqueue_interval_ms / 1000)
    flushed = mon.flush(30) and flushed
    enqueue_latency = dict(timed.latency)
    stats = vars(mon.stats).copy()
    mon.close()
    return {
        "steps_per_mode": len(per_mode[True]),
        "step_ms_monitored": 1000 * statistics.median(per_mode[True]),
        "step_ms_unmonitored": 1000 * statistics.median(per_mode[False]),
        "ratio_median_of_block_pairs": statistics.median(ratios),
        "ratio_block_pairs_p10_p90": [percentile(ratios, 0.1), percentile(ratios, 0.9)],
        "training_loop_latency_us": latency_table(loop_latency),
        "enqueue_latency_us": latency_table(enqueue_latency),
        "all_acknowledged": flushed,
        "client_stats": stats,
    }


def print_loop(result, args):
    print(f"  {args.blocks} interleaved block pairs x {args.steps_per_block} steps")
    print(f"  median step   unmonitored {result['step_ms_unmonitored']:8.2f} ms   "
          f"monitored {result['step_ms_monitored']:8.2f} ms")
    lo, hi = result["ratio_block_pairs_p10_p90"]
    print(f"  monitored / unmonitored: median {result['ratio_median_of_block_pairs']:.4f} "
          f"(block pairs p10 {lo:.4f}, p90 {hi:.4f})")
    print_latency("  latency of each monitoring call inside the training loop (us; log_grad_norm "
                  "computes the norm):", result["training_loop_latency_us"])
    print_latency(f"  enqueue latency, log calls alone, one step every {args.enqueue_interval_ms} ms "
                  f"(us; log_logits samples {12 * 64}x{lm.VOCAB} fp32 to 32 rows):",
                  result["enqueue_latency_us"])
    stats = result["client_stats"]
    print(f"  reports acked {stats['acked']}, dropped {stats['dropped_queue_full']}, "
          f"rejected {stats['rejected']}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--daemon", default=os.environ.get("ENTROWATCH_DAEMON"),
                   help="entrowatchd binary to start on free ports")
    p.add_argument("--address", help="address of a running entrowatchd instead")
    p.add_argument("--blocks", type=int, default=40, help="block pairs (monitored + unmonitored)")
    p.add_argument("--steps-per-block", type=int, default=3)
    p.add_argument("--warmup-steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--enqueue-iterations", type=int, default=3000)
    p.add_argument("--enqueue-interval-ms", type=float, default=2.0)
    p.add_argument("--phases", default="loop,back-to-back",
                   help="comma-separated: loop (training loop and enqueue), back-to-back")
    p.add_argument("--rounds", type=int, default=5, help="back-to-back rounds")
    p.add_argument("--steps", type=int, default=300, help="back-to-back steps per block")
    p.add_argument("--json", help="write the results here as JSON")
    args = p.parse_args()
    phases = set(args.phases.split(","))
    if not args.address and not args.daemon:
        raise SystemExit("give --daemon BIN or --address HOST:PORT")

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    proc = None
    if args.address:
        address = args.address
    else:
        proc, address = start_daemon(args.daemon, tempfile.mkdtemp(prefix="entrowatch-bench-"))
    result = {
        "date_utc": datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"torch {torch.__version__}, {args.threads} torch thread(s)",
        "load_average_1m": os.getloadavg()[0],
    }
    try:
        if "loop" in phases:
            result["loop"] = loop_phase(address, args)
        if "back-to-back" in phases:
            result["back_to_back"] = back_to_back(address, args.rounds, args.steps)
    finally:
        if proc is not None:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(15)
    result["load_average_1m_after"] = os.getloadavg()[0]

    print(f"entrowatch Python client overhead ({result['date_utc']} UTC, {result['machine']}, "
          f"load average {result['load_average_1m']:.1f} .. {result['load_average_1m_after']:.1f})")
    if "loop" in result:
        print_loop(result["loop"], args)
    if "back_to_back" in result:
        print_back_to_back(result["back_to_back"], args.rounds, args.steps)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
