"""torch.distributed.pipelining on CPU/gloo: how many micro-batches of a stage's activations the first pipeline
rank holds at its peak, under Schedule1F1B and ScheduleInterleaved1F1B.

`chunks_in_flight(schedule, pp, microbatches)` spawns `pp` ranks; each hosts one stage (1F1B) or two (interleaved)
of identical residual MLP blocks, runs a warm-up step and a measured step under a dispatch mode that follows every
storage an op creates (tests/loss_oracle.py), and reports how many block activations (the ReLU outputs autograd
keeps, one per block and micro-batch) were alive at once at most, in model chunks, and how many micro-batch
outputs the last stage holds when the step returns.
"""

from __future__ import annotations

import os
import tempfile
import weakref
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

HIDDEN, SEQ, MICRO_BATCH = 32, 16, 2
BLOCKS_PER_CHUNK = 2


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Linear(HIDDEN, 4 * HIDDEN)
        self.down = nn.Linear(4 * HIDDEN, HIDDEN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(torch.relu(self.up(x)))


def _worker(rank: int, world: int, init: str, schedule: str, microbatches: int, out: str) -> None:
    from loss_oracle import LiveBytes
    from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleInterleaved1F1B

    class ReluCount(LiveBytes):
        """The most ReLU outputs (one per block and micro-batch in flight) alive at once."""

        def __init__(self) -> None:
            super().__init__()
            self.relus: set[int] = set()
            self.most = 0

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            result = super().__torch_dispatch__(func, types, args, kwargs)
            if func is torch.ops.aten.relu.default:
                key = result.untyped_storage().data_ptr()
                self.relus.add(key)
                weakref.finalize(result.untyped_storage(), self.relus.discard, key)
                self.most = max(self.most, len(self.relus))
            return result

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        per_rank = 2 if schedule == "interleaved" else 1
        n_stages = world * per_rank
        stages = [PipelineStage(nn.Sequential(*[Block() for _ in range(BLOCKS_PER_CHUNK)]), rank + k * world,
                                n_stages, torch.device("cpu")) for k in range(per_rank)]

        def loss_fn(y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return (y - target).pow(2).mean()

        sched = (ScheduleInterleaved1F1B(stages, n_microbatches=microbatches, loss_fn=loss_fn)
                 if schedule == "interleaved" else Schedule1F1B(stages[0], n_microbatches=microbatches,
                                                                loss_fn=loss_fn))
        x = torch.randn(microbatches * MICRO_BATCH, SEQ, HIDDEN)
        target = torch.randn_like(x)
        for _ in range(2):  # the first step allocates the receive buffers
            mode = ReluCount()
            with mode:
                if rank == 0:
                    sched.step(x)
                elif rank == world - 1:
                    sched.step(target=target, losses=[])
                else:
                    sched.step()
        # the last stage's outputs step() merges at the end (stage.py output_chunks, cleared by the next step)
        held = len(stages[-1].output_chunks) if rank == world - 1 else 0
        with open(f"{out}.{rank}", "w") as f:
            f.write(f"{mode.most / BLOCKS_PER_CHUNK} {held}")
    finally:
        dist.destroy_process_group()


def pipelined_step(schedule: str, pp: int, microbatches: int) -> tuple[list[float], list[int]]:
    """Per rank, the most model chunks' worth of micro-batch activations alive at once, and the micro-batch
    outputs its last stage still holds when step() returns (step() run as torchtitan ran it before
    return_outputs=False: outputs kept for the merge)."""
    with tempfile.TemporaryDirectory() as tmp:
        init = f"file://{os.path.join(tmp, 'rendezvous')}"
        out = os.path.join(tmp, "result")
        mp.start_processes(_worker, args=(pp, init, schedule, microbatches, out), nprocs=pp, join=True,
                           start_method="spawn")
        chunks, held = [], []
        for r in range(pp):
            with open(f"{out}.{r}") as f:
                most, kept = f.read().split()
            chunks.append(float(most))
            held.append(int(kept))
        return chunks, held


def chunks_in_flight(schedule: str, pp: int, microbatches: int) -> list[float]:
    """Per rank, the most model chunks' worth of micro-batch activations alive at once."""
    return pipelined_step(schedule, pp, microbatches)[0]


if __name__ == "__main__":
    for kind in ("1f1b", "interleaved"):
        print(kind, chunks_in_flight(kind, 2, 8))
        print(kind, chunks_in_flight(kind, 4, 8))
