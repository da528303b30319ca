"""All GPU benchmarks in one markdown report: the device header, then GEMM, HBM, attention, MoE blocks and training
steps.

    python benchmarks/gpu/run_all.py --gpu h100-sxm > out.md     # on the GPU machine
    python benchmarks/gpu/run_all.py --smoke                     # CPU check of the scripts, well under a minute

A section that fails is reported with its traceback and the others still run; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback

import attention
import gemm
import hbm
import moe
import torch
import train_step
from common import common_args, header, resolve_gpu

SECTIONS = {"gemm": gemm.run, "hbm": hbm.run, "attention": attention.run, "moe": moe.run, "train": train_step.run}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_args(p)
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)} (default all)")
    p.add_argument("--gemm-iters", type=int, help="timed calls per GEMM (default 10)")
    p.add_argument("--hbm-iters", type=int, help="timed calls per HBM size (default 10)")
    p.add_argument("--attention-iters", type=int, help="timed calls per attention case (default 10)")
    p.add_argument("--moe-iters", type=int, help="timed calls per MoE case (default 10)")
    p.add_argument("--train-iters", type=int, help="timed training steps per layout (default 5)")
    a = p.parse_args(argv)
    wanted = [s.strip() for s in a.only.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SECTIONS]
    if unknown:
        p.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    if not a.smoke and not torch.cuda.is_available():
        p.error("no CUDA device: run on a GPU, or pass --smoke for the CPU check")
    if a.smoke:
        # tiny CPU shapes: intra-op thread pools only contend (10× slower on a busy 2-core machine)
        torch.set_num_threads(1)
    gpu = resolve_gpu(a.gpu, a.smoke)
    print(header(gpu, a.smoke), flush=True)
    iters = {"gemm": a.gemm_iters, "hbm": a.hbm_iters, "attention": a.attention_iters, "moe": a.moe_iters,
             "train": a.train_iters}
    failed = []
    start = time.perf_counter()
    for name in wanted:
        t0 = time.perf_counter()
        try:
            text = SECTIONS[name](gpu, a.smoke, iters=iters[name])
        except Exception:
            failed.append(name)
            text = f"## {name}: FAILED\n\n```\n{traceback.format_exc()}```\n"
        print(text, flush=True)
        print(f"_{name}: {time.perf_counter() - t0:.1f} s_\n", flush=True)
    print(f"_total: {time.perf_counter() - start:.1f} s{'; failed: ' + ', '.join(failed) if failed else ''}_")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
