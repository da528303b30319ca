"""Memory-model accuracy against the published training runs: does every layout that ran fit, and how far is
the predicted peak from a measured one, counted the way the source measured it.

Reads published_runs.yaml from $PLANNER_REFERENCE or ../shared/reference. Each run goes through
planner/interop/published.py (`build_case`: model, layout, and the scenario keys its `framework_settings:`
set) into `training_memory`. Where the source measured memory, the prediction is compared in the same kind:
nvidia-smi figures against `total` (the device), torch's reserved peak (torchtitan, NeMo logs) against
`reserved`, allocated against `allocated`.

    .venv/bin/python benchmarks/memory_accuracy.py [--family PREFIX]
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from planner.interop.published import build_case, load_runs, predicted_memory, reference_dir  # noqa: E402
from planner.model.memory import training_memory  # noqa: E402
from planner.schema import GIB  # noqa: E402


def main(argv: list[str]) -> int:
    ref = reference_dir()
    if ref is None:
        print("published_runs.yaml not found: set PLANNER_REFERENCE or place it in ../shared/reference")
        return 1
    family = argv[argv.index("--family") + 1] if "--family" in argv else ""
    rows, errors, fits, total = [], [], 0, 0
    for run in load_runs(ref):
        if not run["id"].startswith(family):
            continue
        case = build_case(run)
        if isinstance(case, str):
            continue
        mem = training_memory(case.model, case.layout, case.seq, case.impl)
        cap = case.gpu.hbm_bytes
        total += 1
        fits += mem.total <= cap
        meas = case.measured_memory
        err = ""
        if meas is not None:
            pred = predicted_memory(mem, meas.kind)
            e = pred / meas.bytes - 1
            errors.append(abs(e))
            err = f"{meas.kind:9} {meas.bytes / GIB:6.1f} {pred / GIB:6.1f} {e:+7.1%}"
        parts = " ".join(f"{k[:3]} {v / GIB:5.1f}" for k, v in mem.as_dict().items() if k != "total")
        rows.append(f"{case.id:50} {case.impl.framework:13} {mem.total / GIB:6.1f}/{cap / GIB:<4.0f} "
                    f"{'yes' if mem.total <= cap else 'NO ':3} {err:33} {parts}")
    head = f"{'run':50} {'framework':13} {'GiB/HBM':11} fit {'measured kind, meas, pred, err':33} breakdown"
    print(head)
    print("-" * len(head))
    print("\n".join(rows))
    print(f"\npublished layouts predicted to fit: {fits}/{total}")
    if errors:
        print(f"measured memories: {len(errors)}, median |error| {statistics.median(errors):.1%}, "
              f"worst {max(errors):.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
