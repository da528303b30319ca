"""PyTorch's context-parallel attention on CPU/gloo: the bytes its backward holds beyond a single-GPU attention.

`exchange_bytes()` spawns 4 ranks; each runs torch.distributed.tensor.experimental's ring attention
(`_templated_ring_attention` and its backward, the functions torchtitan's context parallelism dispatches SDPA to)
over the 4 ranks and over pairs of them, with PyTorch's CPU flash-attention kernel as the attention op, under a
dispatch mode that follows every storage an op creates (tests/loss_oracle.py), under both of PyTorch's rotate methods
(all-gather, torchtitan's default, and all-to-all). Per method and CP degree it reports the largest
peak over the ranks of the backward's live bytes, less the peak of the same kernel's backward alone on the rank's
shard: what the exchange adds.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

BATCH, HEADS, TOKENS, HEAD_DIM = 1, 4, 128, 64  # one rank's shard of q, k and v (the same head count)
WORLD = 4


def _attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, is_causal: Any = False,
               **_: Any) -> tuple[torch.Tensor, ...]:
    return tuple(torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(query, key, value, 0.0, bool(is_causal)))


def _attention_backward(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, out: torch.Tensor,
                        logsumexp: torch.Tensor, is_causal: Any = False, grad_out: Any = None,
                        **_: Any) -> tuple[torch.Tensor, ...]:
    return tuple(torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
        grad_out, query, key, value, out, logsumexp, 0.0, bool(is_causal)))


def _worker(rank: int, init: str, out: str) -> None:
    from loss_oracle import LiveBytes
    from torch.distributed.tensor.experimental._context_parallel import _attention as cp

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    try:
        pairs = [dist.new_group([0, 1]), dist.new_group([2, 3])]
        torch.manual_seed(rank)
        q, k, v = (torch.randn(BATCH, HEADS, TOKENS, HEAD_DIM, dtype=torch.bfloat16) for _ in range(3))
        results = []
        for method, rotate in (("allgather", cp._RotateMethod.ALL_GATHER), ("alltoall", cp._RotateMethod.ALL_TO_ALL)):
            cp._cp_options.rotate_method = rotate
            for group in (dist.group.WORLD, pairs[rank // 2]):
                o, lse, *_ = cp._templated_ring_attention(group, 2, _attention, q, k, v, is_causal=True)
                grad = torch.randn_like(o)
                ring = LiveBytes()
                with ring:
                    cp._templated_ring_attention_backward(group, 2, _attention_backward, grad, "grad_out", q, k, v,
                                                          o, lse, is_causal=True)
                alone = LiveBytes()
                with alone:
                    _attention_backward(q, k, v, o, lse, is_causal=True, grad_out=grad)
                results.append(f"{method} {dist.get_world_size(group)} {ring.peak - alone.peak}")
        with open(f"{out}.{rank}", "w") as f:
            f.write("\n".join(results))
    finally:
        dist.destroy_process_group()


def exchange_bytes() -> dict[tuple[str, int], int]:
    """(rotate method, CP degree) → the most bytes any rank's attention backward holds beyond the kernel's own."""
    with tempfile.TemporaryDirectory() as tmp:
        init = f"file://{os.path.join(tmp, 'rendezvous')}"
        out = os.path.join(tmp, "result")
        mp.start_processes(_worker, args=(init, out), nprocs=WORLD, join=True, start_method="spawn")
        most: dict[tuple[str, int], int] = {}
        for r in range(WORLD):
            with open(f"{out}.{r}") as f:
                for line in f.read().splitlines():
                    method, degree, extra = line.split()
                    key = (method, int(degree))
                    most[key] = max(most.get(key, 0), int(extra))
        return most


if __name__ == "__main__":
    print(exchange_bytes())
