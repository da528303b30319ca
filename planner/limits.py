"""Physical ranges: every number a user can type (a scenario key, a catalog entry, a flag) is finite and
inside one of these. Plain constants, so that the CLI can show them in `--help` without loading pydantic;
planner.schema and planner.scenario build their field types from them.
"""

from __future__ import annotations

# The largest training clusters announced hold ~100k–200k GPUs (xAI Colossus, 2024); 2^20 leaves room.
MAX_GPUS = 2**20
# Longest trained context published: 10M tokens (Llama 4 Scout, 2025); 2^24 = 16.8M.
MAX_SEQ = 2**24
# Sequences per optimizer step: Llama 3 405B ran 16M tokens = 2,048 sequences of 8k; 2^22 is 2,000× that.
MAX_GLOBAL_BATCH = 2**22
# Tokens of one job: the largest published pre-training sets are ~36T (Qwen3, 2025); 1e15 is 25× that.
MAX_TOKENS = 1e15
# Model widths and depths: far past any published dense or MoE transformer (hidden 25,600 / 160 layers / 256 experts).
MAX_WIDTH = 2**22
# Depth: the deepest transformer trained is DeepNet's 1,000 layers (Wang et al. 2022, arXiv 2203.00555); past 1,024
# the pipeline search (pp × virtual stages up to the depth) stops answering in seconds: 2,000 layers take 13 s.
MAX_LAYERS = 1_024
MAX_VOCAB = 2**24
MAX_EXPERTS = 2**16
# Bytes a planner knob may reserve per GPU: 1 TiB is more than any accelerator holds.
MAX_BYTES_PER_GPU = 2**40
# One collective's latency term: a second is 10^5 times NCCL's per-hop figures.
MAX_LATENCY_US = 1e6
# Prices: the dearest on-demand GPU-hour listed is ~$14 (hardware.md); a GPU with its server share ~$80k.
MAX_USD_PER_GPU_HOUR = 1_000.0
MAX_USD_PER_GPU = 10_000_000.0
# Serving request rates: below one request per 11.6 days a fleet is an idle replica (and simulated arrival times lose
# the millisecond resolution latencies need); the busiest public APIs serve ~1e5 requests/s, 1e6 is 10× that.
MIN_QPS = 1e-6
MAX_QPS = 1e6
# Requests one serving replica holds at once (vLLM max_num_seqs, closed-loop clients): engines default to 256-1,024;
# 10^5 is far past any deployed batch and bounds the simulator's per-request arrays.
MAX_CONCURRENCY = 100_000
# Requests one deployment's simulation samples at most (`planner serve --requests`): 10^5 runs in seconds.
MAX_SIMULATED_REQUESTS = 100_000
# Seeds of the sampled serving requests: numpy's generators take non-negative integers; 2^63 − 1 keeps them int64.
MAX_SEED = 2**63 - 1
# Floors of the rates a scenario or catalog entry states. Below them a number is a typo, not hardware, and the
# times built on it overflow: a thousandth of a TFLOP/s (the slowest part catalogued peaks at ~8), of a TB/s of memory
# (a GDDR6 inference card moves 0.3), of a GB/s or Gbit/s of a link, a host bus or storage.
MIN_TFLOPS = 1e-3
MIN_RATE = 1e-3
# Achievable fractions of a peak and fixed utilisations: 0.1 %, the CLI's --mfu/--hfu floor; the least efficient
# path planner times (unfused attention on a small model) runs at a few percent of peak.
MIN_EFFICIENCY = 1e-3
# A deadline beyond ten years or a budget beyond a trillion dollars is a typo, not a plan.
MAX_DAYS = 3650.0
MAX_BUDGET_USD = 1e12

# A file a user hands planner (scenario, framework config, launch script): the largest catalog is under 100 kB;
# ten times that is beyond any honest input and keeps the pure-Python YAML parser within seconds.
MAX_FILE_BYTES = 2**20

# Knobs of the search, not of the job.
# Plans listed: a table of a thousand rows is already past reading.
MAX_TOP_K = 1000
# A solver run of a day is past any planning question; CP-SAT answers these in seconds to minutes.
MAX_TIME_LIMIT_S = 86_400.0
# The near-optimal band: 10 = plans up to 11× the optimum's cost, far past "a tie under the model's error".
MAX_MARGIN = 10.0
# Worker processes or threads: more than the largest single host's cores buys nothing.
MAX_WORKERS = 256
# Sweep points of compare --deadline/--budget: each is a full set of option rows.
MAX_SWEEP_POINTS = 1_000
