"""The cross-entropy's working set as PyTorch allocates it: peak live bytes per logit over a loss's forward and
backward, counted by a dispatch mode that follows every tensor storage an op creates until it is freed.

`eager_peak(keep_logits)` runs torchtitan's loss (`cross_entropy(pred.flatten(0, 1).float(), labels)`) on 16-bit
logits that a trainer either holds through backward (Hugging Face, Composer) or drops first (torchtitan
train.py `del pred`). `loss_parallel_peak()` runs the local computation of DTensor's loss_parallel
(torch/distributed/tensor/parallel/loss.py `_log_softmax`, `_nll_loss_and_log_softmax_backward`) on one gloo
rank: the functions its op handlers call on each TP rank's shard.
"""

from __future__ import annotations

import os
import tempfile
import weakref
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

ROWS = 256  # tokens


class LiveBytes(TorchDispatchMode):
    """Bytes of the storages ops have created and that are still alive; `peak` is their maximum. An output on an
    input's storage (a view or an in-place result: at this dispatch level views carry no autograd view metadata)
    is not a new allocation."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._alive: set[int] = set()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0]
                  if type(t) is torch.Tensor and t.device.type == "cpu"}
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if type(t) is not torch.Tensor or t.device.type != "cpu":
                continue
            storage = t.untyped_storage()
            key, size = storage.data_ptr(), storage.nbytes()
            if size == 0 or key in self._alive or key in inputs:
                continue
            self._alive.add(key)
            self.live += size
            self.peak = max(self.peak, self.live)
            weakref.finalize(storage, self._freed, key, size)
        return out

    def _freed(self, key: int, size: int) -> None:
        self.live -= size
        self._alive.discard(key)


def eager_peak(keep_logits: bool, vocab: int) -> int:
    """Peak bytes of an eager loss step on ROWS tokens: the 16-bit logits from an output matmul, torchtitan's
    fp32 cross-entropy, backward into the (tiny) output layer."""
    torch.manual_seed(0)
    hidden = 4
    x = torch.randn(1, ROWS, hidden, dtype=torch.bfloat16, requires_grad=True)
    w = torch.randn(vocab, hidden, dtype=torch.bfloat16, requires_grad=True)
    labels = torch.randint(0, vocab, (1, ROWS))
    mode = LiveBytes()
    with mode:
        pred = x @ w.t()
        loss = F.cross_entropy(pred.flatten(0, 1).float(), labels.flatten(0, 1))
        if not keep_logits:
            del pred
        loss.backward()
    return mode.peak


def chunked_peak(vocab: int, chunks: int, hidden: int = 4) -> int:
    """Peak bytes of torchtitan's ChunkedLossWrapper on ROWS tokens (components/loss.py): the decoder output
    detached in `chunks` pieces, each piece's output matmul, fp32 cross-entropy (cross_entropy_loss) and backward
    at once, its input gradient copied into an fp32 GradAccumulator, then the decoder's backward from that sum
    in 16 bits."""
    torch.manual_seed(0)
    x = torch.randn(ROWS, hidden, dtype=torch.bfloat16, requires_grad=True)
    w = torch.randn(vocab, hidden, dtype=torch.bfloat16, requires_grad=True)
    labels = torch.randint(0, vocab, (ROWS,))
    rows = ROWS // chunks
    mode = LiveBytes()
    with mode:
        hidden_states = x * 1  # the final norm's output
        pieces = [c.detach().requires_grad_(True) for c in torch.split(hidden_states, rows, dim=0)]
        accumulated = torch.zeros(ROWS, hidden, dtype=torch.float32)
        for i, (piece, target) in enumerate(zip(pieces, torch.split(labels, rows), strict=True)):
            logits = piece @ w.t()
            loss = F.cross_entropy(logits.float(), target, reduction="sum")
            loss.backward()
            assert piece.grad is not None
            accumulated[i * rows:(i + 1) * rows].copy_(piece.grad)
            piece.grad = None
        hidden_states.backward(accumulated.to(torch.bfloat16))
    return mode.peak


def loss_parallel_peak(vocab: int) -> int | None:
    """Peak bytes of loss_parallel's local forward and backward on one rank's fp32 logits shard (the 16-bit
    logits it was cast from are alive in forward, as in the trainer); None where this PyTorch lacks them."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    try:
        from torch.distributed.tensor.parallel import loss as lp
    except ImportError:
        return None
    forward, backward = getattr(lp, "_log_softmax", None), getattr(lp, "_nll_loss_and_log_softmax_backward", None)
    if forward is None or backward is None or dist.is_initialized():
        return None
    with tempfile.TemporaryDirectory() as tmp:
        dist.init_process_group("gloo", init_method=f"file://{os.path.join(tmp, 'rendezvous')}", rank=0,
                                world_size=1)
        try:
            mesh = init_device_mesh("cpu", (1,))
            torch.manual_seed(0)
            labels = torch.randint(0, vocab, (ROWS,))
            mode = LiveBytes()
            with mode:
                logits = torch.randn(ROWS, vocab).to(torch.bfloat16)
                x = logits.float()
                log_probs = forward(x, 1, False, mesh, 0)
                del x, logits  # the trainer's `del pred`: backward sees only what autograd saved
                total = torch.tensor(float(ROWS))
                backward(torch.ones(()), log_probs, labels, None, 1, -100, total, torch.Size((ROWS, vocab)), 1,
                         mesh, 0)
            return mode.peak
        finally:
            dist.destroy_process_group()
