"""`planner schedule`: the CP-SAT portfolio model against the exhaustive reference, every plan through the
independent re-checks, the greedy baseline never better, explanations, the shipped example, the output
as data (dict, pandas), and the command line: formats, plots, the HTML page, exit statuses 0/1/2/3."""

from __future__ import annotations

import copy
import datetime as dt
import json
import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from ortools.sat.python import cp_model
from pydantic import ValidationError
from typer.testing import CliRunner

from planner.cli import app
from planner.errors import InputError
from planner.portfolio import Portfolio, load_portfolio, portfolio_json_schema
from planner.search.schedule_check import check_decisions
from planner.search.schedule_cpsat import ScheduleModel, solve
from planner.search.schedule_exhaustive import exhaustive
from planner.search.schedule_greedy import greedy
from planner.search.schedule_instance import (
    Commitment,
    Decisions,
    Instance,
    Option,
    Pool,
    Task,
    costs,
    late_days,
)
from planner.search.schedule_synthetic import synthetic_instance
from planner.workflows.schedule import check_result, schedule

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "scenarios" / "portfolio_2027.yaml"
runner = CliRunner()

SMALL: dict[str, Any] = {
    "name": "small",
    "horizon": {"start": "2027-01-04", "end": "2027-03-01", "step": "week"},
    "pools": [
        {"name": "own", "kind": "owned", "sku": "h100", "gpus": 8},
        {"name": "buy", "kind": "purchase", "sku": "b200", "lead_time_weeks": 1, "max_gpus": 32,
         "usd_per_gpu": 4000},
        {"name": "res", "kind": "reservation", "sku": "h100", "usd_per_gpu_hour": 2.0, "max_gpus": 16},
        {"name": "cloud", "kind": "on-demand", "sku": "h100", "max_gpus": 64},
    ],
    "jobs": [
        {"name": "a", "model": "gpt3-125m", "job": {"tokens": 3e12, "seq_len": 2048, "global_batch": 256},
         "deadline": "2027-01-25", "max_gpus": 32},
        {"name": "b", "model": "gpt3-125m", "job": {"tokens": 2e12, "seq_len": 2048, "global_batch": 256},
         "after": ["a"], "deadline": "2027-02-08", "penalty_usd_per_day": 1000, "max_gpus": 32},
        {"name": "c", "model": "gpt3-125m", "job": {"tokens": 1e12, "seq_len": 2048, "global_batch": 256},
         "release": "2027-01-11", "max_gpus": 16, "repeat": {"every_days": 14, "count": 2}},
    ],
}


def changed(changes: dict[str, Any]) -> dict[str, Any]:
    """SMALL with keys replaced; a key path is written a__0__b for data["a"][0]["b"]."""
    data = copy.deepcopy(SMALL)
    for path, value in changes.items():
        node: Any = data
        *head, last = path.split("__")
        for key in head:
            node = node[int(key)] if key.isdigit() else node[key]
        node[int(last) if last.isdigit() else last] = value
    return data


def small(**changes: Any) -> Portfolio:
    return Portfolio.model_validate(changed(changes))


# --------------------------------------------------------------------------------------------
# The solver against the exhaustive reference, on random tiny instances
# --------------------------------------------------------------------------------------------


def tiny(seed: int) -> Instance:
    r = random.Random(seed)
    T = r.randint(4, 6)
    pools = (
        Pool("own", "owned", "h100", capacity=tuple(r.choice([0, 8, 16]) if t < 1 else 16 for t in range(T))),
        Pool("buy", "purchase", "b200", unit=8, max_gpus=16, min_units=r.choice([1, 2]), lead=r.choice([1, 2]),
             starts=tuple(range(T - 1)), unit_usd=tuple(100 * (T - s) for s in range(T - 1))),
        Pool("res", "reservation", "h100", unit=8, max_gpus=16, term=r.choice([2, 3, T]), starts=(0, 1, 2),
             unit_usd=(250, 250, 260)),
        Pool("od", "on-demand", "h100", capacity=None if r.random() < 0.5 else (8,) * T),
    )
    tasks = []
    for j in range(r.randint(2, 3)):
        opts = []
        for p in r.sample(range(4), r.randint(1, 3)):
            for g in r.sample([8, 16], r.randint(1, 2)):
                d = r.randint(1, 3)
                opts.append(Option(p, g, d, d * 3600, r.randint(0, 300) if p != 2 else 0))
        after = (j - 1,) if j and r.random() < 0.3 else ()
        deadline = r.choice([None, T, r.randint(2, T)])
        # a deadline date inside the period after its boundary (the period a hard deadline rounds down to)
        due = None if deadline is None or r.random() < 0.5 else deadline * 7 + r.randint(0, 6)
        tasks.append(Task(f"t{j}", r.randint(0, 1), deadline, r.choice([0, 0, 50]), after, tuple(opts), due_day=due))
    return Instance(T, 7, tuple(tasks), pools)


