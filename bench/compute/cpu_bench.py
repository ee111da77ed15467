"""Token entropy on the CPU: the entrowatch engine beside PyTorch, same run.

For each (threads, dtype) the PyTorch anchors (the verl formula, the naive
log_softmax formula, and a read-only amax pass as the floor) and the engine
binary run back to back on the same shape, so every figure is read as a ratio
that survives a busy machine. Run through run_cpu_bench.sh.
"""
import json
import os
import platform
import subprocess
import sys
import time

import torch


def median_seconds(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def verl(z):
    z = z.float()
    pd = torch.softmax(z, -1)
    return torch.logsumexp(z, -1) - (pd * z).sum(-1)


def naive(z):
    lp = torch.log_softmax(z.float(), -1)
    return -(lp.exp() * lp).sum(-1)


def engine(binary, rows, vocab, dtype, threads):
    out = subprocess.run([binary, "entropy", str(rows), str(vocab), dtype, str(threads)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    binary, rows, vocab, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    torch.manual_seed(0)
    z32 = torch.randn(rows, vocab) * 3
    tensors = {"fp32": z32, "bf16": z32.bfloat16()}
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    print(f"# date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; host {platform.node()}; "
          f"cpu {model}, {os.cpu_count()} cores; load {os.getloadavg()[0]:.2f}; "
          f"torch {torch.__version__}; shape [{rows}, {vocab}]")
    header = ("| threads | dtype | engine ms | engine GB/s | GB/s per core | torch verl ms | "
              "verl GB/s | naive GB/s | amax floor GB/s | engine / verl | engine / floor |")
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for name, z in tensors.items():
            nbytes = z.numel() * z.element_size()
            before = engine(binary, rows, vocab, name, threads)
            t_verl = median_seconds(lambda: verl(z), repeats)
            t_naive = median_seconds(lambda: naive(z), repeats)
            t_amax = median_seconds(lambda: z.amax(-1), repeats)
            after = engine(binary, rows, vocab, name, threads)
            # The slower of the two engine runs around the anchors: conservative.
            ms = max(before["ms"], after["ms"])
            gbs = nbytes / (ms * 1e6)
            print(f"| {threads} | {name} | {ms:.1f} | {gbs:.2f} | {gbs / threads:.2f} | "
                  f"{t_verl * 1e3:.1f} | {nbytes / t_verl / 1e9:.2f} | {nbytes / t_naive / 1e9:.2f} | "
                  f"{nbytes / t_amax / 1e9:.2f} | {t_verl * 1e3 / ms:.1f}x | "
                  f"{(nbytes / (ms * 1e6)) / (nbytes / t_amax / 1e9):.2f} |", flush=True)


if __name__ == "__main__":
    main()
