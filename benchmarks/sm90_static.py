"""What an H100 (sm_90a) makes of every kernel configuration pinnfast launches, seen from a machine without a GPU.

    python3 benchmarks/sm90_static.py                 # the table for every default configuration, JSON to $OUT
    python3 benchmarks/sm90_static.py --search        # also try tiles × warps and rewrite kernels/launch_table.py
    python3 benchmarks/sm90_static.py --backward --precisions tf32x3 --models ModifiedMLP   # the backward's stages

Triton's wheel ships ptxas and cuobjdump, so registers per thread, bytes spilled to local memory, shared memory and
the tensor-core mix (HGMMA = Hopper wgmma, HMMA = mma.sync, FFMA = fp32 FMA) are known at compile time. Spills are
what makes a fused kernel slow on the GPU (a few hundred bytes cost 2–5×, thousands 10–300×), so the launcher takes
its tile and warps per configuration from the table that ``--search`` writes, never from a guess.

Configurations: the jets kernel for the derivative sets of Burgers (x, y, t; xx, yy), Helmholtz (xx, yy) and the
Klein–Gordon initial condition (t), and the fused Burgers kernel; MLP and ModifiedMLP; padded widths 16, 32, 64,
128 (W = 16, 32, 64, 100, 128); every precision. Depth is a loop of identical layers: one depth (4) stands for 1–8,
and ``--depths`` checks that claim by compiling depths 1–8 of one configuration.
"""
import argparse
import collections
import concurrent.futures
import dataclasses
import json
import os
import pprint
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from pinnfast.kernels import backward
from pinnfast.kernels import jets as kernel

BIN = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
INT_ARGS = ("N", "members", "x_stride", "row0", "n_chunk", "stash_points", "layer", "zero_partials")
H100_SHARED_BYTES = 227 * 1024  # per block; more does not launch (OutOfResources)
PADDED_WIDTHS = (16, 32, 64, 128)  # W = 16, 32, 64, 100 → 128, 128
# (tile, warps) in order of preference at zero spill: fewest instructions per point first (M3 Burgers, depth 4)
CANDIDATES = ((16, 4), (32, 4), (16, 8), (8, 8), (8, 4), (4, 8))
BACKWARD_TILE_UNITS = 1024  # the backward's stages try tiles of at most this many points × units: larger ones spill
# at every width tried and one compile can take minutes (W = 128, 16 points: more than 13)
# (name, in_dim, out_dim, first, second, fused Burgers)
KERNELS = (("burgers_fields", 3, 2, (0, 1, 2), (0, 1), True), ("jets_burgers", 3, 2, (0, 1, 2), (0, 1), False),
           ("jets_helmholtz", 2, 1, (), (0, 1), False), ("jets_kg_initial", 2, 1, (1,), (), False))
# the backward (each of its stages): the Burgers residual loss, the value-only backward of the data loss, and the
# backward of taylor_jets(backend="triton") with Burgers' derivatives (its table entries serve any fewer channels)
BACKWARD_WORKLOADS = (("burgers_loss", 3, 2, (0, 1, 2), (0, 1), True), ("value_backward", 3, 2, (), (), False),
                      ("jets_backward", 3, 2, (0, 1, 2), (0, 1), False))
TABLE_FILE = Path(__file__).resolve().parents[1] / "kernels" / "launch_table.py"


@dataclasses.dataclass
class Compiled:
    registers: int
    spill_bytes: int
    shared_bytes: int
    sass: collections.Counter

    @property
    def fits(self):
        return self.spill_bytes == 0 and self.shared_bytes <= H100_SHARED_BYTES


