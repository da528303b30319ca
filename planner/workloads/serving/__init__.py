"""The serving workload: what a fleet of inference replicas is planned over.

- `engines.py`: vLLM, TensorRT-LLM and SGLang presets (catalogs/engines.yaml) resolved for a GPU.
- `simulation.py`: the seeded discrete-event simulation of an engine's iterations (continuous batching, chunked
  prefill, the paged KV pool, preemption), request-length distributions, and the closed-form cross-checks
  (M/D/1 prefill queueing, throughput and latency bounds).
- `evaluation.py`: the scalar evaluation of one deployment (`evaluate_deployment`), the re-check every plan
  passes.
- `scenario.py`: the `serving:` scenario format.
- `validation.py`: the published serving measurements re-created (planner/data/serving_validation.yaml).

Its layout is (SKU, TP, batch limit) per replica type and a replica count per type; its "step" is an hour of
traffic. The physics of one iteration is planner.model.serving; the fleet search is planner.search.serving.
"""
