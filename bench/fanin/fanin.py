#!/usr/bin/python3
"""Fan-in benchmark: a simulated job of R ranks sending every step either
per-rank reports (R raw reports: token entropies, grad norm, loss) or one
job-level aggregate (ReportSummary: merged entropy histogram, every rank's
figures). Measures, at the real entrowatchd and at the do-nothing gRPC sink
(entrowatch_null_sink, the anchor) with the same payloads: reports per step,
bytes per step, server CPU seconds per step (utime + stime from
/proc/PID/stat), and extrapolates the largest job one daemon can follow at one
step per second.

usage: /usr/bin/python3 bench/fanin/fanin.py [--build BUILD] [--ranks 1024]
           [--tokens 256] [--steps 12] [--warmup 3] [--streams 32]
           [--aggregate-ranks 1024,16384] [--aggregate-steps 200]

CPU time comes in clock ticks (10 ms): the aggregate, a few ms per step, is
measured over --aggregate-steps steps to resolve it.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINS = 2048  # EntropySummary.histogram bins (protocol version 1)
VOCAB = 152064
THRESHOLD = 0.8  # the daemon's default aggregation.high_entropy_threshold
TICKS = os.sysconf("SC_CLK_TCK")


def load_pb(work):
    out = os.path.join(work, "py")
    os.makedirs(out)
    subprocess.run(["protoc", "-I", os.path.join(ROOT, "proto"), "-I", "/usr/include",
                    "--python_out", out,
                    os.path.join(ROOT, "proto/entrowatch/v1/entrowatch.proto")], check=True)
    sys.path.insert(0, out)
    from entrowatch.v1 import entrowatch_pb2
    return entrowatch_pb2


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def start_server(argv, ready, work, name):
    log = open(os.path.join(work, name + ".log"), "w")
    proc = subprocess.Popen(argv + ["--ready-file", ready], stderr=log)
    for _ in range(600):
        if os.path.exists(ready) and os.path.getsize(ready) > 0:
            with open(ready) as f:
                info = json.load(f)
            return proc, info["grpc_address"]
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited early, see {log.name}")
        time.sleep(0.05)
    raise RuntimeError(f"{name}: no ready file")


def rank_entropies(rng, ranks, tokens):
    """Token entropies (nats) of every rank for one step: a skewed mix in [0, ln V]."""
    h = rng.gamma(2.0, 0.9, size=(ranks, tokens)) + rng.uniform(0, 0.2, size=(ranks, 1))
    return np.minimum(h, np.log(VOCAB)).astype(np.float32)


def per_rank_reports(pb, run, step, h, grad_norm, losses):
    out = []
    for rank in range(h.shape[0]):
        r = pb.Report(run_id=run, rank=rank, world_size=h.shape[0], step=step, seq=step + 1,
                      phase=pb.TRAIN)
        r.token_entropies.add(values=h[rank].tolist(), vocab_size=VOCAB)
        r.grad.global_norm = grad_norm
        r.scalars.loss = float(losses[rank])
        r.scalars.learning_rate = 3e-4
        out.append(r.SerializeToString())
    return out


def summarize(pb, h, ranks):
    """What the job computes in-job (per rank, then merged by one all-reduce)."""
    log_v = np.log(VOCAB)
    flat = h.astype(np.float64).ravel()
    bins = np.minimum(np.floor(flat / log_v * BINS), BINS - 1).astype(np.int64)
    s = pb.EntropySummary(vocab_size=VOCAB, count=flat.size, sum=float(flat.sum()),
                          sum_squares=float((flat * flat).sum()), min=float(flat.min()),
                          max=float(flat.max()), high_entropy_threshold=THRESHOLD,
                          high_entropy_count=int(
                              (np.minimum(1.0, flat / log_v).astype(np.float32)
                               >= THRESHOLD).sum()))
    s.histogram.extend(np.bincount(bins, minlength=BINS).tolist())
    # Scale to `ranks` ranks (the histogram of R identical copies).
    factor = ranks // h.shape[0]
    if factor > 1:
        s.count *= factor
        s.sum *= factor
        s.sum_squares *= factor
        s.high_entropy_count *= factor
        hist = [c * factor for c in s.histogram]
        del s.histogram[:]
        s.histogram.extend(hist)
    return s


def aggregate_report(pb, run, step, h, grad_norm, losses, ranks):
    r = pb.Report(run_id=run, rank=0, world_size=ranks, step=step, seq=step + 1, phase=pb.TRAIN)
    r.summary.entropy.append(summarize(pb, h, ranks))
    tokens = h.shape[1]
    means = h.astype(np.float64).mean(axis=1)
    for rank in range(ranks):
        r.summary.ranks.add(rank=rank, token_count=tokens, entropy_mean=float(means[rank % h.shape[0]]),
                            has_grad_norm=True, grad_norm=grad_norm, has_loss=True,
                            loss=float(losses[rank % h.shape[0]]))
    r.scalars.learning_rate = 3e-4
    return r.SerializeToString()


def drive(grpc, pb, address, pid, steps_payloads, warmup, streams):
    """Sends each step's reports over `streams` bidi streams (each its share
    of the ranks, in order), waits for every Ack of a step before the next,
    and returns (CPU seconds, wall seconds, acks not OK) over the steps after
    `warmup`."""
    channel = grpc.insecure_channel(address, options=[
        ("grpc.max_send_message_length", 256 << 20),
        ("grpc.max_receive_message_length", 256 << 20)])
    call = channel.stream_stream("/entrowatch.v1.Monitor/Stream",
                                 request_serializer=lambda b: b,
                                 response_deserializer=pb.Ack.FromString)
    n = min(streams, len(steps_payloads[0]))
    queues = [[] for _ in range(n)]
    conds = [threading.Condition() for _ in range(n)]
    done = threading.Semaphore(0)
    bad = [0]

    def requests(i):
        while True:
            with conds[i]:
                while not queues[i]:
                    conds[i].wait()
                item = queues[i].pop(0)
            if item is None:
                return
            yield item

    def reader(i):
        for ack in call(requests(i)):
            if ack.code != 0:
                bad[0] += 1
            done.release()

    threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    start_cpu = start_wall = None
    for k, payloads in enumerate(steps_payloads):
        if k == warmup:
            start_cpu, start_wall = cpu_seconds(pid), time.monotonic()
        for j, p in enumerate(payloads):
            with conds[j % n]:
                queues[j % n].append(p)
                conds[j % n].notify()
        for _ in payloads:
            if not done.acquire(timeout=300):
                raise RuntimeError("no Ack within 300 s")
    cpu, wall = cpu_seconds(pid) - start_cpu, time.monotonic() - start_wall
    for i in range(n):
        with conds[i]:
            queues[i].append(None)
            conds[i].notify()
    for t in threads:
        t.join(timeout=30)
    channel.close()
    return cpu, wall, bad[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--ranks", type=int, default=1024)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--streams", type=int, default=32)
    ap.add_argument("--aggregate-ranks", default="1024,16384",
                    help="job sizes the aggregate is measured at (fit of CPU = a + b * ranks)")
    ap.add_argument("--aggregate-steps", type=int, default=200)
    args = ap.parse_args()
    import grpc

    work = tempfile.mkdtemp(prefix="entrowatch_fanin.")
    pb = load_pb(work)
    procs = []
    try:
        config = os.path.join(work, "daemon.yaml")
        with open(config, "w") as f:
            f.write('grpc: {listen: "127.0.0.1:0"}\nmetrics: {listen: "127.0.0.1:0"}\n'
                    "runs: {max_runs: 4096}\nlog: {level: warn}\n")
        daemon, daemon_addr = start_server(
            [os.path.join(args.build, "src/daemon/entrowatchd"), "--config", config],
            os.path.join(work, "daemon.ready"), work, "daemon")
        procs.append(daemon)
        sink, sink_addr = start_server(
            [os.path.join(args.build, "bench/load/entrowatch_null_sink"), "--max-seconds", "3600"],
            os.path.join(work, "sink.ready"), work, "sink")
        procs.append(sink)

        rng = np.random.default_rng(7)
        total = args.warmup + args.steps
        data = [(rank_entropies(rng, args.ranks, args.tokens), 1.0 + 0.01 * k,
                 2.5 - 0.001 * k + rng.normal(0, 0.01, args.ranks)) for k in range(total)]
        t0 = time.process_time()
        summarize(pb, data[0][0], args.ranks)
        summarize_cpu = time.process_time() - t0

        cases = [("per-rank", args.ranks, args.steps,
                  lambda run: [per_rank_reports(pb, run, k, *data[k]) for k in range(total)])]
        agg_total = args.warmup + args.aggregate_steps
        for ranks in [int(x) for x in args.aggregate_ranks.split(",")]:
            cases.append(("aggregated", ranks, args.aggregate_steps,
                          lambda run, ranks=ranks: [
                              [aggregate_report(pb, run, k, *data[k % total], ranks)]
                              for k in range(agg_total)]))
        rows = []
        for mode, ranks, steps, build in cases:
            row = {"mode": mode, "ranks": ranks}
            for server, addr, pid in (("sink", sink_addr, sink.pid), ("daemon", daemon_addr, daemon.pid)):
                payloads = build(f"fanin-{mode}-{ranks}-{server}")
                cpu, wall, bad = drive(grpc, pb, addr, pid, payloads, args.warmup, args.streams)
                if bad:
                    raise RuntimeError(f"{mode} {server}: {bad} Acks not OK, see {work}/daemon.log")
                row["reports"] = len(payloads[0])
                row["bytes"] = sum(len(p) for p in payloads[0])
                row[server + "_cpu"] = cpu / steps
                row[server + "_wall"] = wall / steps
            rows.append(row)

        print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
        model = subprocess.run("lscpu | sed -n 's/^Model name: *//p' | head -1", shell=True,
                               capture_output=True, text=True).stdout.strip()
        with open("/proc/loadavg") as f:
            load = " ".join(f.read().split()[:3])
        cores = os.cpu_count()
        print(f"machine: {model}, {cores} cores, load average {load}")
        print(f"job: {args.ranks} ranks x {args.tokens} token entropies (V = {VOCAB}) + grad norm"
              f" + loss per step; {args.steps} steps measured after {args.warmup}"
              f" ({args.aggregate_steps} for the aggregate); per-rank"
              f" reports over {args.streams} streams, the aggregate over 1; lockstep (every Ack"
              f" of a step before the next)")
        print(f"in-job summary (numpy, one process, all {args.ranks * args.tokens} values):"
              f" {summarize_cpu * 1e3:.1f} ms CPU per step")
        print()
        print("| mode | ranks | reports/step | bytes/step | daemon CPU s/step | sink CPU s/step"
              " | daemon/sink | daemon CPU us/rank | daemon wall s/step |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r['mode']} | {r['ranks']} | {r['reports']} | {r['bytes']:,} |"
                  f" {r['daemon_cpu']:.4f} | {r['sink_cpu']:.4f} |"
                  f" {r['daemon_cpu'] / max(r['sink_cpu'], 1e-9):.2f} |"
                  f" {r['daemon_cpu'] / r['ranks'] * 1e6:.2f} | {r['daemon_wall']:.3f} |")
        print()
        per_rank = rows[0]
        per_report = per_rank["daemon_cpu"] / per_rank["ranks"]
        print(f"largest job at 1 step/s, per-rank reports: {cores} cores / {per_report * 1e6:.1f} us"
              f" CPU per rank-report = {cores / per_report:,.0f} ranks"
              f" (1 core: {1 / per_report:,.0f})")
        agg = [r for r in rows if r["mode"] == "aggregated"]
        if len(agg) >= 2:
            (r1, r2) = agg[0], agg[-1]
            b = (r2["daemon_cpu"] - r1["daemon_cpu"]) / (r2["ranks"] - r1["ranks"])
            a = r1["daemon_cpu"] - b * r1["ranks"]
            bytes_per_rank = (r2["bytes"] - r1["bytes"]) / (r2["ranks"] - r1["ranks"])
            wire = (64 << 20) / bytes_per_rank
            if b > 0:
                print(f"largest job at 1 step/s, aggregated: CPU/step = {a * 1e3:.2f} ms +"
                      f" {b * 1e6:.3f} us x ranks -> 1 core: {(1 - a) / b:,.0f} ranks;"
                      f" the 64 MiB message limit at {bytes_per_rank:.1f} bytes/rank:"
                      f" {wire:,.0f} ranks")
            else:
                print(f"aggregated: no measurable growth of CPU with ranks; the 64 MiB message"
                      f" limit at {bytes_per_rank:.1f} bytes/rank: {wire:,.0f} ranks")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