@pytest.mark.parametrize("seed", range(40))
def test_optimum_equals_exhaustive_and_every_plan_passes_the_recheck(seed: int) -> None:
    inst = tiny(seed)
    ref = exhaustive(inst)
    base = greedy(inst)
    try:
        out = solve(inst, time_limit=20, workers=1, hint=base.decisions)
    except ValueError:  # a job without any usable option: nothing to model
        assert ref is None
        return
    if ref is None:
        assert out.status == "infeasible" and base.decisions is None
        return
    assert out.status == "optimal"
    assert out.objective == ref[0]
    assert out.decisions is not None
    assert check_decisions(inst, out.decisions, out.objective) == []
    assert check_decisions(inst, ref[1], ref[0]) == []
    if base.decisions is not None:
        assert check_decisions(inst, base.decisions) == []
        assert costs(inst, base.decisions).total_usd >= out.objective


@pytest.mark.parametrize("seed", range(20))
def test_the_objective_is_the_plans_cost_at_every_solution(seed: int) -> None:
    """A soft deadline's days late are exact in the model (max(0, end·step − due), not only bounded below), so
    whichever solution a time limit stops at, the objective is what its plan costs: with the greedy plan fixed,
    maximising the lateness gives exactly its days late, and the objective its recomputed cost."""
    inst = tiny(seed)
    base = greedy(inst).decisions
    if base is None or not any(not t.hard and t.deadline is not None for t in inst.tasks):
        return
    model = ScheduleModel(inst)
    m = model.model
    for j in range(len(inst.tasks)):
        m.add(model.start[j] == base.start[j])
        m.add(model.present[j][base.choice[j]] == 1)
    made = {(c.pool, c.period): c.units for c in base.commitments}
    for p, units in model.units.items():
        for s, v in units.items():
            m.add(v == made.get((p, s), 0))
    m.maximize(sum(model.late.values()))
    solver = cp_model.CpSolver()
    assert solver.solve(m) == cp_model.OPTIMAL
    for j, v in model.late.items():
        assert solver.value(v) == late_days(inst, j, base.end(inst, j))
    assert solver.value(model.cost) == costs(inst, base).total_usd


def test_soft_deadline_penalty_counts_the_days_the_plan_shows() -> None:
    """The penalty is charged per day from the deadline's date, not from the period boundary before it: the plan's
    late_days are its end date minus its deadline, and its penalty those days × the rate."""
    data = changed({"jobs__1__deadline": "2027-01-13", "jobs__0__deadline": "2027-01-18"})  # a Wednesday
    result = schedule(Portfolio.model_validate(data), time_limit=20)
    b = next(j for j in result.jobs if j.name == "b")
    assert b.late_days == (b.end - dt.date(2027, 1, 13)).days > 0
    assert b.penalty_usd == 1000 * b.late_days


def test_recheck_catches_each_kind_of_violation() -> None:
    pools = (Pool("own", "owned", "h100", capacity=(8, 8, 8)),
             Pool("buy", "purchase", "b200", unit=8, max_gpus=8, lead=1, starts=(0, 1), unit_usd=(20, 10)),
             Pool("res", "reservation", "h100", unit=8, max_gpus=8, term=1, starts=(0, 1, 2), unit_usd=(5, 5, 5)))
    tasks = (Task("a", 0, 2, 0, (), (Option(0, 8, 2, 1, 1), Option(1, 8, 1, 1, 1), Option(2, 8, 2, 1, 0))),
             Task("b", 1, None, 0, (0,), (Option(0, 8, 1, 1, 1),)))
    inst = Instance(3, 7, tasks, pools)
    good = Decisions((0, 0), (0, 2))
    assert check_decisions(inst, good, 2) == []
    assert any("before a ends" in e for e in check_decisions(inst, Decisions((0, 0), (0, 1))))
    assert any("8 available" in e for e in check_decisions(inst, Decisions((0, 0), (0, 1))))
    assert any("hard deadline" in e for e in check_decisions(inst, Decisions((0, 0), (1, 2))))
    assert any("0 available" in e for e in check_decisions(inst, Decisions((1, 0), (0, 2))))  # lead time
    early = Decisions((1, 0), (0, 2), (Commitment(1, 0, 1),))
    assert any("0 available" in e for e in check_decisions(inst, early))  # arrives in period 1
    term = Decisions((2, 0), (0, 2), (Commitment(2, 0, 1),))
    assert any("period 1" in e and "0 available" in e for e in check_decisions(inst, term))  # a 1-period term
    assert any("recomputed" in e for e in check_decisions(inst, good, 3))


