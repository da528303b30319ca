"""`serve(scenario)`: the cheapest fleet of GPU SKUs, TP sizes, replicas and batch limits that serves a
traffic level within its latency SLOs; `evaluate_deployment(...)`: one deployment's latency percentiles,
throughput and memory; `evaluate_disaggregated(...)`: the same for separate prefill and decode pools
(DistServe/Splitwise). The public API behind `planner serve`.

The physics is planner.model.serving, the engine simulation and the scalar re-check are the serving
workload (planner.workloads.serving), the fleet selection is planner.search.serving (CP-SAT).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from planner.search.serving import ServingSolution, solve_serving
from planner.workloads.serving.evaluation import (
    DeploymentResult,
    DisaggregatedResult,
    evaluate_deployment,
    evaluate_disaggregated,
)
from planner.workloads.serving.scenario import ServingScenario, load_serving_scenario

__all__ = ["DeploymentResult", "DisaggregatedResult", "ServingScenario", "ServingSolution", "evaluate_deployment",
           "evaluate_disaggregated", "load_serving_scenario", "serve"]


def serve(scenario: ServingScenario | str | Path, *, pareto: bool | Sequence[float] = False) -> ServingSolution:
    """The cheapest fleet meeting a serving scenario's SLOs (`planner serve SCENARIO.yaml [--pareto]`).

    Args:
        scenario: a ServingScenario, or the path of a YAML file with a `serving:` block.
        pareto: also trace the cheapest fleet against request rate: True for the scenario's
            `serving.pareto_qps` (default 0.25×–4× its rate), or the rates themselves.

    Returns:
        ServingSolution: the plan (pools, $/hour, $ per million input and output tokens, predicted
        percentiles, headroom), the best single-SKU plan, the candidates and the trace.

    Raises:
        InputError: the scenario is wrong (exit 2); InfeasibleError: no fleet meets the SLOs within the
        inventory, with the numbers that rule it out (exit 1).
    """
    sc = load_serving_scenario(scenario) if isinstance(scenario, (str, Path)) else scenario
    return solve_serving(sc, pareto=pareto)
