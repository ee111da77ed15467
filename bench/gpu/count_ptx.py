#!/usr/bin/env python3
"""PTX operations per element in the token-entropy kernel's main loop, and
ptxas registers / spills, from what nvcc emits (no GPU needed).

  bench/gpu/count_ptx.py                 # the working tree
  bench/gpu/count_ptx.py --rev 53163b8   # the sources of a git revision

For each TokenPartialKernel instantiation (fp32, fp16, bf16) it finds the
loop that holds the 16-byte loads (ld.global.nc.v4: the main loop), builds
its control-flow graph and counts:
  all     every instruction of the loop body, divided by the elements the
          body loads (16-byte loads x elements per load);
  steady  only the blocks reachable from the loop header without entering a
          block marked '// entrowatch: cold path' (a tile that raises the
          running maximum or holds NaN / +Inf): the path a tile takes once
          the row's maximum has been seen. Equal to `all` for kernels
          without the marks.
`mov` instructions are counted (PTX register moves; ptxas removes most).
With --max-steady N, exits 1 when the bf16 steady count exceeds N (the
ctest entry ptx.token_kernel_budget guards the budget in CUDA builds).
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

SOURCES = ["src/compute/cuda/token_entropy.cu", "src/compute/cuda/kernels.cuh",
           "src/compute/entropy_math.h", "src/common/half.h"]
TYPES = {0: ("fp32", 4), 1: ("fp16", 2), 2: ("bf16", 2)}
LABEL = re.compile(r"^(\$L__\w+):")
BRANCH = re.compile(r"^(@!?%p\d+\s+)?bra(\.uni)?\s+(\$L__\w+);")


def export_revision(rev, root):
    out = tempfile.mkdtemp(prefix="ptx-src-")
    for path in SOURCES:
        text = subprocess.run(["git", "-C", root, "show", f"{rev}:{path}"], check=True,
                              capture_output=True, text=True).stdout
        os.makedirs(os.path.join(out, os.path.dirname(path)), exist_ok=True)
        with open(os.path.join(out, path), "w") as f:
            f.write(text)
    return out


def compile_ptx(nvcc, root, arch, work):
    src = os.path.join(root, "src/compute/cuda/token_entropy.cu")
    common = [nvcc, "-std=c++17", "-O3", "-DNDEBUG", f"-arch={arch}", "--expt-relaxed-constexpr",
              "-I", os.path.join(root, "src")]
    ptx = os.path.join(work, "token.ptx")
    subprocess.run(common + ["-ptx", src, "-o", ptx], check=True)
    verbose = subprocess.run(common + ["-cubin", "-Xptxas", "-v", src, "-o",
                                       os.path.join(work, "token.cubin")],
                             check=True, capture_output=True, text=True).stderr
    return open(ptx).read(), verbose


def registers(verbose):
    """{type id: (registers, spill stores, spill loads)} for TokenPartialKernel."""
    out, current = {}, None
    for line in verbose.splitlines():
        m = re.search(r"Compiling entry function '(\w+)'", line)
        if m:
            t = re.search(r"TokenPartialKernelILNS\d+_\d+ElementTypeE(\d)E", m.group(1))
            current = int(t.group(1)) if t else None
            continue
        if current is None:
            continue
        m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            out.setdefault(current, [0, 0, 0])[1:] = [int(m.group(1)), int(m.group(2))]
        m = re.search(r"Used (\d+) registers", line)
        if m:
            out.setdefault(current, [0, 0, 0])[0] = int(m.group(1))
    return out


def entries(ptx):
    """{type id: [lines of the TokenPartialKernel<type> body]}."""
    out = {}
    for m in re.finditer(r"\.entry (\w+)\(", ptx):
        t = re.search(r"TokenPartialKernelILNS\d+_\d+ElementTypeE(\d)E", m.group(1))
        if not t:
            continue
        start = ptx.index("{", m.end())
        depth, i = 0, start
        while True:
            depth += {"{": 1, "}": -1}.get(ptx[i], 0)
            if depth == 0:
                break
            i += 1
        out[int(t.group(1))] = ptx[start + 1:i].splitlines()
    return out


def blocks(lines):
    """Basic blocks: [(label or None, [instruction lines], cold, successors)]."""
    result, current = [], {"label": None, "ins": [], "cold": False}

    def close():
        if current["ins"] or current["label"]:
            result.append(current)

    for raw in lines:
        line = raw.strip()
        if "entrowatch: cold path" in line:
            current["cold"] = True
            continue
        line = line.split("//")[0].strip()
        m = LABEL.match(line)
        if m:
            close()
            current = {"label": m.group(1), "ins": [], "cold": False}
            continue
        if not line or line.startswith(".") or line in ("{", "}") or not line.endswith(";"):
            continue
        current["ins"].append(line)
        if BRANCH.match(line) or line.startswith("ret"):
            close()
            current = {"label": None, "ins": [], "cold": False}
    close()
    index = {b["label"]: i for i, b in enumerate(result) if b["label"]}
    for i, b in enumerate(result):
        succ = []
        last = b["ins"][-1] if b["ins"] else ""
        m = BRANCH.match(last)
        if m:
            succ.append(index[m.group(3)])
            if m.group(1):  # conditional: falls through too
                succ.append(i + 1)
        elif not last.startswith("ret"):
            succ.append(i + 1)
        b["succ"] = [s for s in succ if s < len(result)]
    return result


def main_loop(bl):
    """(first, last) block indices of the loop holding the 16-byte loads."""
    best = None
    for i, b in enumerate(bl):
        for s in b["succ"]:
            if s <= i:  # back edge i -> s
                body = bl[s:i + 1]
                if any("ld.global.nc.v4" in ins for x in body for ins in x["ins"]):
                    if best is None or i - s < best[1] - best[0]:
                        best = (s, i)
    return best


def count(bl, first, last, steady):
    seen, stack = set(), [first]
    while stack:
        i = stack.pop()
        if i in seen or i < first or i > last or (steady and bl[i]["cold"]):
            continue
        seen.add(i)
        stack.extend(bl[i]["succ"])
    ins = [x for i in sorted(seen) for x in bl[i]["ins"]]
    loads = sum("ld.global.nc.v4" in x for x in ins)
    movs = sum(x.split()[0].startswith("mov") for x in ins)
    return len(ins), movs, loads


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rev", help="git revision whose sources to compile")
    parser.add_argument("--nvcc", default=os.environ.get("NVCC", "/usr/local/cuda/bin/nvcc"))
    parser.add_argument("--arch", default="sm_90")
    parser.add_argument("--root", default=os.path.join(os.path.dirname(__file__), "..", ".."))
    parser.add_argument("--max-steady", type=float,
                        help="fail when bf16 needs more PTX operations per element")
    args = parser.parse_args()
    root = export_revision(args.rev, args.root) if args.rev else args.root
    work = tempfile.mkdtemp(prefix="ptx-")
    try:
        ptx, verbose = compile_ptx(args.nvcc, root, args.arch, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if args.rev:
            shutil.rmtree(root, ignore_errors=True)
    regs = registers(verbose)
    print(f"# TokenPartialKernel main loop, {args.arch}, sources: {args.rev or 'working tree'}")
    print("| dtype | elements/iteration | PTX ops/element (all) | of which mov | "
          "PTX ops/element (steady) | of which mov | registers | spill bytes (st/ld) |")
    print("|---|---|---|---|---|---|---|---|")
    failed = False
    for t, body in sorted(entries(ptx).items()):
        name, esize = TYPES[t]
        bl = blocks(body)
        loop = main_loop(bl)
        if loop is None:
            print(f"| {name} | main loop not found | | | | | | |")
            failed = True
            continue
        n_all, mov_all, loads = count(bl, loop[0], loop[1], steady=False)
        n_hot, mov_hot, hot_loads = count(bl, loop[0], loop[1], steady=True)
        elements = loads * 16 // esize
        hot_elements = hot_loads * 16 // esize
        r = regs.get(t, ["?", "?", "?"])
        if name == "bf16" and args.max_steady is not None and n_hot / hot_elements > args.max_steady:
            print(f"bf16: {n_hot / hot_elements:.2f} PTX operations per element, above the "
                  f"budget of {args.max_steady}", file=sys.stderr)
            failed = True
        print(f"| {name} | {elements} | {n_all / elements:.2f} | {mov_all / elements:.2f} | "
              f"{n_hot / hot_elements:.2f} | {mov_hot / hot_elements:.2f} | {r[0]} | "
              f"{r[1]}/{r[2]} |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
