"""A real FSDP2 step on CPU/gloo: bytes per parameter each rank holds after an AdamW step.

`fsdp2_state_bytes(world)` spawns `world` processes; each shards a small MLP stack with `fully_shard` (bf16
compute, fp32 reduce, as torchtitan configures it), runs forward, backward and one AdamW step, and reports
the bytes of its local parameter shards, gradient shards and optimizer state per parameter of the model.
"""

from __future__ import annotations

import os
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

HIDDEN = 64
LAYERS = 3


def _worker(rank: int, world: int, init: str, out: str) -> None:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = torch.nn.Sequential(*[torch.nn.Linear(HIDDEN, HIDDEN, bias=False) for _ in range(LAYERS)])
        mesh = init_device_mesh("cpu", (world,))
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        for layer in model:
            fully_shard(layer, mesh=mesh, mp_policy=policy)
        fully_shard(model, mesh=mesh, mp_policy=policy)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        model(torch.randn(8, HIDDEN)).float().pow(2).mean().backward()
        opt.step()

        def local(t: torch.Tensor) -> torch.Tensor:
            return t.to_local() if hasattr(t, "to_local") else t

        n = LAYERS * HIDDEN * HIDDEN
        weights = sum(local(p).numel() * local(p).element_size() for p in model.parameters())
        grads = sum(local(p.grad).numel() * local(p.grad).element_size() for p in model.parameters())
        state = sum(local(v).numel() * local(v).element_size() for s in opt.state.values() for v in s.values()
                    if torch.is_tensor(v) and v.dim() > 0)
        dtypes = {str(local(p).dtype) for p in model.parameters()}
        with open(f"{out}.{rank}", "w") as f:
            f.write(f"{weights / n} {grads / n} {state / n} {','.join(sorted(dtypes))}")
    finally:
        dist.destroy_process_group()


def fsdp2_state_bytes(world: int) -> list[tuple[float, float, float, str]]:
    """(weights, gradients, optimizer) bytes per model parameter and the shard dtype, per rank."""
    with tempfile.TemporaryDirectory() as tmp:
        init = f"file://{os.path.join(tmp, 'rendezvous')}"
        out = os.path.join(tmp, "result")
        mp.start_processes(_worker, args=(world, init, out), nprocs=world, join=True, start_method="spawn")
        rows = []
        for r in range(world):
            with open(f"{out}.{r}") as f:
                w, g, o, dtype = f.read().split()
            rows.append((float(w), float(g), float(o), dtype))
        return rows
