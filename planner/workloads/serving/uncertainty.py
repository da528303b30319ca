"""How far to trust a serving estimate: the serving model's throughput error on the published runs of its
regime (planner/data/serving_bands.yaml, written by `benchmarks/serve.py --write` from serving_validation.yaml).

Dense models are the calibrated regime. Mixture-of-experts deployments get an `extrapolated` note naming the
10th–90th percentile of the error on the published MoE rows: the machine formats keep their keys, so the CLI says
it under the table and on stderr for json, csv and markdown.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

from planner.schema import ModelSpec

BANDS = Path(__file__).parents[2] / "data" / "serving_bands.yaml"

__all__ = ["BANDS", "load_bands", "serving_note"]


@functools.lru_cache(maxsize=1)
def load_bands() -> dict[str, dict[str, Any]]:
    return dict(yaml.safe_load(BANDS.read_text(encoding="utf-8"))["regimes"])  # a file planner ships


def serving_note(m: ModelSpec) -> str | None:
    """The `extrapolated` note of a deployment of `m`, or None in the calibrated (dense) regime."""
    if m.moe is None:
        return None
    b = load_bands().get("moe")
    if b is None:
        return "extrapolated: mixture-of-experts model: no published MoE serving run checks the model"
    bound = "; read it as an upper bound" if b["p10"] > 0 else "; read it as a lower bound" if b["p90"] < 0 else ""
    return (f"extrapolated: mixture-of-experts model: on {b['rows']} published MoE serving runs "
            f"({', '.join(b['models'])}) the model's throughput was {b['p10']:+.0%} to {b['p90']:+.0%} off what was "
            f"measured (predicted / measured − 1, 10th–90th percentile; median {b['median']:+.0%}){bound}")