def compile_sm90(constexprs, num_warps, fn=kernel.mlp_jets_kernel):
    """Compile a jets kernel (forward by default) with these constexprs for sm_90a; registers, spills, shared memory,
    SASS mix."""
    names = list(fn.arg_names)
    signature = {name: "constexpr" if name in constexprs else
                 ("i32" if name in INT_ARGS else "fp32" if name == "coef" else
                  "*i32" if name.startswith(("dirs_", "map_")) else "*fp32")
                 for name in names}
    source = ASTSource(fn=fn, signature=signature,
                       constexprs={(names.index(k),): v for k, v in constexprs.items()})
    compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32),
                              options={"num_warps": num_warps, "num_stages": 1})  # as the launcher
    with tempfile.TemporaryDirectory() as tmp:
        ptx, cubin = Path(tmp) / "k.ptx", Path(tmp) / "k.cubin"
        ptx.write_text(compiled.asm["ptx"])
        cubin.write_bytes(compiled.asm["cubin"])
        info = subprocess.run([BIN / "ptxas", "-arch=sm_90a", "-v", ptx, "-o", Path(tmp) / "check.cubin"],
                              capture_output=True, text=True).stderr
        sass = subprocess.run([BIN / "cuobjdump", "-sass", cubin], capture_output=True, text=True).stdout
    registers = re.search(r"Used (\d+) registers", info)
    spills = re.search(r"(\d+) bytes spill stores", info)
    ops = collections.Counter(m.group(1) for m in re.finditer(
        r"^\s+/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z0-9_]+)", sass, re.MULTILINE))
    return Compiled(int(registers.group(1)) if registers else -1, int(spills.group(1)) if spills else 0,
                    compiled.metadata.shared, ops)


def configurations(precisions=kernel.PRECISIONS, widths=PADDED_WIDTHS, depth=4, backward_pass=False,
                   models=("ModifiedMLP", "MLP")):
    """Every (label, constexprs) the package launches by default, with the launcher's own tile and warps."""
    from pinnfast import models as networks
    from pinnfast.jets import JetSpec

    for name, in_dim, out_dim, first, second, burgers in (BACKWARD_WORKLOADS if backward_pass else KERNELS):
        for model_name in models:
            for wp in widths:
                model = getattr(networks, model_name)(in_dim, out_dim, wp, depth)
                meta = kernel.pack_weights(model, JetSpec(first, second), "cpu")["meta"]
                for precision in precisions:
                    for stage in backward.STAGES if backward_pass else [None]:
                        block, warps = (kernel.backward_launch_config(meta, burgers, precision, stage) if stage
                                        else kernel.launch_config(meta, burgers, precision))
                        label = dict(kernel=name, model=model_name, WP=wp, precision=precision,
                                     **({"stage": stage} if stage else {}))
                        constexprs = (backward.stage_constexprs(meta, burgers, precision, stage) if stage
                                      else dict(meta, BURGERS=burgers, PRECISION=precision))
                        yield label, constexprs, block, warps


def kernel_of(label):
    """The @triton.jit function of a configuration's label."""
    return backward.mlp_jets_backward_kernel if "stage" in label else kernel.mlp_jets_kernel


def table_key(constexprs):
    return kernel.launch_key(constexprs, constexprs["BURGERS"], constexprs["PRECISION"])


def search(constexprs, fn):
    """The first zero-spill (tile, warps) that fits in shared memory, else the one that spills least (for a stage of
    the backward, of the tiles up to ``BACKWARD_TILE_UNITS``); with its compile result."""
    tried = []
    for block, warps in CANDIDATES:
        if "STAGE" in constexprs and block * constexprs["WP"] > BACKWARD_TILE_UNITS:
            continue
        result = compile_sm90(dict(constexprs, B=block), warps, fn)
        tried.append((result.spill_bytes + (10 ** 9 if result.shared_bytes > H100_SHARED_BYTES else 0),
                      len(tried), block, warps, result))
        if result.fits:
            break
    return min(tried)[2:]


def report(job):
    """One table row: compile the configuration with the launcher's tile and warps, or search for them."""
    label, constexprs, block, warps, searching = job
    if searching:
        block, warps, result = search(constexprs, kernel_of(label))
    else:
        result = compile_sm90(dict(constexprs, B=block), warps, kernel_of(label))
    return dict(label, DEPTH=constexprs["DEPTH"], tile=block, warps=warps, key=table_key(constexprs),
                registers=result.registers, spill_bytes=result.spill_bytes, shared_bytes=result.shared_bytes,
                **{op: result.sass[op] for op in ("HGMMA", "HMMA", "FFMA")})


