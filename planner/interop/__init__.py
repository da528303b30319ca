"""Conversions between planner's schema and other tools' formats (Hugging Face, Megatron-LM, DeepSpeed,
torchtitan, published runs)."""

from enum import StrEnum


class FrameworkName(StrEnum):
    """The frameworks a plan can be handed to as paste-ready input (planner.interop.frameworks.export)."""

    megatron = "megatron"
    deepspeed = "deepspeed"
    torchtitan = "torchtitan"  # the job TOML (torchtitan before February 2026)
    torchtitan_config = "torchtitan-config"  # a config function (torchtitan from February 2026)


FRAMEWORKS = tuple(f.value for f in FrameworkName)
