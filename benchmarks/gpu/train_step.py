"""Real training steps of a ~0.85B-parameter Llama on one GPU, next to planner's `training_time` and
`training_memory` for the same model, layout and recipe.

Model: transformers `LlamaForCausalLM` built from a config (16 layers, hidden 2048, 16 heads, 4 KV heads,
SwiGLU FFN 5632, vocab 32000, untied embeddings, no dropout), attention through
`attn_implementation="sdpa"` (PyTorch picks a flash or cuDNN kernel: no s² tensor is kept), loss from
`labels=input_ids`. planner reads the same config through `model_from_hf_config`.

Recipe (what the memory and time predictions are asked about):

- bf16 parameters and bf16 gradients (autograd's `.grad`, freed after each step: set-to-none);
- an fp32 master copy of every parameter and fp32 AdamW moments (`torch.optim.AdamW`, fused on CUDA),
  stepped one parameter at a time: its bf16 gradient is upcast, the master updated, copied back to bf16;
- `clip_grad_norm_(1.0)` over the bf16 gradients before the update;
- the step's output (with its 16-bit logits) is held until backward ends, as a training loop holding
  `outputs` does.

That is planner's `Layout(fp32_grad_accumulation=False, optimizer="adamw", zero=0, tp=pp=dp=1)`:
2 + 2 + (4 + 8) = 16 bytes per parameter, with `Implementation(fused_kernels=False, attention="flash")`
for Hugging Face's unfused kernels. planner's default recipe is Megatron-LM's, which accumulates
gradients in an fp32 `main_grad` buffer (`fp32_grad_accumulation=True`, 18 B/param, and 4-byte
gradient traffic in the time model); these steps do not measure that recipe.

Layouts: micro-batch 1 and 4 (one micro-batch per step), recompute none and full (Hugging Face
activation checkpointing of every decoder layer, non-reentrant), sequence 1,024 and 4,096. Per layout:
`--warmup` untimed steps (the first creates the optimizer state), then `--iters` steps between CUDA
events (median kept; forward+backward and clip+optimizer timed apart), `torch.cuda.max_memory_allocated`
over the timed steps, the bytes resident before a step (weights + optimizer state) and the device memory
in use afterwards (`torch.cuda.mem_get_info`: CUDA context and the allocator's cached pool included).

    python benchmarks/gpu/train_step.py --gpu h100-sxm
    python benchmarks/gpu/train_step.py --smoke
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from typing import Any

import torch
from common import GIB, device, median, num, repetitions, script_main, synchronize, table

from planner.interop.hf_config import model_from_hf_config
from planner.model.memory import training_memory
from planner.model.params import count_params
from planner.model.perf import training_time, utilisation_peak
from planner.schema import GpuSku, Implementation, Layout, ModelSpec

CONFIG = {"hidden_size": 2048, "intermediate_size": 5632, "num_attention_heads": 16, "num_key_value_heads": 4,
          "num_hidden_layers": 16, "vocab_size": 32000, "max_position_embeddings": 4096}
SMOKE_CONFIG = {"hidden_size": 128, "intermediate_size": 352, "num_attention_heads": 4, "num_key_value_heads": 2,
                "num_hidden_layers": 2, "vocab_size": 1000, "max_position_embeddings": 128}
SEQS = (1024, 4096)
SMOKE_SEQS = (64, 128)
MICRO_BATCHES = (1, 4)
RECOMPUTE = ("none", "full")
IMPL = Implementation(fused_kernels=False, attention="flash", dropout=0.0)
LR = 1e-5


def llama_config(smoke: bool) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(**(SMOKE_CONFIG if smoke else CONFIG), attn_implementation="sdpa", use_cache=False,
                       tie_word_embeddings=False, attention_dropout=0.0)


def layout(mbs: int, recompute: str) -> Layout:
    """planner's description of these steps: one GPU, one micro-batch per step, the recipe above."""
    return Layout(tp=1, pp=1, dp=1, zero=0, recompute=recompute, micro_batch=mbs, global_batch=mbs,
                  precision="bf16", fp32_grad_accumulation=False, optimizer="adamw")


class MasterAdamW:
    """fp32 master weights and fp32 AdamW moments for a bf16 model, stepped one parameter at a time so
    that only one parameter's fp32 gradient exists at once."""

    def __init__(self, params: list[torch.nn.Parameter], fused: bool) -> None:
        self.pairs = [(p, p.detach().float()) for p in params if p.requires_grad]
        self.opts = [torch.optim.AdamW([m], lr=LR, betas=(0.9, 0.95), weight_decay=0.1, fused=fused or None)
                     for _, m in self.pairs]

    @torch.no_grad()
    def step(self) -> None:
        for (p, m), opt in zip(self.pairs, self.opts, strict=True):
            if p.grad is None:
                continue
            m.grad = p.grad.float()
            p.grad = None
            opt.step()
            m.grad = None
            p.copy_(m)


