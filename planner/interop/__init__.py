"""Conversions between planner's schema and other tools' formats (Hugging Face, Megatron-LM, DeepSpeed)."""
