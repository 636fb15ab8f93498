"""Counts the NEON tile kernel's inner loop in a cross-built aarch64 object (issue 21: emulation
measures no speed, instruction counts do): the innermost loop with the most FMAs, its vector
loads, FMAs per load, vector registers and stack accesses (spills), from objdump's disassembly.

Usage: python scripts/neon_inner_loop.py OBJECT OUT.md  (scripts/check_aarch64.sh runs it)
"""

import datetime
import re
import subprocess
import sys

INSTRUCTION = re.compile(r"^\s*([0-9a-f]+):\s+(\S+)\s*(.*)$")
BRANCH = re.compile(r"^(b|b\.\w+|cbn?z|tbn?z)$")


def loops(lines):
    """(start, end) address ranges of the loops: a branch back to an earlier address."""
    for address, op, args in lines:
        if BRANCH.match(op):
            target = re.search(r"\b([0-9a-f]+) <", args)
            if target and int(target[1], 16) <= address:
                yield int(target[1], 16), address


def vector_loads(op, args):
    if op == "ldp" and re.match(r"q\d+", args):
        return 2
    if op in ("ldr", "ldur") and re.match(r"q\d+", args):
        return 1
    if op.startswith("ld1"):
        return len(re.findall(r"v\d+\.", args.split("}")[0]))
    return 0


def main(obj: str, out: str) -> None:
    text = subprocess.run(["aarch64-linux-gnu-objdump", "-d", "--no-show-raw-insn", obj], check=True,
                          capture_output=True, text=True).stdout
    lines = [(int(m[1], 16), m[2], m[3]) for m in map(INSTRUCTION.match, text.splitlines()) if m]
    ranges = set(loops(lines))
    # innermost loops only: those that contain no other loop
    innermost = [(s, e) for s, e in ranges if not any((s2, e2) != (s, e) and s <= s2 and e2 <= e for s2, e2 in ranges)]
    best = None
    for start, end in innermost:
        body = [(op, args) for address, op, args in lines if start <= address <= end]
        fmas = sum(op == "fmla" for op, _ in body)
        if best is None or fmas > best[0]:
            best = (fmas, start, end, body)
    fmas, start, end, body = best
    loads = sum(vector_loads(op, args) for op, args in body)
    load_instructions = sum(vector_loads(op, args) > 0 for op, args in body)
    stack = sum("[sp" in args for _, args in body)
    registers = sorted({int(r) for _, args in body for r in re.findall(r"\b[vq](\d+)\b", args)})
    summary = [
        "# NEON tile kernel: the inner loop, counted (no Arm time measured)",
        "",
        f"Date {datetime.date.today()}; cross-built with aarch64-linux-gnu-g++ (-O3, Armv8.0 base) by "
        "`bash scripts/check_aarch64.sh` (make test-aarch64); object `tile_neon.cpp.o`; "
        "emulation under qemu-aarch64 proves results, not speed.",
        "",
        "| what | count |",
        "|---|---|",
        f"| instructions in the loop (0x{start:x}-0x{end:x}) | {len(body)} |",
        f"| FMAs (fmla, 4 float32 lanes) | {fmas} |",
        f"| vector registers loaded | {loads} (in {load_instructions} load instructions) |",
        f"| FMAs per vector loaded | {fmas / loads:.1f} |",
        f"| vector registers named | {len(registers)} of 32 |",
        f"| stack accesses (spills) | {stack} |",
        "",
        "Per pass: 4 reduction rows x 8 channels of packed filter (8 vectors) and 4 values of each of 8",
        "pixels (8 vectors) feed 64 FMAs into 16 accumulators. At Neoverse V1/V2/N2 rates (4 or 2 FMA",
        "pipes, 3 load pipes) the loop is FMA-bound; to be measured with `python benchmarks/bench_cpu.py`",
        "on an Arm host.",
        "",
    ]
    open(out, "w").write("\n".join(summary))
    print("\n".join(summary))
    if stack or fmas / loads < 3:
        raise SystemExit("the inner loop spills or issues fewer than 3 FMAs a load")


if __name__ == "__main__":
    main(*sys.argv[1:])