def test_one_worker_is_deterministic() -> None:
    inst = synthetic_instance(12, 26, seed=1)
    a = solve(inst, time_limit=30, workers=1, hint=greedy(inst).decisions)
    b = solve(inst, time_limit=30, workers=1, hint=greedy(inst).decisions)
    assert a.status == "optimal" and a.decisions == b.decisions and a.objective == b.objective


# --------------------------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("change", "message"), [
    ({"horizon__end": "2026-01-01"}, "horizon: end must be at least one week after start"),
    ({"pools__0__gpus": -8}, "pools.0.gpus"),
    ({"pools__1__usd_per_gpu": float("inf")}, "pools.1.usd_per_gpu"),
    ({"pools__3__usd_per_gpu_hour": float("nan")}, "pools.3.usd_per_gpu_hour"),
    ({"pools__0__kind": "leased"}, "pools.0"),
    ({"pools__0__colour": "red"}, "colour"),
    ({"jobs__1__after": ["z"]}, "after: unknown job 'z'"),
    ({"jobs__0__min_gpus": 64}, "min_gpus (64) exceeds max_gpus (32)"),
    ({"jobs__0__release": "2027-02-01"}, "deadline must come after release"),
    ({"jobs__0__deadline": "2029-01-01"}, "outside the horizon"),
    ({"jobs__1__name": "a", "jobs__1__after": []}, "job names must be unique"),
])
def test_bad_input_names_the_file_and_key(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(changed(change)))
    with pytest.raises(InputError) as e:
        load_portfolio(f)
    assert str(f) in str(e.value) and message in str(e.value)


