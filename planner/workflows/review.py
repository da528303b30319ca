"""`planner review`: judge a real training configuration, and hand back a better one in its own format.

A configuration comes as a scenario (its `layout:` and `estimate:`), Megatron-LM arguments, a DeepSpeed
JSON or a torchtitan TOML (each with a model, GPU and GPU count), or a run of published_runs.yaml. It
becomes one Layout, evaluated by `evaluate` (the model behind `planner estimate` and the
solver) even when it breaks a rule, so an illegal layout is still reviewed as far as it goes. Findings
come from that evaluation and from evaluating neighbours of the layout (other micro-batches, a weaker
recompute, ZeRO-1 for ZeRO-3). The better plan is `planner.solve` held to the same SKU, GPU count,
global batch, sequence, model and tokens, minimising time, and passed through the input's format and back
(export, then import), so it only changes what that format can say.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from planner.errors import InputError, expect
from planner.model.pipeline import bubble_slots
from planner.model.reliability import resolve as resolve_reliability
from planner.pricing import priced
from planner.report.text import gib, setting_text
from planner.scenario import Constraints, EfficiencyOverride, Pricing, Scenario
from planner.schema import Implementation, Layout, ModelSpec, Overheads, Reliability
from planner.search import NEAR_OPTIMAL_MARGIN
from planner.workflows import inputs
from planner.workflows.inputs import Inputs, default_tokens, pick
from planner.workloads.expected import IDEAL, Basis
from planner.workloads.training.evaluation import Evaluation, merged_efficiency
from planner.workloads.training.layout import as_fields
from planner.workloads.training.legality import layout_problems
from planner.workloads.training.space import PARTIAL_RECOMPUTE_FRAMEWORKS, partial_recompute_counts

if TYPE_CHECKING:
    from planner.interop.published import Case, Comparison
    from planner.search.plans import Plan

__all__ = ["Better", "Config", "Finding", "Review", "ReviewRequest", "review"]

Severity = Literal["error", "warning", "info"]
Source = Literal["scenario", "megatron", "deepspeed", "torchtitan", "published"]

# A bubble above this share of the step is worth more micro-batches or interleaving (the bar).
BUBBLE_SHARE = 0.10
# Exposed communication "dominates" when the GPUs wait on it for more than half of the step.
COMM_SHARE = 0.50
# Another micro-batch is reported when it is this much faster: beyond the time model's median error
# against published runs (≈5 %, BENCHMARKS.md), so the finding is not noise.
MICRO_BATCH_GAIN = 0.05
RECOMPUTE_ORDER = ("none", "selective", "full")
COMM_KEYS = ("tp_comm", "pp_comm", "dp_comm", "cp_comm", "ep_comm")
OVERLAP_TEXT = {
    ("tp_overlap", 1.0): "TP collectives pipelined with their GEMMs (tp_overlap 1)",
    ("ep_overlap", 1.0): "expert all-to-all under another micro-batch's compute (ep_overlap 1)",
    ("dp_overlap", 0.0): "gradient reduction after the backward, not overlapped with it (dp_overlap 0)",
    ("param_gather_overlap", 0.0): "updated parameters all-gathered inside the optimizer step, not under the next "
                                   "forward (param_gather_overlap 0)",
}
# The format a better plan is handed back in, per input; a published run is a Megatron launch.
FORMAT_OF: dict[str, str | None] = {
    "scenario": None, "megatron": "megatron", "deepspeed": "deepspeed", "torchtitan": "torchtitan",
    "published": "megatron",
}


@dataclass(frozen=True)
class Finding:
    code: str
    severity: Severity
    message: str


@dataclass
class ReviewRequest:
    """What to review. One source: `scenario` alone, or one of megatron_args / deepspeed / torchtitan
    (a scenario beside it supplies model, GPU, count, job, prices), or `published` (a run id). The
    other fields override the scenario's, as `planner estimate` flags do."""

    scenario: Scenario | None = None
    megatron_args: str | Sequence[str] | None = None
    deepspeed: str | Path | Mapping[str, Any] | None = None
    torchtitan: str | Path | Mapping[str, Any] | None = None
    published: str | None = None
    model: str | ModelSpec | None = None  # catalog name, config.json path or spec
    gpu: str | None = None
    gpus: int | None = None
    gpus_per_node: int | None = None
    tokens: float | None = None
    seq: int | None = None
    tp: int | None = None  # DeepSpeed: the model code's sizes; scenario: override
    pp: int | None = None
    micro_batch: int | None = None  # DeepSpeed: fills "auto"; scenario: override
    global_batch: int | None = None
    env: Mapping[str, str] | None = None  # Megatron-LM: values of shell variables the arguments use
    # what the plans are held to: "none" = the ideal time (default: the scenario's `reliability`, else the
    # defaults) and the step-error quantile (default: the scenario's constraints.confidence, else the point)
    reliability: Reliability | Literal["none"] | None = None
    confidence: float | None = None


