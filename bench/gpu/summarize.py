"""One table with pass/fail from entrowatch_gpu_bench's JSON lines and the
PyTorch anchors' JSON, both measured in the same verify.sh run:

  summarize.py ENTROWATCH.jsonl ANCHOR.json

Criteria (a line fails when its figure is missing, errored or misses):
  token entropy kernel  >= the bandwidth of torch's amax read pass over the
                           same tensor (one read: the memory floor);
  attention entropy     <= flash SDPA forward time on the same shape.
Both sides are kernel-only times on shapes larger than the L2, the L2 flushed
before each sample (kernel_timing.cc; triton.testing.do_bench). Eager verl
and torch.compile figures are printed beside them. Exit status 1 when any
line fails, 0 otherwise.
"""
import json
import sys

DTYPES = {"bfloat16": "bf16", "float32": "fp32", "float16": "fp16"}
AMAX = "FLOOR(amax read)"
FLASH = "sdpa_flash_causal(fwd, for scale)"


def fmt(x, digits=4):
    return "-" if x is None else f"{x:.{digits}f}"


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    ours = []
    with open(argv[1]) as f:
        for line in f:
            if line.startswith("{"):
                ours.append(json.loads(line))
    try:
        with open(argv[2]) as f:
            anchor = json.load(f)
    except (OSError, ValueError) as e:
        print(f"no anchors: {e}", file=sys.stderr)
        anchor = {"rows": []}
    anchors = {}
    for row in anchor.get("rows", []):
        if "ms" not in row:
            continue
        key = (row.get("shape"), DTYPES.get(row.get("dtype"), row.get("dtype", "bf16")))
        anchors.setdefault(key, {})[row["impl"]] = row["ms"]
        # Attention anchors carry no dtype: they are bf16.
        anchors.setdefault((row.get("shape"), None), {})[row["impl"]] = row["ms"]
    device = next((o["device"] for o in ours if "device" in o), anchor.get("gpu", "?"))
    print(f"device: {device}; torch {anchor.get('torch', '?')}; "
          f"amax read pass {anchor.get('read_amax_bf16_TBps', 0):.2f} TB/s; "
          f"d2d copy {anchor.get('d2d_copy_TBps', 0):.2f} TB/s")
    print("| kernel | shape | dtype | entrowatch ms | entrowatch TB/s | anchor | anchor ms | "
          "anchor TB/s | eager verl ms | best torch.compile ms | criterion | result |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    failures = 0
    lines = 0
    for o in ours:
        if o.get("figure") != "kernel":
            continue
        lines += 1
        kind, shape, dtype = o.get("kind"), o.get("shape"), o.get("dtype", "bf16")
        ms = o.get("ms")
        if kind == "entropy":
            a = anchors.get((shape, dtype), {})
            ref = a.get(AMAX)
            rows, vocab = (int(x) for x in shape.split("x"))
            nbytes = rows * vocab * (4 if dtype == "fp32" else 2)
            compiled = [a[k] for k in ("compiled_verl", "compiled_naive") if k in a]
            ok = ms is not None and ref is not None and ms <= ref
            print(f"| token entropy | {shape} | {dtype} | {fmt(ms)} | "
                  f"{fmt(nbytes / ms / 1e9 if ms else None, 2)} | amax read | {fmt(ref)} | "
                  f"{fmt(nbytes / ref / 1e9 if ref else None, 2)} | {fmt(a.get('verl_style'))} | "
                  f"{fmt(min(compiled) if compiled else None)} | TB/s >= amax | "
                  f"{'PASS' if ok else 'FAIL'}{'' if 'error' not in o else ': ' + o['error']} |")
        elif kind == "attention":
            a = anchors.get((shape, None), {})
            ref = a.get(FLASH)
            ok = ms is not None and ref is not None and ms <= ref
            print(f"| attention entropy | {shape} causal | {dtype} | {fmt(ms)} | - | "
                  f"flash SDPA fwd | {fmt(ref)} | - | {fmt(a.get('attn_materialized'))} | "
                  f"{fmt(a.get('attn_compiled'))} | ms <= flash fwd | "
                  f"{'PASS' if ok else 'FAIL'}{'' if 'error' not in o else ': ' + o['error']} |")
        else:
            continue
        failures += 0 if ok else 1
    if lines == 0:
        print("no kernel figures: the benchmark did not run", file=sys.stderr)
        return 1
    print(f"{lines - failures} of {lines} lines pass")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
