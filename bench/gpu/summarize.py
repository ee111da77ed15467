"""One table from entrowatch_gpu_bench's JSON lines and the anchors' JSON,
measured in the same verify.sh run:  summarize.py ENTROWATCH.jsonl ANCHOR.json"""
import json
import sys


def ratio(reference_ms, ms):
    return f"{reference_ms / ms:.2f}x" if reference_ms else "-"


def main():
    ours = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
    try:
        anchor = json.load(open(sys.argv[2]))
    except OSError:
        anchor = {"rows": []}
    device = next((o["device"] for o in ours if "device" in o), anchor.get("gpu", "?"))
    print(f"device: {device}; torch {anchor.get('torch', '?')}; "
          f"d2d copy {anchor.get('d2d_copy_TBps', 0):.2f} TB/s")
    print("| shape | dtype | entrowatch kernel ms | TB/s | end-to-end ms | torch amax ms | "
          "eager verl ms | best compiled ms | kernel vs amax | vs eager | vs compiled |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    by_shape = {}
    for row in anchor.get("rows", []):
        by_shape.setdefault(row.get("shape"), {})[row.get("impl")] = row.get("ms")
    e2e = {o.get("shape"): o for o in ours if o.get("figure") == "end_to_end"}
    for o in ours:
        if o.get("figure") != "kernel" or o.get("kind") != "entropy":
            continue
        if "error" in o:
            print(f"| {o['shape']} | | error: {o['error']} |")
            continue
        a = by_shape.get(o["shape"], {})
        amax, verl = a.get("FLOOR(amax read)"), a.get("verl_style")
        compiled = min([v for k, v in a.items() if k.startswith("compiled") and v] or [None],
                       key=lambda v: v or 1e30)
        end = e2e.get(o["shape"], {}).get("ms")
        print(f"| {o['shape']} | {o['dtype']} | {o['ms']:.4f} | {o['tb_per_s']:.2f} | "
              f"{end if end is not None else '-'} | {amax or '-'} | {verl or '-'} | "
              f"{compiled or '-'} | {ratio(amax, o['ms'])} | {ratio(verl, o['ms'])} | {ratio(compiled, o['ms'])} |")
    for o in ours:
        if o.get("figure") == "kernel" and o.get("kind") == "attention" and "ms" in o:
            seq = o["shape"].split()[1][1:]
            a = by_shape.get(f"B1H32N{seq}D128", {})
            flash = a.get("sdpa_flash_causal(fwd, for scale)")
            print(f"| attention {o['shape']} | bf16 | {o['ms']:.3f} | | | | materialized "
                  f"{a.get('attn_materialized', '-')} | compiled {a.get('attn_compiled', '-')} | "
                  f"flash fwd {flash or '-'} ms | {ratio(flash, o['ms'])} | |")


if __name__ == "__main__":
    main()