@dataclass(kw_only=True)
class Config(Inputs):
    """A configuration as read, before it is judged. `gpus` is the count given; the layout may need more."""

    source: Source
    gpus: int
    read: list[Finding] = field(default_factory=list)  # what reading the input found
    fixed: dict[str, Any] = field(default_factory=dict)  # layout fields the input's format cannot change
    case: Case | None = None
    basis: Basis = IDEAL  # failures and the step-error quantile every evaluation is judged with
    form: str | None = None  # the format a better plan is handed back in, where the source's default is not it
    overlap_switch: str | None = None  # the input's setting that would overlap its unoverlapped gradient reduction
    ep_switch: str | None = None  # the input's setting that would overlap its exposed expert all-to-all
    # the input's setting that would overlap its ZeRO-1/2 parameter all-gather, where its gradient reduction is
    # overlapped (otherwise `overlap_switch` names both)
    gather_switch: str | None = None
    # the input's own settings in its format (dotted keys, as planner.interop.frameworks.settings writes them): a
    # better plan's changes run from these, not from planner's rendering of the reviewed layout
    given: dict[str, str] | None = None

    def evaluate(self, layout: Layout | None = None) -> Evaluation:
        return replace(super().evaluate(layout), basis=self.basis)

    @property
    def format(self) -> str | None:
        return self.form or FORMAT_OF[self.source]

    def problems(self, layout: Layout) -> list[str]:
        return layout_problems(self.model, layout, gpus=self.gpus, node_size=self.gpus_per_node, seq=self.seq,
                               impl=self.implementation)

    def runnable(self, layout: Layout) -> Evaluation | None:
        """The evaluation of a legal layout that fits; None otherwise."""
        if self.problems(layout):
            return None
        ev = self.evaluate(layout)
        return ev if ev.fits else None

    def export(self, fmt: str, layout: Layout) -> str:
        from planner.interop.frameworks import export

        return export(fmt, layout, model=self.model, seq=self.seq, implementation=self.implementation,
                      efficiency=self.efficiency)


@dataclass(frozen=True)
class Better:
    """The fastest runnable plan on the same hardware, as the input's format expresses it."""

    plan: Plan
    speedup: float  # reviewed planned time / this plan's (the step ratio at the point estimate)
    format: str  # megatron | deepspeed | torchtitan | torchtitan-config | layout (a scenario's fields)
    changes: list[dict[str, Any]]  # {key, from, to} in that format


@dataclass
class Review:
    config: Config
    evaluation: Evaluation
    problems: list[str]
    findings: list[Finding]
    better: Better | None = None
    published: Comparison | None = None

    @property
    def ok(self) -> bool:
        """Legal and fits: no error finding."""
        return not any(f.severity == "error" for f in self.findings)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def to_dict(self) -> dict[str, Any]:
        """The JSON of `planner review --format json` (built by planner.report.dicts)."""
        from planner.report.dicts import review_dict

        return review_dict(self)

    @property
    def emitted_layout(self) -> Layout:
        """What `emit` writes: the better plan's layout, or the reviewed one when nothing is better."""
        return self.better.plan.evaluation.layout if self.better else self.evaluation.layout

    def emit(self, fmt: str) -> str:
        """The better plan in a framework's form, or the reviewed layout when nothing is better."""
        return self.config.export(fmt, self.emitted_layout)


# --------------------------------------------------------------------------------------------
# Reading the input
# --------------------------------------------------------------------------------------------


def _given_model(req: ReviewRequest) -> ModelSpec | None:
    return inputs.given_model(req.model, req.scenario)


def _need_model(model: ModelSpec | None, what: str) -> ModelSpec:
    if model is None:
        raise InputError(f"--model: {what} does not give the model; name it with --model or --model-config")
    return model


def _need_gpus(req: ReviewRequest, what: str) -> int:
    gpus = inputs.given_gpus(req.gpus, req.scenario)
    if gpus is None:
        raise InputError(f"--gpus: give the GPU count ({what} derives the data-parallel size from it)")
    return int(gpus)


def _common(req: ReviewRequest, model: ModelSpec) -> dict[str, Any]:
    """GPU, node, tokens, prices, overheads and efficiencies: flags over the scenario over defaults."""
    return inputs.hardware(req.scenario, model, gpu=req.gpu, gpus_per_node=req.gpus_per_node, tokens=req.tokens)