def set_recompute(model: Any, full: bool) -> None:
    """Hugging Face activation checkpointing of every decoder layer (non-reentrant), on or off."""
    kwargs = {"use_reentrant": False}
    if full:
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    elif hasattr(model, "activation_checkpointing_disable"):
        model.activation_checkpointing_disable()
    else:
        model.gradient_checkpointing_disable()


@dataclass
class Measured:
    step: float
    fwd_bwd: float
    optimizer: float
    loss: float
    resident: int | None = None  # bytes allocated before a step: weights + master + moments
    max_allocated: int | None = None
    device_used: int | None = None  # CUDA context + the allocator's pool, after the steps


def _clock(dev: torch.device) -> Any:
    if dev.type == "cuda":
        ev = torch.cuda.Event(enable_timing=True)
        ev.record()
        return ev
    return time.perf_counter()


def _elapsed(a: Any, b: Any) -> float:
    return a.elapsed_time(b) / 1e3 if isinstance(a, torch.cuda.Event) else b - a


def run_layout(model: Any, opt: MasterAdamW, dev: torch.device, mbs: int, seq: int, vocab: int, warmup: int,
               iters: int) -> Measured:
    g = torch.Generator(device=dev).manual_seed(mbs * 100_003 + seq)
    ids = torch.randint(0, vocab, (mbs, seq), device=dev, generator=g)
    params = list(model.parameters())
    marks: list[tuple[Any, Any, Any]] = []
    losses = []

    def step(timed: bool) -> None:
        t0 = _clock(dev) if timed else None
        out = model(input_ids=ids, labels=ids, use_cache=False)
        out.loss.backward()
        t1 = _clock(dev) if timed else None
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        t2 = _clock(dev) if timed else None
        losses.append(out.loss.detach())
        del out
        if timed:
            marks.append((t0, t1, t2))

    for _ in range(warmup):
        step(False)
    synchronize(dev)
    losses.clear()
    cuda = dev.type == "cuda"
    resident = torch.cuda.memory_allocated() if cuda else None
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for _ in range(iters):
        step(True)
    synchronize(dev)
    m = Measured(
        step=median(_elapsed(a, c) for a, _, c in marks),
        fwd_bwd=median(_elapsed(a, b) for a, b, _ in marks),
        optimizer=median(_elapsed(b, c) for _, b, c in marks),
        loss=float(losses[-1]),
        resident=resident,
    )
    if cuda:
        m.max_allocated = torch.cuda.max_memory_allocated()
        free, total = torch.cuda.mem_get_info()
        m.device_used = total - free
    return m


def build(smoke: bool, dev: torch.device) -> tuple[Any, MasterAdamW, ModelSpec, Any]:
    from transformers import LlamaForCausalLM

    config = llama_config(smoke)
    spec = model_from_hf_config(config.to_dict(), name="llama-0.85b-bench" if not smoke else "llama-smoke")
    torch.manual_seed(0)
    with torch.device(dev):
        model = LlamaForCausalLM(config)
    model.to(torch.bfloat16)
    model.train()
    opt = MasterAdamW(list(model.parameters()), fused=dev.type == "cuda")
    return model, opt, spec, config


def gib(x: float | None) -> str:
    return "—" if x is None else (f"{x / GIB:.2f}" if x >= 0.1 * GIB else f"{x / GIB:.2g}")


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}" if seconds >= 1e-4 else f"{seconds * 1e3:.2g}"


def ratio(a: float | None, b: float | None) -> str:
    return "—" if a is None or not b else num(a / b)


