"""The search: a scenario resolved once (problem.py), each job's layouts evaluated into a typed candidate
table (candidates.py), CP-SAT choosing among them (cpsat.py), the choice re-checked (plans.py) and
explained (explain.py); exhaustive.py is the brute-force reference the tests hold it to.

`planner.solve` (planner/workflows/solve.py) runs these steps for one scenario.
"""

# Published cost models are 3-15 % off measurement (reference/solver.md §0), planner's time model ~5 %
# (BENCHMARKS.md): plans within this share of the optimum are ties under the model's error. `solve` lists
# them as near-optimal, `review` calls a better layout within it a tie.
NEAR_OPTIMAL_MARGIN = 0.03