def _dp(gpus: int, per_replica: int) -> int:
    """Data-parallel size on `gpus` GPUs; at least 1, so a layout needing more GPUs is still reviewed."""
    return max(1, gpus // per_replica)


def _listed(unknown: Sequence[str], unsupported: Mapping[str, str], notes: Sequence[str],
            what: str) -> list[Finding]:
    """What a parser could not use: unknown keys and unsupported settings are warnings, notes info."""
    out = [Finding("unknown_setting", "warning", f"{k}: not a {what} setting planner knows; not taken into account")
           for k in unknown]
    out += [Finding("unsupported_setting", "warning", f"{k}: {why}") for k, why in unsupported.items()]
    out += [Finding("note", "info", n) for n in notes]
    return out


def _from_scenario(req: ReviewRequest) -> Config:
    sc = req.scenario
    assert sc is not None
    model = _need_model(_given_model(req), "the scenario")
    common = _common(req, model)
    gpus = inputs.given_gpus(req.gpus, sc)
    seq = req.seq or sc.job.seq_len
    layout = inputs.layout(sc, model, overrides={"tp": req.tp, "pp": req.pp, "micro_batch": req.micro_batch},
                           gpus=gpus, global_batch=req.global_batch, precision=None,
                           node=common["gpus_per_node"], seq=seq, strict=False,
                           seq_key="--seq" if req.seq else "job.seq_len")
    return Config(source="scenario", model=model, layout=layout, gpus=gpus or layout.gpus, seq=seq,
                  implementation=sc.implementation, **common)


def _from_megatron(req: ReviewRequest) -> Config:
    from planner.interop.megatron import OVERLAP_FLAGS, parse_megatron_args

    assert req.megatron_args is not None
    given = _given_model(req)
    cfg = parse_megatron_args(req.megatron_args, model=given, env=req.env)
    model = _need_model(cfg.model or given, "the Megatron-LM arguments (no --num-layers, --hidden-size, ...)")
    gpus = _need_gpus(req, "Megatron-LM")
    n = cfg.gpus_needed_per_dp_replica
    dp = _dp(gpus, n)
    if cfg.global_batch and cfg.micro_batch and cfg.global_batch % (cfg.micro_batch * dp):
        # Megatron refuses this batch; review it anyway with the batch as written
        layout = replace(cfg, global_batch=None).to_layout(n * dp).model_copy(update={"global_batch": cfg.global_batch})
    else:
        layout = cfg.to_layout(n * dp)
    sc = req.scenario
    read = [f for f in cfg.ignored if f not in OVERLAP_FLAGS]
    ignored = [Finding("ignored_flags", "info", f"{len(read)} flags change neither memory nor time: "
                       + " ".join(read))] if read else []
    if layout.gpus == gpus and (launch := cfg.launch_mismatch(gpus)) is not None:  # else the layout's own finding
        ignored.insert(0, Finding("gpu_count_mismatch", "warning", launch))
    common, overlap_notes = _with_overlaps(_common(req, model), cfg.overlaps())
    impl = cfg.implementation()
    ep_exposed = _ep_overlap_allowed(layout, impl) and not common["efficiency"].ep_overlap
    # Megatron takes --overlap-param-gather only beside --overlap-grad-reduce (megatron/training/arguments.py)
    grads_off = common["efficiency"].dp_overlap == 0.0
    gather_off = common["efficiency"].param_gather_overlap == 0.0
    return Config(source="megatron", model=model, layout=layout, gpus=gpus,
                  overlap_switch="--overlap-grad-reduce" + (" --overlap-param-gather" if gather_off else "")
                  if grads_off else None,
                  gather_switch="--overlap-param-gather" if gather_off and not grads_off else None,
                  ep_switch="--overlap-moe-expert-parallel-comm --delay-wgrad-compute" if ep_exposed else None,
                  seq=pick(cfg.seq, req.seq, sc.job.seq_len if sc else None, model.training_seq),
                  implementation=impl,
                  read=_listed(cfg.unknown, cfg.unsupported, cfg.notes + overlap_notes, "Megatron-LM") + ignored,
                  **common)



def _ep_overlap_allowed(layout: Layout, impl: Implementation) -> bool:
    """Whether Megatron-Core accepts --overlap-moe-expert-parallel-comm for this run (transformer_config.py
    __post_init__): expert parallelism through the all-to-all or flex dispatcher, virtual stages where PP > 1, and
    no full recompute or recompute of the MoE layer."""
    return (layout.ep > 1 and impl.moe_token_dispatcher in (None, "alltoall", "flex")
            and (layout.pp == 1 or layout.vpp > 1) and layout.recompute != "full"
            and "moe" not in (impl.recompute_modules or []))


def _switch(common: dict[str, Any], switch: str) -> str | None:
    """`switch` where the input leaves the gradient reduction unoverlapped (dp_overlap 0 taken from it)."""
    return switch if common["efficiency"].dp_overlap == 0.0 else None


def _with_overlaps(common: dict[str, Any], overlaps: Mapping[str, float]) -> tuple[dict[str, Any], list[str]]:
    """The input's own communication overlaps as efficiency fields, where the scenario's `efficiency:` sets none
    of its own; with a note per field taken."""
    eff = common["efficiency"]
    taken = {k: v for k, v in overlaps.items() if getattr(eff, k) is None}
    notes = [f"as the input sets it: {OVERLAP_TEXT.get((k, v), f'{k} {v:g}')}" for k, v in taken.items()]
    return {**common, "efficiency": eff.model_copy(update=taken)}, notes


def _from_deepspeed(req: ReviewRequest) -> Config:
    from planner.interop.deepspeed import parse_deepspeed_config

    assert req.deepspeed is not None
    cfg = parse_deepspeed_config(req.deepspeed)
    model = _need_model(_given_model(req), "a DeepSpeed config")
    gpus = _need_gpus(req, "DeepSpeed")
    tp, pp = req.tp or 1, req.pp or 1
    sc = req.scenario
    layout = cfg.to_layout(
        tp * pp * _dp(gpus, tp * pp), tp, pp, micro_batch=req.micro_batch,
        # the scenario's job fills what the file leaves "auto", as the Trainer's arguments would
        global_batch=pick(req.global_batch, sc.job.global_batch if sc and cfg.train_batch is None else None),
        precision=sc.job.precision if sc and cfg.precision is None else None,
    )
    common, overlap_notes = _with_overlaps(_common(req, model), cfg.overlaps())
    return Config(source="deepspeed", model=model, layout=layout, gpus=gpus, given=cfg.settings,
                  overlap_switch=_switch(common, "zero_optimization.overlap_comm: true") if cfg.zero > 0 else None,
                  seq=pick(req.seq, sc.job.seq_len if sc else None, model.training_seq),
                  implementation=cfg.implementation(sc.implementation if sc else None),
                  read=_listed(cfg.unknown, cfg.unsupported, cfg.notes + overlap_notes, "DeepSpeed"),
                  # TP, PP, CP and sequence parallelism live in the model code and launcher, not in the JSON
                  fixed={"tp": tp, "pp": pp, "cp": 1, "vpp": 1, "ep": 1, "sequence_parallel": False},
                  **common)


def _from_torchtitan(req: ReviewRequest) -> Config:
    from planner.interop.torchtitan import parse_torchtitan_toml

    assert req.torchtitan is not None
    cfg = parse_torchtitan_toml(req.torchtitan, model=_given_model(req))
    model = _need_model(cfg.model, f"{cfg.where} ([model] flavor {cfg.flavor})")
    gpus = _need_gpus(req, "torchtitan")
    sc = req.scenario
    common, overlap_notes = _with_overlaps(_common(req, model), {"tp_overlap": 1.0} if cfg.async_tp else {})
    if not cfg.precision_read and sc is not None and "precision" in sc.job.model_fields_set:
        # a saved Trainer.Config cannot say whether Float8 / MXFP8 converters ran: the scenario says
        fp8 = sc.job.precision == "fp8"
        cfg = replace(cfg, precision=sc.job.precision, fp8_recipe=sc.implementation.fp8_recipe if fp8 else None,
                      fp8_param_gather=fp8 and sc.implementation.fp8_param_gather,
                      notes=[n for n in cfg.notes if "quantisation converters" not in n]
                      + [f"precision {sc.job.precision} from the scenario's job.precision"])
    others = cfg.replicate * cfg.tp * cfg.pp * cfg.cp
    layout = cfg.to_layout(others * (_dp(gpus, others) if cfg.shard == -1 else cfg.shard))
    return Config(source="torchtitan", model=model, layout=layout, gpus=gpus, seq=cfg.seq,
                  form=None if cfg.toml else "torchtitan-config",  # a saved config: today's torchtitan
                  implementation=cfg.implementation(sc.implementation if sc else None),
                  read=_listed(cfg.unknown, cfg.unsupported, cfg.notes + overlap_notes, "torchtitan"), **common)


def _from_published(req: ReviewRequest) -> Config:
    from planner.interop.published import find_case

    assert req.published is not None
    if req.gpu or req.gpus or req.model:
        raise InputError("--published: the run fixes its model, GPU and count; drop --model, --gpu and --gpus")
    case = find_case(req.published)
    taken = "; ".join(case.notes)
    read = [Finding("note", "info", f"not stated by the source, taken as: {taken}")] if case.notes else []
    return Config(
        source="published", model=case.model, layout=case.layout, gpu=case.sku, gpus=case.layout.gpus,
        gpus_per_node=case.gpus_per_node, seq=case.seq,
        tokens=float(req.tokens or default_tokens(case.model)),
        implementation=case.impl, overheads=Overheads(), efficiency=EfficiencyOverride(),
        pricing=priced(case.gpu, Pricing()), read=read, case=case,
    )


def review_basis(req: ReviewRequest) -> Basis:
    """The request's reliability and confidence over the scenario's over the defaults (failures counted,
    the point estimate)."""
    sc = req.scenario
    rel = pick(inputs.reliability_choice(req.reliability), sc.reliability if sc else None, Reliability())
    conf = pick(req.confidence, sc.constraints.confidence if sc else None)
    if conf is not None:
        try:
            Constraints(confidence=conf)
        except ValueError as e:
            raise InputError(f"--confidence: {conf!r} is outside [0.5, 0.99] ({type(e).__name__})") from None
    return Basis(resolve_reliability(rel), conf)


def load_config(req: ReviewRequest) -> Config:
    """Read the request's one configuration, judged on the request's basis; InputError for a bad or
    ambiguous input."""
    return replace(_read_config(req), basis=review_basis(req))


def _read_config(req: ReviewRequest) -> Config:
    expect(req, ReviewRequest, "review(request)")
    readable: tuple[tuple[str, Any], ...] = (("scenario", Scenario), ("megatron_args", (str, list, tuple)),
                                           ("deepspeed", (str, Path, Mapping)), ("torchtitan", (str, Path, Mapping)),
                                           ("published", str))
    for name, kinds in readable:
        if getattr(req, name) is not None:
            expect(getattr(req, name), kinds, f"ReviewRequest.{name}")
    sources = [n for n in ("megatron_args", "deepspeed", "torchtitan", "published") if getattr(req, n) is not None]
    if len(sources) > 1:
        raise InputError(f"give one configuration to review, not {' and '.join(sources)}")
    if req.published is not None:
        if req.scenario is not None:
            raise InputError("--published: the run is the whole configuration; drop the scenario")
        return _from_published(req)
    if req.megatron_args is not None:
        return _from_megatron(req)
    if req.deepspeed is not None:
        return _from_deepspeed(req)
    if req.torchtitan is not None:
        return _from_torchtitan(req)
    if req.scenario is None:
        raise InputError("nothing to review: give a scenario, --megatron-args, --deepspeed, --torchtitan or "
                         "--published")
    return _from_scenario(req)


# --------------------------------------------------------------------------------------------
# Findings
# --------------------------------------------------------------------------------------------


def _step(a: Evaluation, b: Evaluation) -> str:
    return f"step {a.time.step_seconds:.2f} s → {b.time.step_seconds:.2f} s"


def _legality(c: Config, ev: Evaluation, problems: list[str]) -> list[Finding]:
    """Every broken rule is an error, coded by what it is about."""
    out = []
    for p in problems:
        field_name = p.split(":", 1)[0]
        if field_name == "tp" and ("spans nodes" in p or "node size" in p):
            t = ev.time
            out.append(Finding("tp_spans_nodes", "error", f"{p}: every layer's TP collectives cross the network, "
                               f"{t.breakdown.get('tp_comm', 0.0):.2f} s of the {t.step_seconds:.2f} s step"))
        elif field_name == "tp":
            out.append(Finding("heads_not_divisible", "error", p))
        elif field_name in ("pp", "pp·vpp"):
            out.append(Finding("layers_not_divisible", "error", p))
        elif field_name == "global_batch":
            out.append(Finding("global_batch_not_divisible", "error", p))
        elif field_name == "gpus":
            lay = ev.layout
            more = "more GPUs than given" if lay.gpus > c.gpus else "fewer GPUs than given (the rest idle)"
            out.append(Finding("gpu_count_mismatch", "error", f"the layout needs {more}: {p}"))
        else:
            out.append(Finding("illegal_layout", "error", p))
    return out


def _memory(ev: Evaluation) -> list[Finding]:
    if ev.fits:
        return []
    parts = ev.memory.as_dict()
    del parts["total"]
    biggest = max(parts, key=lambda k: parts[k])
    return [Finding("does_not_fit", "error",
                    f"needs {gib(ev.memory.total)} per GPU on pipeline stage {ev.memory.stage}, "
                    f"{gib(ev.capacity_bytes)} available: short by {gib(-ev.headroom_bytes)} "
                    f"({biggest} {gib(parts[biggest])} the largest part)")]


def _time(ev: Evaluation) -> list[Finding]:
    t, lay = ev.time, ev.layout
    out: list[Finding] = []
    if len(t.breakdown) == 1:  # a fixed utilisation: no breakdown to judge
        return out
    bubble = t.breakdown.get("bubble", 0.0)
    if bubble > BUBBLE_SHARE * t.step_seconds:
        m = lay.grad_accumulation
        out.append(Finding(
            "pipeline_bubble", "warning",
            f"pipeline bubble {bubble:.2f} s, {bubble / t.step_seconds:.0%} of the step: PP {lay.pp} with {m} "
            f"micro-batches per step" + (f" and {lay.vpp} virtual stages" if lay.vpp > 1 else "")
            + f" idle (p − 1)/(v·m) = {bubble_slots(lay.pp, lay.vpp) / max(m, 1):.2f} of the compute time; more "
            "micro-batches per step (a smaller micro-batch, less DP) or interleaving (vpp) shrink it"))
    comm = {k: t.breakdown.get(k, 0.0) for k in COMM_KEYS}
    exposed = sum(comm.values())
    if exposed > COMM_SHARE * t.step_seconds:
        top = max(comm, key=lambda k: comm[k])
        out.append(Finding(
            "exposed_communication", "warning",
            f"exposed communication {exposed:.2f} s is {exposed / t.step_seconds:.0%} of the step "
            f"(compute {t.breakdown.get('compute', 0.0):.2f} s); largest: {top} {comm[top]:.2f} s"))
    return out


def _overlap(c: Config, ev: Evaluation) -> list[Finding]:
    """What the input's own switches would save, where it leaves them off and that saves at least
    MICRO_BATCH_GAIN's share of the step: the gradient reduction overlapped with the backward, the ZeRO-1/2
    parameter all-gather with the next forward, and (Megatron-Core, combined_1f1b.py) one micro-batch's expert
    all-to-all run under another's compute."""
    out = []
    # Megatron takes --overlap-param-gather only beside --overlap-grad-reduce (megatron/training/arguments.py): where
    # both are off, one finding names both
    both = c.overlap_switch is not None and "--overlap-param-gather" in c.overlap_switch
    for switch, code, update, where in (
        (c.overlap_switch, "gradient_reduction_not_overlapped", {"dp_overlap": None, "param_gather_overlap": None},
         "behind the backward" + (" and the next forward" if both else "")),
        (c.gather_switch, "parameter_gather_not_overlapped", {"param_gather_overlap": None}, "under the next forward"),
        (c.ep_switch, "expert_all_to_all_not_overlapped", {"ep_overlap": 1.0}, "under another micro-batch's compute"),
    ):
        if switch is None:
            continue
        on = replace(c, efficiency=c.efficiency.model_copy(update=update)).evaluate(c.layout)
        saved = ev.time.step_seconds - on.time.step_seconds
        if saved >= MICRO_BATCH_GAIN * ev.time.step_seconds:
            step = ev.time.step_seconds
            text = f"{switch} would hide {saved:.2f} s of the {step:.2f} s step ({saved / step:.0%}) {where}"
            out.append(Finding(code, "warning", text))
    return out


def _recompute_text(lay: Layout) -> str:
    """'full', 'selective', or 'full of 2 layers per model chunk' (Megatron's block method)."""
    if lay.recompute == "full" and lay.recompute_num_layers is not None and lay.recompute_method == "block":
        return f"full of {lay.recompute_num_layers} layer(s) per model chunk"
    return lay.recompute


def _neighbours(c: Config, ev: Evaluation) -> list[Finding]:
    """Layouts one setting away that fit and run faster: micro-batch, recompute, the CP exchange, ZeRO-1 for
    ZeRO-3."""
    from planner.workloads.grid import divisors

    lay, out = ev.layout, []

    def variant(**changes: Any) -> Evaluation | None:
        return c.runnable(lay.model_copy(update=changes))

    if lay.global_batch % lay.dp == 0:
        options = [e for d in divisors(lay.global_batch // lay.dp) if d != lay.micro_batch
                   if (e := variant(micro_batch=d)) is not None]
        best = min(options, key=lambda e: e.time.step_seconds, default=None)
        if best is not None and ev.time.step_seconds > (1 + MICRO_BATCH_GAIN) * best.time.step_seconds:
            out.append(Finding(
                "micro_batch", "warning",
                f"micro-batch {lay.micro_batch} is far from the best: micro-batch {best.layout.micro_batch} "
                f"fits ({gib(best.memory.total)} of {gib(best.capacity_bytes)}) and is "
                f"{ev.time.step_seconds / best.time.step_seconds:.2f}× faster ({_step(ev, best)})"))
    # a layout that fits is asked for less recompute; one that does not, for any recompute that fits (a partial
    # full recompute is not ordered against selective: it may hold more than selective does)
    modes = RECOMPUTE_ORDER[:RECOMPUTE_ORDER.index(lay.recompute)] if ev.fits else RECOMPUTE_ORDER
    options = [e for r in modes if (r, None) != (lay.recompute, lay.recompute_num_layers)
               if (e := variant(recompute=r, recompute_num_layers=None)) is not None]
    if (lay.recompute == "full" or not ev.fits) and c.implementation.framework in PARTIAL_RECOMPUTE_FRAMEWORKS:
        # Megatron's block method: only the first n layers of each model chunk, fewer than recomputed now
        now = lay.recompute_num_layers if lay.recompute_method == "block" and lay.recompute == "full" else None

        def wanted(n: int) -> bool:  # fewer layers than now where it fits, any other count where it does not
            return (now is None or n < now) if ev.fits else n != now

        options += [e for n in partial_recompute_counts(c.model.layers) if wanted(n)
                    if (e := variant(recompute="full", recompute_num_layers=n, recompute_method="block")) is not None]
    best = min(options, key=lambda e: e.time.step_seconds, default=None)
    if best is not None and ev.fits and best.time.step_seconds < ev.time.step_seconds:
        out.append(Finding(
            "recompute_stronger_than_needed", "warning",
            f"recompute {_recompute_text(lay)} is stronger than needed: {_recompute_text(best.layout)} fits "
            f"({gib(best.memory.total)} of {gib(best.capacity_bytes)}) and is "
            f"{ev.time.step_seconds / best.time.step_seconds:.2f}× faster ({_step(ev, best)}); "
            f"{_recompute_text(lay)} leaves {gib(ev.headroom_bytes)} unused"))
    elif best is not None and not ev.fits:
        ratio = ev.time.step_seconds / best.time.step_seconds
        speed = f"{ratio:.2f}× faster" if ratio >= 1 else f"{1 / ratio:.2f}× slower"
        out.append(Finding(
            "recompute_that_fits", "warning",
            f"recompute {_recompute_text(lay)} does not fit; {_recompute_text(best.layout)} fits "
            f"({gib(best.memory.total)} of {gib(best.capacity_bytes)}) and is {speed} ({_step(ev, best)})"))
    out += _cp_exchanges(c, ev)
    if lay.zero == 3 and (z1 := variant(zero=1)) is not None:
        ratio = ev.time.step_seconds / z1.time.step_seconds
        speed = ("as fast" if abs(ratio - 1) < 0.005 else f"{ratio:.2f}× faster" if ratio > 1
                 else f"{1 / ratio:.2f}× slower")
        out.append(Finding(
            "zero3_where_zero1_fits", "warning",
            f"ZeRO-3 gathers every layer's weights each micro-batch, but ZeRO-1 fits ({gib(z1.memory.total)} of "
            f"{gib(z1.capacity_bytes)}) and is {speed} ({_step(ev, z1)})"))
    return out


def _cp_exchanges(c: Config, ev: Evaluation) -> list[Finding]:
    """Transformer Engine's other context-parallel exchanges on the same layout (ring, all-to-all, all-gather and
    every a2a+p2p split), where one is legal, fits and runs at least MICRO_BATCH_GAIN faster: the best of them."""
    from planner.interop.megatron import CP_COMM_TYPE_OF, cp_exchange_args
    from planner.workloads.grid import divisors

    lay, impl = ev.layout, c.implementation
    if lay.cp == 1 or impl.framework != "megatron-core":
        return []
    current = impl.cp_exchange or "ring"
    options = [impl.model_copy(update={"cp_exchange": x, "cp_a2a_size": None}) for x in ("ring", "ulysses",
                                                                                         "te_allgather")]
    options += [impl.model_copy(update={"cp_exchange": "hierarchical", "cp_a2a_size": a})
                for a in divisors(lay.cp) if 1 < a < lay.cp]
    runs = []
    for o in options:
        if (o.cp_exchange, o.cp_a2a_size) == (current, impl.cp_a2a_size):
            continue
        other = replace(c, implementation=o)
        if not other.problems(lay) and (e := other.evaluate(lay)).fits:
            runs.append((e, o))
    if not runs:
        return []
    best, o = min(runs, key=lambda r: r[0].time.step_seconds)
    if ev.time.step_seconds <= (1 + MICRO_BATCH_GAIN) * best.time.step_seconds:
        return []
    flag = " ".join(cp_exchange_args(o, lay.cp)) or f"--cp-comm-type {CP_COMM_TYPE_OF['ring']}"
    key = f"implementation.cp_exchange {o.cp_exchange}" + (f", cp_a2a_size {o.cp_a2a_size}" if o.cp_a2a_size else "")
    return [Finding("cp_exchange", "warning",
                    f"context parallelism through {key} ({flag}) fits ({gib(best.memory.total)} of "
                    f"{gib(best.capacity_bytes)}) and is {ev.time.step_seconds / best.time.step_seconds:.2f}× faster "
                    f"than through {current} ({_step(ev, best)})")]


# --------------------------------------------------------------------------------------------
# Better on the same hardware
# --------------------------------------------------------------------------------------------


def _variants(c: Config) -> list[dict[str, Any]]:
    """Fixed-field sets to search: the solver keeps one best layout per (SKU, count), so choices the format
    cannot express are searched separately rather than filtered out afterwards."""
    if c.source == "deepspeed":  # DeepSpeed's JSON says full recompute or none, and any ZeRO stage
        return [{"recompute": r, "zero": z} for r in ("none", "full") for z in (0, 1, 2, 3)]
    if c.source == "torchtitan":  # FSDP2 (ZeRO-3), FSDP without resharding (ZeRO-2), or plain DDP
        return [{}, {"zero": 3}, {"zero": 2}]
    return [{}]


def _search_scenario(c: Config) -> Scenario:
    from planner.scenario import FixedLayout, Hardware, Job

    lay = c.layout
    eff = merged_efficiency(c.gpu, c.efficiency).model_dump(exclude={"source"})
    return Scenario(
        name="review", model=c.model,
        job=Job(tokens=c.tokens, seq_len=c.seq, global_batch=lay.global_batch, precision=lay.precision,
                optimizer=lay.optimizer, fp32_grad_accumulation=lay.fp32_grad_accumulation,
                master_weights=lay.master_weights, moment_dtype=lay.moment_dtype),
        hardware=Hardware(skus=[c.gpu.name], gpus_per_node=c.gpus_per_node),
        # the objective is time; a placeholder rate lets the solver run on a SKU without a price
        pricing=c.pricing or Pricing(usd_per_gpu_hour={c.gpu.name: 1.0}),
        layout=FixedLayout(sku=c.gpu.name, gpus=c.gpus, offload_optimizer=lay.offload_optimizer, **c.fixed),
        objective="time", top_k=1, implementation=c.implementation, overheads=c.overheads,
        reliability=c.basis.reliability or "none", constraints=Constraints(confidence=c.basis.confidence),
        # the reviewed GPU's own efficiencies (a published run's overlaps), the scenario's fixed utilisation
        efficiency=EfficiencyOverride(**eff, mfu=c.efficiency.mfu, hfu=c.efficiency.hfu),
    )


def _layout_changes(a: Layout, b: Layout) -> list[dict[str, Any]]:
    da, db = as_fields(a), as_fields(b)  # the scenario's layout keys; micro-batches per step follow from them
    keys = [*db, *(k for k in da if k not in db)]  # a key one side leaves unset (an explicit pipeline layout)
    return [{"key": k, "from": da.get(k), "to": db.get(k)} for k in keys
            if da.get(k) != db.get(k) and k != "grad_accumulation"]


def _candidates(c: Config, base: Scenario, time_limit_s: float) -> tuple[list[Evaluation], list[str], bool]:
    """The solver's best plan for each variant, as the input's format runs it (export, then import), kept
    when it is legal and fits; with the solver's reasons where it found none, and whether it found any."""
    from planner.interop.frameworks import round_trip
    from planner.workflows.solve import solve

    found: list[Evaluation] = []
    reasons: list[str] = []
    solved = False
    variants = _variants(c)
    for v in variants:
        sc = base.model_copy(update={"layout": base.layout.model_copy(update=v)})
        try:
            result = solve(sc, time_limit_s=time_limit_s / len(variants), top_k=1)
        except InputError:
            continue  # fixed fields the search rejects outright
        reasons += result.reasons
        solved = solved or bool(result.plans)
        for plan in result.plans:
            layout = plan.evaluation.layout
            if c.format is not None:
                try:
                    layout = round_trip(c.format, layout, model=c.model, seq=c.seq, implementation=c.implementation)
                except InputError:
                    continue  # the framework cannot run this plan
            if (e := c.runnable(layout)) is not None:
                found.append(e)
    return found, list(dict.fromkeys(reasons)), solved


def search_better(c: Config, ev: Evaluation, *, time_limit_s: float = 30.0) -> tuple[Better | None, list[Finding]]:
    """The fastest runnable plan on the same SKU, GPU count and global batch that the input's format can
    express, when it beats the reviewed layout (or the reviewed layout cannot run)."""
    from planner.interop.frameworks import changes
    from planner.search.candidates import integer_units
    from planner.search.plans import Plan

    base = _search_scenario(c)
    fmt, lay = c.format, ev.layout
    found, reasons, solved = _candidates(c, base, time_limit_s)
    if not found:
        why = f"the search found no layout of {c.model.name} with global batch {lay.global_batch} that fits " \
              f"{c.gpus} × {c.gpu.name}" + (f" and {fmt} can express" if solved else "")
        return None, [Finding("no_better_layout", "info", why + "".join(f"; {r}" for r in reasons))]
    # on the same GPUs the failure stretch is the same: the planned time orders them as the step at the
    # planning quantile does (the step itself at the point estimate)
    best = min(found, key=lambda e: e.planned_seconds)
    speedup = ev.planned_seconds / best.planned_seconds
    runs_now = c.runnable(lay) is not None
    if best.layout == lay or (runs_now and speedup <= 1.0 + 1e-3):
        return None, []
    rate = best.rate.usd_per_gpu_hour if best.rate else 0.0
    steps = c.tokens / (best.layout.global_batch * c.seq)  # as the search counts a job's steps
    units = integer_units(best.time.step_seconds, best.layout.gpus, rate, steps, best.checkpoint_bytes, best.basis,
                          best.confidence_factor)
    diff_format, diff = "layout", _layout_changes(lay, best.layout)
    # a reviewed layout with no form in its own format (it breaks that format's rules) is diffed by layout keys
    with contextlib.suppress(InputError):
        if fmt is not None:
            diff_format, diff = fmt, changes(fmt, c.export(fmt, lay), c.export(fmt, best.layout))
            if c.given is not None and fmt == FORMAT_OF[c.source]:  # from what the input says, where it says it
                diff = [ch for ch in ({**ch, "from": c.given.get(ch["key"])} for ch in diff) if ch["from"] != ch["to"]]
    better = Better(Plan(base.name, best, *(int(u) for u in units)), speedup, diff_format, diff)
    what = "; ".join(f"{ch['key']} {setting_text(ch['from'])} → {setting_text(ch['to'])}" for ch in better.changes)
    how = (f"{speedup:.2f}× faster ({_step(ev, best)}, {ev.expected.days:,.1f} → {best.expected.days:,.1f} days "
           f"expected)" if runs_now
           else f"runs where the reviewed configuration cannot (step {best.time.step_seconds:.2f} s)")
    severity: Severity = "warning" if not runs_now or speedup >= 1 + NEAR_OPTIMAL_MARGIN else "info"
    tie = ", within the model's error" if runs_now and speedup < 1 + NEAR_OPTIMAL_MARGIN else ""
    return better, [Finding("better_layout", severity,
                            f"on the same {c.gpus} × {c.gpu.name}, a layout {how}{tie}: {what}")]


# --------------------------------------------------------------------------------------------
# The review
# --------------------------------------------------------------------------------------------


def review(request: ReviewRequest, *, better: bool = True, time_limit_s: float = 30.0) -> Review:
    """Read, evaluate and judge one configuration; with `better`, search the same hardware for a faster plan.

    InputError for input planner cannot read (the CLI's exit 2); a configuration that does not fit or breaks
    a rule is still reviewed, with error findings (`Review.ok` false, the CLI's exit 1).
    """
    c = load_config(request)
    ev = c.evaluate(c.layout)
    problems = c.problems(c.layout)
    findings = [*_legality(c, ev, problems), *_memory(ev), *_time(ev), *_overlap(c, ev), *_neighbours(c, ev)]
    plan = None
    if better:
        plan, found = search_better(c, ev, time_limit_s=time_limit_s)
        findings += found
    findings += c.read
    order = {"error": 0, "warning": 1, "info": 2}
    findings.sort(key=lambda f: order[f.severity])  # stable: within a severity, the order found
    comparison = None
    if c.case is not None:
        from planner.interop.published import compare

        comparison = compare(c.case, ev.time.step_seconds)
    return Review(c, ev, problems, findings, plan, comparison)