def test_yaml_errors_and_schema(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        load_portfolio(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("horizon: [\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_portfolio(bad)
    schema = portfolio_json_schema()
    assert schema["title"] == "planner portfolio" and {"horizon", "pools", "jobs"} <= set(schema["properties"])


@pytest.mark.parametrize(("command", "file", "said"), [
    ("schedule", "gpt3_30days.yaml", "model: a training scenario, not a portfolio; run `planner solve "),
    ("schedule", "serving/mix.yaml", "serving: a serving scenario, not a portfolio; run `planner serve "),
    ("serve", "portfolio_2027.yaml", "pools: a portfolio, not a serving scenario; run `planner schedule "),
    ("solve", "portfolio_2027.yaml", "pools: a portfolio, not a training scenario; run `planner schedule "),
])
def test_a_file_of_another_kind_names_the_command_that_reads_it(command: str, file: str, said: str) -> None:
    """Each command given another command's input says so in one line (a training scenario handed to `schedule`
    gave a line per key it does not know)."""
    path = ROOT / "scenarios" / file
    r = runner.invoke(app, [command, str(path)])
    assert r.exit_code == 2 and r.stderr.strip() == f"error: {path}: {said}{path}`", r.output


def test_repeats_and_dependency_cycles() -> None:
    p = small()
    names = [j.name for j in p.expanded_jobs()]
    assert names == ["a", "b", "c-1", "c-2"]
    c2 = p.expanded_jobs()[3]
    assert c2.release == dt.date(2027, 1, 25)
    with pytest.raises(ValidationError, match="after: forms a cycle"):  # refused as the portfolio is read
        small(jobs__0__after=["b"])


# --------------------------------------------------------------------------------------------
# Catalog prices
# --------------------------------------------------------------------------------------------


def test_procurement_catalog_and_purchase_tco_as_compare_counts_it() -> None:
    from planner.catalog import get_gpu, load_procurement
    from planner.pricing import hourly_rate, select_price
    from planner.procurement import held_usd_per_gpu_hour, power_usd_per_gpu_hour, server_price
    from planner.scenario import Pricing

    proc = load_procurement()
    h100, b200 = get_gpu("h100"), get_gpu("b200")
    assert proc.sku(b200) is not None and proc.sku(h100) is not None
    assert server_price(b200, proc).usd_per_gpu == 515_000 / 8  # type: ignore[union-attr]
    for kind in ("reserved-1y", "reserved-3y", "spot", "capacity-block"):
        p = select_price(h100, kind)
        assert p is not None and p.source and p.date
    # without colocation, held + power per hour = what `planner compare` charges a purchase
    pricing = Pricing(kind="purchase", amortisation_years=5, usd_per_kwh=0.08, pue=1.4)
    price = select_price(h100, "purchase").usd_per_gpu  # type: ignore[union-attr]
    mine = held_usd_per_gpu_hour(h100, price, amortisation_years=5, colocation_usd_per_kw_month=0,
                                 server_kw_per_gpu_tdp=1.8) + power_usd_per_gpu_hour(h100, pue=1.4, usd_per_kwh=0.08)
    assert mine == pytest.approx(hourly_rate(h100, pricing).usd_per_gpu_hour)


# --------------------------------------------------------------------------------------------
# End to end
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_result() -> Any:
    return schedule(small(), time_limit=20)


def test_small_portfolio_plan_as_data(small_result: Any) -> None:
    from planner.report.schedule import capacity_frame, jobs_frame, pools_frame

    r = small_result
    assert r.status == "optimal" and r.gap == 0.0 and r.cost_usd == r.bound_usd
    assert r.baseline.cost_usd >= r.cost_usd
    d = r.to_dict(timing=False)
    assert {"status", "solver", "jobs", "pools", "cost_usd", "baseline"} <= set(d)
    assert {"seconds", "gap", "bound"} <= set(d["solver"])
    for j in d["jobs"]:
        assert {"name", "pool", "sku", "gpus", "start", "end", "cost_usd", "layout"} <= set(j)
    for p in d["pools"]:
        assert {"name", "sku", "purchases", "reservations", "capacity", "used"} <= set(p)
        assert len(p["capacity"]) == len(p["used"]) == r.periods
    assert "cost_usd" in d["baseline"]
    total = sum(j["cost_usd"] for j in d["jobs"]) + sum(p["commitments_usd"] for p in d["pools"])
    assert total == pytest.approx(d["cost_usd"])
    # `a` must end by 2027-01-25 (3 weeks) and `b` waits for it
    jobs = {j["name"]: j for j in d["jobs"]}
    assert jobs["a"]["end"] <= "2027-01-25" and jobs["b"]["start"] >= jobs["a"]["end"]
    assert list(jobs_frame(r)["job"]) == ["a", "b", "c-1", "c-2"]
    assert list(pools_frame(r)["pool"]) == ["own", "buy", "res", "cloud"]
    assert len(capacity_frame(r)) == 4 * r.periods


def test_hard_deadline_out_of_reach_says_by_how_much() -> None:
    r = schedule(small(jobs__0__deadline="2027-01-11", jobs__0__max_gpus=8), time_limit=10)
    assert r.status == "infeasible" and not r.jobs
    assert any(line.startswith("a: the fastest option") and "days after its deadline 2027-01-11" in line
               for line in r.reasons)


def test_deadlines_that_cannot_all_hold_name_the_job_pool_and_days() -> None:
    # `a` and a copy of it both need the whole 8-GPU cluster for two weeks before 2027-01-18
    p = small(pools=[SMALL["pools"][0]], jobs__0__deadline="2027-01-18", jobs__0__max_gpus=8,
              jobs__1__deadline=None, jobs__1__penalty_usd_per_day=None, jobs__2__max_gpus=8)
    twin = p.jobs[0].model_copy(update={"name": "a2"})
    p = p.model_copy(update={"jobs": [*p.jobs, twin]})
    r = schedule(p, time_limit=10)
    assert r.status == "infeasible"
    assert any("misses its deadline 2027-01-18 by 14 days" in line and "own" in line for line in r.reasons), r.reasons


def test_an_explanation_cut_short_by_the_time_limit_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """The explanation's search gets what the time limit left; when it ends without a plan the reason says the
    time ran out, not that no plan fits even with every deadline lifted (which only a proof may say)."""
    from ortools.sat.python import cp_model

    p = small(pools=[SMALL["pools"][0]], jobs__0__deadline="2027-01-18", jobs__0__max_gpus=8,
              jobs__1__deadline=None, jobs__1__penalty_usd_per_day=None, jobs__2__max_gpus=8)
    p = p.model_copy(update={"jobs": [*p.jobs, p.jobs[0].model_copy(update={"name": "a2"})]})
    plan_search = cp_model.CpSolver.solve
    calls: list[float] = []

    def second_runs_out(self: Any, model: Any, *args: Any) -> Any:
        calls.append(self.parameters.max_time_in_seconds)
        return plan_search(self, model, *args) if len(calls) == 1 else cp_model.UNKNOWN

    monkeypatch.setattr(cp_model.CpSolver, "solve", second_runs_out)
    r = schedule(p, time_limit=10)
    assert r.status == "infeasible" and len(calls) == 2 and calls[1] <= 10
    assert len(r.reasons) == 1 and r.reasons[0].startswith("the hard deadlines cannot all hold together; the time "
                                                           "limit ran out"), r.reasons


def test_a_limit_that_runs_out_before_cp_sat_has_a_plan_keeps_the_greedy_one(monkeypatch: pytest.MonkeyPatch,
                                                                               tmp_path: Path) -> None:
    """CP-SAT starts from the greedy plan; when the limit runs out before it has a plan of its own, the greedy plan
    stands (status feasible, no proven bound, a note says so; exit 0), not 'no plan' (exit 1)."""
    monkeypatch.setattr(cp_model.CpSolver, "solve", lambda self, model, *args: cp_model.UNKNOWN)
    r = schedule(small(), time_limit=1)
    assert r.status == "feasible" and r.jobs and r.baseline is not None
    assert r.cost_usd == r.baseline.cost_usd and r.bound_usd is None and r.gap is None
    assert r.notes[0].startswith("the 1 s time limit ran out before CP-SAT found a plan of its own")
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(changed({})))
    out = runner.invoke(app, ["schedule", str(path), "--time-limit", "1", "--format", "json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["status"] == "feasible"


def test_shipped_example_beats_the_greedy_baseline() -> None:
    r = schedule(load_portfolio(EXAMPLE), time_limit=60)
    assert r.status == "optimal"
    assert r.baseline is not None and r.baseline.cost_usd is not None
    assert r.cost_usd < 0.9 * r.baseline.cost_usd  # strictly better, by a margin the difference explains
    assert r.difference[0].startswith("total: greedy")
    buy = next(p for p in r.pools if p.name == "b200-buy")
    assert buy.purchases and all((b.arrival_date - b.order_date).days >= 84 for b in buy.purchases)
    jobs = {j.name: j for j in r.jobs}
    assert jobs["pretrain-70b"].end <= dt.date(2027, 6, 1) and jobs["cpt-405b"].end <= dt.date(2027, 10, 1)
    assert all(jobs[f"finetune-70b-{i}"].start >= jobs["pretrain-70b"].end for i in (1, 2, 3))
    assert check_result_of(r) == []


def check_result_of(r: Any) -> list[str]:
    from planner.search.schedule_resolve import resolve

    return check_result(resolve(load_portfolio(EXAMPLE)), r)


def test_a_deadline_out_of_reach_names_options_each_pool_can_hold() -> None:
    """The reasons of a job that cannot meet its deadline even alone cite options its pools can hold (not the SKU's
    largest candidate in a 64-GPU cluster) and count the days from the deadline's date, not the week boundary."""
    p = Portfolio.model_validate({
        "name": "reason-cap", "horizon": {"start": "2027-01-04", "end": "2028-01-03", "step": "week"},
        "pools": [{"name": "small", "kind": "owned", "sku": "h100", "gpus": 64},
                  {"name": "cloud", "kind": "on-demand", "sku": "h100", "max_gpus": 1024}],
        "jobs": [{"name": "big", "model": "llama-3.1-70b", "job": {"tokens": 1e12, "seq_len": 8192,
                                                                    "global_batch": 512},
                  "deadline": "2027-01-12"}]})
    r = schedule(p, time_limit=10)
    assert r.status == "infeasible"
    first, *rest = r.reasons
    assert "in cloud" in first and "ends 2027-01-18, 6 days after its deadline 2027-01-12" in first, first
    assert any("in small at best 64 GPUs" in line for line in rest), rest
    assert not any("1,024 × h100-sxm in small" in line or "small at best 1,024" in line for line in r.reasons)


def test_a_job_that_fits_nowhere_says_why() -> None:
    r = schedule(small(jobs__2__model="llama-3.1-70b", jobs__2__max_gpus=8), time_limit=10)
    assert r.status == "infeasible"
    assert any(line.startswith("c-1: nothing fits on h100-sxm") and "GiB" in line for line in r.reasons)
    assert any(line.startswith("c-1: no option") and "longer than the horizon" in line for line in r.reasons)


# --------------------------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------------------------




def portfolio(tmp_path: Path, **changes: Any) -> Path:
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(changed(changes)))
    return f


def test_json_csv_markdown_and_table(tmp_path: Path) -> None:
    f = portfolio(tmp_path)
    r = runner.invoke(app, ["schedule", str(f), "--format", "json", "--time-limit", "20"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["status"] == "optimal" and out["solver"]["gap"] == 0.0
    assert [j["name"] for j in out["jobs"]] == ["a", "b", "c-1", "c-2"]
    assert out["baseline"]["cost_usd"] >= out["cost_usd"]
    csv = runner.invoke(app, ["schedule", str(f), "-f", "csv"]).stdout
    assert csv.splitlines()[0].startswith("job,pool,sku,gpus,layout,start,end") and len(csv.splitlines()) == 5
    md = runner.invoke(app, ["schedule", str(f), "-f", "markdown"]).stdout
    assert md.startswith("- optimal: $") and "**Jobs**" in md and "| job | pool |" in md
    table = runner.invoke(app, ["schedule", str(f)]).stdout
    assert "greedy baseline" in table and "Jobs" in table and "Pools" in table


def test_plots_and_html_page(tmp_path: Path) -> None:
    f = portfolio(tmp_path)
    page = tmp_path / "s.html"
    r = runner.invoke(app, ["schedule", str(f), "-f", "json", "--plots", str(tmp_path / "plots"), "--html", str(page)])
    assert r.exit_code == 0, r.output
    assert {p.name for p in (tmp_path / "plots").iterdir()} == {"gantt.png", "gantt.svg", "capacity.png",
                                                                "capacity.svg"}
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and 'id="jobs"' in text and "data:image/svg+xml;base64," in text
    assert 'id="plot-gantt"' in text and "ticks mark deadlines" in text
    assert "<script" not in text and "http" not in text.split("<pre>")[0].replace("http-equiv", "")


def test_no_plan_exits_1_with_the_numbers(tmp_path: Path) -> None:
    f = portfolio(tmp_path, jobs__0__deadline="2027-01-11", jobs__0__max_gpus=8)
    r = runner.invoke(app, ["schedule", str(f), "-f", "json"])
    assert r.exit_code == 1
    out = json.loads(r.stdout)
    assert out["status"] == "infeasible" and out["jobs"] == []
    assert any("days after its deadline 2027-01-11" in line for line in out["reasons"])


@pytest.mark.parametrize(("change", "key"), [
    ({"pools__0__gpus": -8}, "pools.0.gpus"),
    ({"jobs__0__model": "gpt-9"}, "jobs.0.model (a): unknown model 'gpt-9'"),
    ({"pools__2__sku": "h100x"}, "pools.2.sku (res): unknown GPU 'h100x'"),
    ({"pools__1__kind": "purchas"}, "pools.1: kind must be one of owned, purchase, reservation, on-demand"),
    ({"pools__1__lead_time_week": 3}, "pools.1.lead_time_week: unknown key (did you mean lead_time_weeks?)"),
    # found after loading (a repeated job's copies are named for their entry)
    ({"jobs__2__layout": {"sku": "a100-80gb"}}, "jobs.2.layout.sku: a100-80gb is in none of the pools job c-1 may use"),
])
def test_bad_input_exits_2_in_one_line(tmp_path: Path, change: dict[str, Any], key: str) -> None:
    f = portfolio(tmp_path, **change)
    r = runner.invoke(app, ["schedule", str(f)])
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {f}") and key in lines[0]


def test_a_plan_failing_the_recheck_is_an_internal_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import planner.workflows.schedule as wf

    monkeypatch.setattr(wf, "check_result", lambda *_: ["a: ends after its hard deadline"])
    r = runner.invoke(app, ["schedule", str(portfolio(tmp_path))])
    assert r.exit_code == 3
    assert r.stderr.startswith("internal error: RuntimeError: schedule fails the independent re-check")


def test_schema_of_the_portfolio_format() -> None:
    r = runner.invoke(app, ["schema", "--portfolio"])
    assert r.exit_code == 0
    schema = json.loads(r.stdout)
    assert schema["title"] == "planner portfolio" and {"horizon", "pools", "jobs"} <= set(schema["properties"])
    # editors pick a pool's fields by its kind
    pools = schema["properties"]["pools"]["items"]
    assert pools["discriminator"] == {"propertyName": "kind", "mapping": {
        "owned": "#/$defs/OwnedPool", "purchase": "#/$defs/PurchasePool", "reservation": "#/$defs/ReservationPool",
        "on-demand": "#/$defs/OnDemandPool"}}
    assert {m["$ref"] for m in pools["oneOf"]} == set(pools["discriminator"]["mapping"].values())


def test_a_portfolio_plans_on_gpus_it_defines(tmp_path: Path) -> None:
    """A portfolio's `gpus:` (a catalog `base:` with changes) stand in a pool's sku and a job's layout.sku; such
    a GPU keeps its base's prices and procurement terms (the purchase pool's lead time, server price), and the
    plan passes the independent re-check with it."""
    data = changed({"pools__0__sku": "h100-96gb-500w", "pools__1__sku": "b200-750w", "pools__1__lead_time_weeks": None})
    data["pools"][1].pop("lead_time_weeks")
    data["gpus"] = [{"name": "h100-96gb-500w", "base": "h100-sxm", "memory_gib": 95.0, "tdp_w": 500},
                    {"name": "b200-750w", "base": "b200", "tdp_w": 750}]
    data["jobs"][2]["layout"] = {"sku": "h100-96gb-500w"}
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(data))
    r = runner.invoke(app, ["schedule", str(f), "--format", "json", "--time-limit", "20"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert {j["sku"] for j in out["jobs"] if j["name"].startswith("c")} == {"h100-96gb-500w"}
    data["jobs"][2]["layout"] = {"sku": "h100-96gb-50w"}
    f.write_text(yaml.safe_dump(data))
    r = runner.invoke(app, ["schedule", str(f)])
    assert r.exit_code == 2 and f"{f}: jobs.2.layout.sku (c): unknown GPU 'h100-96gb-50w'" in r.stderr, r.output
    data["gpus"][0]["base"] = "h100-sxx"
    f.write_text(yaml.safe_dump(data))
    r = runner.invoke(app, ["schedule", str(f)])
    assert r.exit_code == 2 and f"{f}: gpus[0] (h100-96gb-500w): base: unknown GPU" in r.stderr, r.output


def test_rack_scale_pools_rent_hosts_and_buy_racks() -> None:
    """GB200 NVL72 is rented and reserved by 4-GPU tray (GpuSku.host_gpus) and bought by the rack: a job on an
    on-demand GB200 pool may run on 64 GPUs, as NVIDIA's recipes do."""
    from planner.search.schedule_resolve import pool_terms

    data = changed({"pools__1__sku": "gb200", "pools__3__sku": "gb200", "pools__2__sku": "gb200"})
    data["pools"][1]["usd_per_gpu"] = 40000
    terms = {t.name: t.unit for t in pool_terms(Portfolio.model_validate(data))}
    assert terms == {"own": 8, "buy": 72, "res": 4, "cloud": 4}
    data["jobs"] = [{"name": "a", "model": "gpt3-125m", "job": {"tokens": 3e12, "seq_len": 2048, "global_batch": 256},
                     "pools": ["cloud"], "layout": {"gpus": 64}}]
    result = schedule(Portfolio.model_validate(data), time_limit=20)
    assert [(j.sku, j.gpus) for j in result.jobs] == [("gb200", 64)]


def test_a_long_chain_of_after_is_ordered_without_recursion() -> None:
    """Jobs listed against their order of `after:` (each waits for the next) walk a 3,000-deep chain: the
    depth-first order uses an explicit stack, and the portfolio's cycle check the standard library's sorter."""
    from types import SimpleNamespace

    from planner.portfolio import _no_cycle
    from planner.search.schedule_instance import topological

    n = 3000
    tasks = [SimpleNamespace(name=f"j{i}", after=[i + 1] if i < n - 1 else []) for i in range(n)]
    assert topological(SimpleNamespace(tasks=tasks)) == list(range(n - 1, -1, -1))  # type: ignore[arg-type]
    _no_cycle({f"j{i}": [f"j{i + 1}"] for i in range(n - 1)})
    with pytest.raises(ValueError, match="forms a cycle"):
        _no_cycle({f"j{i}": [f"j{(i + 1) % n}"] for i in range(n)})



def _rows(constraints: Any) -> list[tuple[tuple[tuple[int, int], ...], tuple[int, ...]]]:
    return sorted((tuple(sorted(zip(c.linear.vars, c.linear.coeffs, strict=True))), tuple(c.linear.domain))
                  for c in constraints)


def _reference_energy(model: Any, runs: Any, cap: Any, fixed: Any) -> None:
    """The energy rows by their definition: every (earliest start a, latest end b) window, the options
    inside it, each distinct set once at its smallest window, skipped where a fixed profile holds them all."""
    seen: set[frozenset[int]] = set()
    for b in sorted({r.last for r in runs}):
        for a in sorted({r.first for r in runs if r.last <= b}, reverse=True):
            inside = frozenset(i for i, r in enumerate(runs) if r.first >= a and r.last <= b)
            if not inside or inside in seen:
                continue
            seen.add(inside)
            hi = min(max(b, 0), len(cap))
            lo = min(max(a, 0), hi)
            most: dict[int, int] = {}
            for i in inside:
                most[runs[i].task] = max(most.get(runs[i].task, 0), runs[i].gpus * runs[i].periods)
            if fixed is not None and sum(most.values()) <= sum(fixed[lo:hi]):
                continue
            energy = sum(runs[i].gpus * runs[i].periods * runs[i].present for i in sorted(inside))
            model.model.add(energy <= (sum(fixed[lo:hi]) if fixed is not None else sum(cap[lo:hi])))


@pytest.mark.parametrize("seed", range(4))
def test_energy_rows_are_the_windows_of_their_definition(seed: int) -> None:
    """The incremental window walk adds exactly the rows the definition gives, pool by pool (fixed profiles
    and committed ones), on synthetic lab years and on random small instances."""
    from planner.search.schedule_cpsat import ScheduleModel

    compared = []

    class Recording(ScheduleModel):
        def _energy(self, runs: Any, cap: Any, fixed: Any = None) -> None:
            cs = self.model.proto.constraints
            n0 = len(cs)
            super()._energy(runs, cap, fixed)
            n1 = len(cs)
            _reference_energy(self, runs, cap, fixed)
            compared.append((_rows(cs[i] for i in range(n0, n1)), _rows(cs[i] for i in range(n1, len(cs)))))

    for inst in (synthetic_instance(30, 26, seed=seed), *(tiny(10 * seed + k) for k in range(10))):
        try:
            Recording(inst)
        except ValueError:  # a job without any usable option: nothing to model
            continue
    assert compared and any(ours for ours, _ in compared)
    for ours, reference in compared:
        assert ours == reference


def test_energy_rows_stop_at_their_budget_on_a_long_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    """A chain of jobs on one owned pool has a window for every pair of earliest start and latest end: the
    redundant rows stop at ENERGY_TERMS terms, and the optimum is the same with or without them."""
    import planner.search.schedule_cpsat as cpsat

    pools = (Pool("own", "owned", "h100", capacity=(8,) * 14),)
    tasks = tuple(Task(f"j{i}", 0, None, 0, (i - 1,) if i else (), (Option(0, 8, 1, 1, 1), Option(0, 4, 3, 1, 1)))
                  for i in range(12))
    inst = Instance(14, 7, tasks, pools)
    full = solve(inst, time_limit=20, workers=1)
    def linear_rows() -> list[Any]:
        model = cpsat.ScheduleModel(inst)  # held while its proto is read: the rows are views into it
        return _rows(c for c in model.model.proto.constraints if c.has_linear())

    rows = linear_rows()
    monkeypatch.setattr(cpsat, "ENERGY_TERMS", 10)
    capped_rows = linear_rows()
    assert len(capped_rows) < len(rows)
    capped = solve(inst, time_limit=20, workers=1)
    assert capped.status == full.status == "optimal" and capped.objective == full.objective