def run(gpu: GpuSku, smoke: bool, *, warmup: int | None = None, iters: int | None = None) -> str:
    dev = device(smoke)
    warmup, iters = repetitions(smoke, warmup, iters, 3, 5)
    model, opt, spec, config = build(smoke, dev)
    n_torch = sum(p.numel() for p in model.parameters())
    n_planner = count_params(spec).total
    seqs = SMOKE_SEQS if smoke else SEQS
    time_rows, mem_rows, t_ratios, m_ratios = [], [], [], []
    for seq in seqs:
        for mbs in MICRO_BATCHES:
            for rc in RECOMPUTE:
                lay = layout(mbs, rc)
                pred_t = training_time(spec, lay, gpu, seq, float(mbs * seq), impl=IMPL)
                pred_m = training_memory(spec, lay, seq, IMPL)
                set_recompute(model, rc == "full")
                label = [str(mbs), rc, str(seq)]
                try:
                    got = run_layout(model, opt, dev, mbs, seq, config.vocab_size, warmup, iters)
                except torch.cuda.OutOfMemoryError:
                    got = None
                finally:
                    model.zero_grad(set_to_none=True)
                    gc.collect()
                    if dev.type == "cuda":
                        torch.cuda.empty_cache()
                pred_alloc = pred_m.weights + pred_m.gradients + pred_m.optimizer + pred_m.activations
                if got is None:
                    time_rows.append([*label, "out of memory", *["—"] * 11])
                    mem_rows.append([*label, gib(pred_m.weights + pred_m.optimizer), "—", gib(pred_alloc),
                                     "out of memory", "—", gib(pred_m.total), "—", "—"])
                    continue
                flops = pred_t.tflops_per_gpu * 1e12 * pred_t.step_seconds  # model FLOPs of the step
                peak = utilisation_peak(gpu, lay)
                b = pred_t.breakdown
                t_ratios.append(got.step / pred_t.step_seconds)
                time_rows.append([*label, ms(got.step), ms(pred_t.step_seconds),
                                  num(got.step / pred_t.step_seconds), ms(got.fwd_bwd),
                                  ms(b["compute"]), num(got.fwd_bwd / b["compute"]),
                                  ms(got.optimizer), ms(b["optimizer"]),
                                  num(got.optimizer / b["optimizer"]), num(flops / (got.step * peak)),
                                  num(pred_t.mfu), f"{got.loss:.3f}"])
                if got.max_allocated is not None:
                    m_ratios.append(got.max_allocated / pred_alloc)
                mem_rows.append([*label, gib(pred_m.weights + pred_m.optimizer), gib(got.resident),
                                 gib(pred_alloc), gib(got.max_allocated), ratio(got.max_allocated, pred_alloc),
                                 gib(pred_m.total), gib(got.device_used), ratio(got.device_used, pred_m.total)])
    del model, opt
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return report(gpu, smoke, spec, n_torch, n_planner, time_rows, mem_rows, t_ratios, m_ratios)


def report(gpu: GpuSku, smoke: bool, spec: ModelSpec, n_torch: int, n_planner: int, time_rows: list[list[str]],
           mem_rows: list[list[str]], t_ratios: list[float], m_ratios: list[float]) -> str:
    out = ["## Training steps vs training_time and training_memory\n"]
    if smoke:
        out.append(f"Smoke run: a {spec.layers}-layer, hidden-{spec.hidden} Llama on the CPU; predictions for "
                   f"{gpu.name}. Nothing here is a measurement.\n")
    cb = torch.backends.cuda
    sdpa = ", ".join(f"{k} {'on' if f() else 'off'}" for k, f in (
        ("flash", cb.flash_sdp_enabled), ("mem-efficient", cb.mem_efficient_sdp_enabled),
        ("cuDNN", getattr(cb, "cudnn_sdp_enabled", lambda: False))))
    out.append(f"Model: {spec.layers} layers, hidden {spec.hidden}, {spec.heads} heads ({spec.n_kv_heads} KV), FFN "
               f"{spec.ffn_hidden}, vocab {spec.vocab}: {n_torch:,} parameters in torch, {n_planner:,} counted by "
               f"planner. SDPA backends: {sdpa}.\n")
    out.append("Recipe: bf16 params + bf16 grads, fp32 master + fp32 AdamW moments, clip 1.0 = planner "
               "Layout(fp32_grad_accumulation=False, optimizer=adamw, zero=0) on one GPU, "
               "Implementation(fused_kernels=False, attention=flash). planner's default (Megatron, fp32 main_grad) "
               "is not what runs here.\n")
    if t_ratios:
        line = f"**Median step-time ratio measured ÷ predicted: {num(median(t_ratios))}**"
        if m_ratios:
            line += f"; **median peak-memory ratio (max allocated ÷ predicted allocated): {num(median(m_ratios))}**"
        out.append(line + "\n")
    out.append("\n### Step time (ms; ratio = measured ÷ predicted)\n")
    out.append(table(("mbs", "recompute", "seq", "meas step", "pred step", "ratio", "meas fwd+bwd", "pred compute",
                      "ratio", "meas clip+opt", "pred optimizer", "ratio", "meas MFU", "pred MFU", "loss"),
                     time_rows))
    out.append("\n### Memory (GiB = 2^30 B; ratio = measured ÷ predicted)\n")
    out.append("pred resident = weights + optimizer state (no gradients: they are freed after each step); pred "
               "allocated = weights + gradients + optimizer + activations, against torch.cuda.max_memory_allocated; "
               "pred total adds planner's 0.5 GiB communication buffer and reserve (1 GiB + 5 %), against the "
               "device memory in use (CUDA context and cached pool included).\n")
    out.append(table(("mbs", "recompute", "seq", "pred resident", "meas resident", "pred allocated",
                      "meas max allocated", "ratio", "pred total", "meas device used", "ratio"), mem_rows))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    return script_main(__doc__, "training steps", run, "layout", 3, 5, argv)


if __name__ == "__main__":
    raise SystemExit(main())