def write_table(forward, backward_tables):
    lines = ['"""Tile and warps per kernel configuration, chosen by `python3 benchmarks/sm90_static.py --search`',
             f"from what ptxas makes of each for an H100 (sm_90a): the first of {', '.join(map(str, CANDIDATES))}",
             'that spills nothing and fits in shared memory, else the one that spills least. Generated: do not edit."""',
             "# (MODIFIED, BURGERS, WP, NSP, NOP, IN_DIM, OUT_DIM, PRECISION): (tile, warps)",
             "LAUNCH_TABLE = " + pprint.pformat(dict(sorted(forward.items())), width=118, compact=True),
             "# the backward's stages (--search --backward): per stage, same key",
             "BACKWARD_LAUNCH_TABLE = " + pprint.pformat(
                 {name: dict(sorted(table.items())) for name, table in sorted(backward_tables.items())}, width=118,
                 compact=True), ""]
    TABLE_FILE.write_text("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--search", action="store_true", help="try tiles × warps and rewrite kernels/launch_table.py")
    parser.add_argument("--depths", action="store_true", help="also compile depths 1–8 of the W=64 Burgers kernel")
    parser.add_argument("--precisions", default=",".join(kernel.PRECISIONS), help="comma-separated subset")
    parser.add_argument("--widths", default=",".join(map(str, PADDED_WIDTHS)),
                        help="comma-separated subset of the padded widths")
    parser.add_argument("--backward", action="store_true", help="the backward kernel's stages instead of the forward")
    parser.add_argument("--models", default="ModifiedMLP,MLP", help="comma-separated subset of the networks")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="compiles side by side")
    args = parser.parse_args()
    precisions = tuple(args.precisions.split(","))
    widths = tuple(int(w) for w in args.widths.split(","))
    jobs = [(*config, args.search) for config in configurations(precisions, widths, backward_pass=args.backward,
                                                                models=tuple(args.models.split(",")))]
    if args.depths:
        label, constexprs, block, warps = next(configurations(("tf32x3",), (64,)))
        jobs += [(label, dict(constexprs, DEPTH=depth), block, warps, False) for depth in range(1, 9)]
    started = time.perf_counter()
    with concurrent.futures.ProcessPoolExecutor(args.workers) as pool:
        rows = []
        for row in pool.map(report, jobs):
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.search:
        forward = dict(kernel.LAUNCH_TABLE)
        backward_tables = {stage: dict(table) for stage, table in kernel.BACKWARD_LAUNCH_TABLE.items()}
        for r in rows:
            table = backward_tables.setdefault(r["stage"], {}) if args.backward else forward
            table[tuple(r["key"])] = (r["tile"], r["warps"])
        write_table(forward, backward_tables)
    out = Path(os.environ.get("OUT", "."))
    (out / "sm90_static.json").write_text(json.dumps(rows, indent=1))
    print(f"\n== sm_90a static report: {len(rows)} configurations in {time.perf_counter() - started:.0f} s ==")
    print("| kernel | model | WP | precision | depth | tile × warps | regs | spill B | smem KB | HGMMA | HMMA | FFMA |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['kernel']}{' / ' + r['stage'] if 'stage' in r else ''} | {r['model']} | {r['WP']} | {r['precision']} | {r['DEPTH']} | "
              f"{r['tile']} × {r['warps']} | {r['registers']} | {r['spill_bytes']} | {r['shared_bytes'] / 1024:.0f} | "
              f"{r['HGMMA']} | {r['HMMA']} | {r['FFMA']} |")
    worst = max(r["spill_bytes"] for r in rows)
    print(f"worst spill: {worst} B; over shared memory: {sum(r['shared_bytes'] > H100_SHARED_BYTES for r in rows)}")
    sys.exit(0 if worst == 0 else 1)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
