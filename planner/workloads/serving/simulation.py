"""A discrete-event simulation of one serving replica: arrivals, the engine's iteration-level batching, and the
latency every request sees.

Requests arrive as a Poisson process at a QPS (open loop, seeded) or from a fixed number of clients that send
the next request when the previous one finishes (closed loop, as benchmark clients with --max-concurrency do).
The engine loop follows the three engines' schedulers (vLLM v1/core/sched/scheduler.py, TensorRT-LLM's
in-flight batching capacity and micro-batch schedulers, SGLang managers/scheduler.py):

- each iteration first carries one decode token per running request, then prefill tokens in arrival order up to
  the token budget: continuing chunks of admitted prompts, then new requests while the batch limit
  (max_num_seqs) and the KV cache admit them. Without chunked prefill a prompt is scheduled whole; without
  mixed batches (SGLang's default) an iteration is prefill-only whenever a prefill can be scheduled;
- admission reserves a share of the request's future output in the KV pool (TensorRT-LLM's
  GUARANTEED_NO_EVICT reserves it all, SGLang a decaying new-token ratio, vLLM none); when decodes outgrow the
  pool the most recently admitted request is preempted and recomputed later (vLLM, SGLang retraction);
- prefix caching skips the cached share of each prompt's compute (its KV still counts as context);
- sliding-window layers hold only the window (vLLM's and SGLang's window managers free the blocks behind it): a
  request's window share is charged when it is admitted, for the window it will fill, and each further token adds
  only its full-attention layers' K and V; decode reads and prefill pairs count the window the same way.

Iteration times come from planner.model.serving: one table over token counts per deployment plus terms linear in
sequences, decode context and prefill attention pairs, so each iteration costs a few float operations and the
loop runs thousands of iterations in milliseconds.

Outputs per request: TTFT (arrival → end of the iteration that produced the first token) and TPOT
((finish − first token) / (output − 1), as vLLM's and TRT-LLM's benchmarks compute it). Percentiles and SLO
attainment are taken over requests after a warm-up share; throughput over the steady window.

Lengths: fixed, a histogram, or a log-normal fitted to a mean and a p99 (mean = e^(μ+σ²/2),
p99 = e^(μ+2.326σ); the smaller root for σ), clipped to [1, max].
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
from pydantic import Field, model_validator

from planner.errors import InputError
from planner.limits import MAX_SEQ
from planner.model.serving import EngineConfig, ServingModel
from planner.schema import Strict

Z99 = 2.3263478740408408  # standard normal 99th percentile
# Mean gap between a closed-loop client's last token and its next request arriving at the engine: the streamed
# response's last chunk, the client's next send and the server's tokenisation (a few ms on a local network).
CLIENT_GAP_S = 0.005
MAX_RUN = 4096  # decode iterations advanced at once
PERCENTILES = (50, 90, 99)
STABLE_SHARE = 0.9  # completions keep pace with arrivals to within 10 %: below, the replica is overloaded


# A request's tokens: at least one, at most the longest sequence planner models (planner.limits.MAX_SEQ).
Tokens = Annotated[int, Field(ge=1, le=MAX_SEQ)]


class LengthDist(Strict):
    """Token lengths: `fixed`, a log-normal from `mean` and `p99`, or a `histogram` of [length, weight] pairs."""

    fixed: Tokens | None = None
    mean: float | None = Field(None, gt=0, le=MAX_SEQ, allow_inf_nan=False)
    p99: float | None = Field(None, gt=0, le=MAX_SEQ, allow_inf_nan=False)
    histogram: list[tuple[Tokens, float]] | None = None
    max: Tokens | None = Field(None, description="clip sampled lengths to this (default: 32 x mean)")

    @model_validator(mode="after")
    def _one_form(self) -> LengthDist:
        forms = (self.fixed is not None) + (self.mean is not None) + (self.histogram is not None)
        if forms != 1:
            raise ValueError("give exactly one of fixed, mean (with optional p99) or histogram")
        if self.p99 is not None and self.mean is None:
            raise ValueError("p99 needs mean")
        if self.mean is not None and self.p99 is not None:
            if self.p99 < self.mean:
                raise ValueError(f"p99 ({self.p99}) is below mean ({self.mean})")
            if math.log(self.p99 / self.mean) > Z99 * Z99 / 2:
                raise ValueError(f"p99/mean = {self.p99 / self.mean:.1f} exceeds what a log-normal allows (14.9)")
        if self.histogram is not None:
            if not self.histogram or any(w < 0 or not math.isfinite(w) for _, w in self.histogram):
                raise ValueError("histogram needs [length, weight] pairs with finite weights >= 0")
            if sum(w for _, w in self.histogram) <= 0:
                raise ValueError("histogram weights sum to zero")
        return self

    @classmethod
    def of(cls, value: int | LengthDist) -> LengthDist:
        return value if isinstance(value, LengthDist) else cls(fixed=int(value))

    def sigma(self) -> float:
        """Log-normal σ from mean and p99: σ²/2 − z·σ + ln(p99/mean) = 0, smaller root."""
        if self.mean is None or self.p99 is None:
            return 0.0
        r = math.log(self.p99 / self.mean)
        return Z99 - math.sqrt(max(Z99 * Z99 - 2 * r, 0.0))

    def expected(self) -> float:
        if self.fixed is not None:
            return float(self.fixed)
        if self.histogram is not None:
            lengths = np.array([x for x, _ in self.histogram], dtype=float)
            w = np.array([w for _, w in self.histogram], dtype=float)
            return float(lengths @ w / w.sum())
        return float(self.mean or 0.0)

    def quantile(self, q: float) -> float:
        """Length at quantile q (0-1), before clipping."""
        if self.fixed is not None:
            return float(self.fixed)
        if self.histogram is not None:
            pairs = sorted(self.histogram)
            w = np.cumsum([p[1] for p in pairs])
            return float(pairs[int(np.searchsorted(w, q * w[-1]))][0])
        s = self.sigma()
        mu = math.log(self.mean or 1.0) - s * s / 2
        from statistics import NormalDist

        return math.exp(mu + s * NormalDist().inv_cdf(min(max(q, 1e-9), 1 - 1e-9)))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self.fixed is not None:
            return np.full(n, self.fixed, dtype=np.int64)
        if self.histogram is not None:
            lengths = np.array([x for x, _ in self.histogram], dtype=np.int64)
            w = np.array([w for _, w in self.histogram], dtype=float)
            return rng.choice(lengths, size=n, p=w / w.sum())
        s = self.sigma()
        mu = math.log(self.mean or 1.0) - s * s / 2
        x = np.rint(rng.lognormal(mu, s, size=n)) if s > 0 else np.full(n, round(self.mean or 1.0))
        hi = self.max or max(1, int(32 * (self.mean or 1.0)))
        return np.clip(x, 1, hi).astype(np.int64)


@dataclass
class SimResult:
    """Per-request latencies (seconds) of the requests after warm-up, and the replica's throughput."""

    ttft: np.ndarray
    tpot: np.ndarray
    e2e: np.ndarray
    output_tokens_per_s: float
    input_tokens_per_s: float
    requests_per_s: float
    duration_s: float
    iterations: int
    preemptions: int
    mean_batch: float  # running requests per iteration, time-weighted
    unserved: int  # requests that can never fit the KV pool
    completion_rate: float = 0.0  # requests/s finishing while requests still arrive: below the offered rate = overload
    arrival_rate: float = 0.0  # requests/s arriving over the same window (the sample's rate, not the nominal one)
    prefill_seconds: float = 0.0  # iteration time attributed to prefill tokens (by token share)
    decode_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def percentiles(self, what: str) -> dict[str, float]:
        """p50/p90/p99 of ttft, tpot or e2e, in milliseconds."""
        return {f"p{p}": self.at(what, p) for p in PERCENTILES}

    def keeps_up(self, offered: float | None = None) -> bool:
        """Requests finish, while requests still arrive, at the offered rate (req/s; default the rate this run's
        requests arrived at, which a short Poisson sample sets off the nominal one); below it the queue grows
        without bound, and a finite run's percentiles understate a steady state that never comes."""
        return self.completion_rate >= STABLE_SHARE * (self.arrival_rate if offered is None else offered)

    def at(self, what: str, pct: float) -> float:
        """The `pct` percentile of ttft, tpot or e2e, in milliseconds; inf when no request has one."""
        x = getattr(self, what)
        return float(np.percentile(x, pct)) * 1e3 if len(x) else math.inf

    def attainment(self, ttft_s: float, tpot_s: float) -> float:
        """Share of requests meeting both SLOs (DistServe's goodput definition)."""
        if len(self.ttft) == 0:
            return 0.0
        return float(np.mean((self.ttft <= ttft_s) & (self.tpot <= tpot_s)))

    def meets(self, ttft_s: float, tpot_s: float, percentile: float, attainment: float | None = None) -> bool:
        """pXX TTFT and pXX TPOT within the SLOs (and, if given, the share meeting both at least `attainment`)."""
        if self.unserved or len(self.ttft) == 0:
            return False
        ok = (float(np.percentile(self.ttft, percentile)) <= ttft_s
              and float(np.percentile(self.tpot, percentile)) <= tpot_s)
        if attainment is not None:
            ok = ok and self.attainment(ttft_s, tpot_s) >= attainment
        return ok


@dataclass(frozen=True)
class StepTable:
    """Iteration time = table[tokens] + per_seq·seqs + per_ctx·decode_ctx + per_pair·prefill_pairs, then the
    launch floor and host overhead (planner.model.serving.ServingModel.step_seconds, tabulated)."""

    table: list[float]  # GPU seconds of an iteration of n tokens (a list: fast scalar indexing)
    per_seq: float
    per_ctx: float
    per_pair: float
    launch: float
    host: float  # per iteration
    host_per_seq: float  # per running request per iteration
    overlap: bool
    model: ServingModel

    @classmethod
    def build(cls, model: ServingModel, max_tokens: int, overlap: bool) -> StepTable:
        tokens = np.arange(max_tokens + 1, dtype=float)
        base = np.asarray(model.gpu_seconds(tokens, 0.0, 0.0, 0.0), dtype=float)
        zero = float(base[0])
        per_seq = float(model.gpu_seconds(0.0, 1.0, 0.0, 0.0)) - zero
        per_ctx = float(model.gpu_seconds(0.0, 0.0, 1.0, 0.0)) - zero
        per_pair = float(model.gpu_seconds(0.0, 0.0, 0.0, 1.0)) - zero
        seff = model.seff
        return cls(base.tolist(), per_seq, per_ctx, per_pair, model.launch_seconds(), seff.host_overhead_ms * 1e-3,
                   seff.host_us_per_request * 1e-6, overlap, model)

    def gpu(self, tokens: int) -> float:
        if tokens < len(self.table):
            return self.table[tokens]
        return float(self.model.gpu_seconds(float(tokens), 0.0, 0.0, 0.0))


def _run_seconds(first: float, grow: float, floor: float, extra: float, steps: int) -> float:
    """Wall time of `steps` decode iterations whose GPU time is first + k·grow (k = 0, 1, ...), each at least
    `floor` and plus `extra`: Σ max(first + k·grow, floor) + steps·extra in closed form."""
    if first >= floor:
        below = 0
    elif grow <= 0:
        below = steps
    else:
        below = min(steps, math.ceil((floor - first) / grow))
    rest = steps * (steps - 1) / 2 - below * (below - 1) / 2
    floored = floor * below if below else 0.0  # floor may be -inf (no floor): never -inf × 0
    return floored + (steps - below) * first + grow * rest + steps * extra


def poisson_arrivals(qps: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """Arrival times of a Poisson process at `qps` requests/s."""
    if not (qps > 0 and math.isfinite(qps)):
        raise InputError(f"qps must be a positive finite number, got {qps!r}")
    return np.cumsum(rng.exponential(1.0 / qps, size=n))


def simulate(
    model: ServingModel,
    engine: EngineConfig,
    inputs: np.ndarray,
    outputs: np.ndarray,
    *,
    arrivals: np.ndarray | None = None,
    concurrency: int | None = None,
    kv_tokens: int | None = None,
    prefix_hit: float = 0.0,
    warmup: float = 0.1,
    table: StepTable | None = None,
    client_gap_s: float = CLIENT_GAP_S,
    seed: int = 0,
    prefilled: bool = False,
) -> SimResult:
    """Run the engine over the requests (open loop with `arrivals`, or closed loop with `concurrency` clients).

    `kv_tokens` is the replica's KV pool (default: what the engine allocates on this GPU). Requests whose
    prompt plus output can never fit the pool are counted in `unserved` and skipped. In the closed loop a client
    sends its next request an exponentially distributed `client_gap_s` after its last token (seeded by `seed`),
    so new requests land inside an iteration rather than exactly on its boundary. `prefilled` requests arrive
    with their prompt's KV already in place (a disaggregated decode pool): they take one token of compute.
    """
    n_req = len(inputs)
    if n_req == 0 or len(outputs) != n_req:
        raise InputError("simulate needs as many output lengths as input lengths, at least one")
    if (arrivals is None) == (concurrency is None):
        raise InputError("give arrivals (open loop) or concurrency (closed loop)")
    cap = int(kv_tokens if kv_tokens is not None else model.kv_pool_tokens(engine))
    inputs_l = [int(x) for x in inputs]
    outputs_l = [max(1, int(x)) for x in outputs]
    hit = prefix_hit if engine.prefix_caching else 0.0
    cached = [x - 1 for x in inputs_l] if prefilled else [min(int(x * hit), x - 1) for x in inputs_l]
    budget_max = engine.token_budget
    max_seqs = engine.max_num_seqs
    tab = table or StepTable.build(model, budget_max + max_seqs, engine.overlap_scheduler)
    bs = engine.block_size
    # KV in units of model.kv_bytes_per_token: a token adds `a` of it (its full-attention layers); the
    # sliding-window layers' share is charged once, at admission, for the window the request will fill
    a = 1.0 - model.window_share

    def window_charge(tokens: int) -> float:
        return float(model.kv_tokens(tokens)) - a * tokens

    # per-request state
    prompt = list(inputs_l)  # tokens whose KV must exist before decoding (prompt + recomputed output)
    todo = [inputs_l[r] - cached[r] for r in range(n_req)]  # prompt tokens still to compute
    have = list(cached)  # prompt tokens already in KV
    remaining = list(outputs_l)  # output tokens still to produce
    reservation = [0.0] * n_req
    held = [0.0] * n_req  # the window charge of an admitted request
    kd_join = [0] * n_req
    version = [0] * n_req
    arrive = [math.inf] * n_req
    first = [math.nan] * n_req
    finish = [math.nan] * n_req
    never = [False] * n_req

    closed = concurrency is not None
    if closed:
        c0 = min(int(concurrency or 1), n_req)
        for r in range(c0):
            arrive[r] = 0.0
        next_id = c0
        arr_sorted: list[float] = []
    else:
        assert arrivals is not None
        arr_sorted = [float(a) for a in arrivals]
        next_id = 0

    waiting: deque[int] = deque()
    pending: list[tuple[float, int]] = []  # closed loop: (arrival time, rid) of requests clients have sent
    gap_rng = np.random.default_rng(seed)
    prefilling: deque[int] = deque()
    heap: list[tuple[int, int, int, int]] = []  # (decode step it finishes at, seq, rid, version)
    stack: list[tuple[int, int]] = []  # (rid, version) in admission order: preemption victims from the end
    seq_no = 0
    n_run = 0  # decoding requests
    ctx_sum = 0.0  # their KV tokens
    used = 0.0  # KV tokens of every admitted request
    reserved = 0.0
    ratio = engine.reserve_ratio_init
    decay = (engine.reserve_ratio_init - engine.reserve_ratio_min) / engine.reserve_ratio_decay_steps
    t = 0.0
    kd = 0  # decode iterations so far
    iters = 0
    preempt = 0
    done = 0
    batch_time = 0.0
    busy = False  # the previous iteration ran (an overlap scheduler had a step to hide the host work behind)
    pre_time = 0.0
    dec_time = 0.0
    if closed:
        waiting.extend(range(next_id))

    def release(r: int, now: float) -> None:
        nonlocal done, next_id
        done += 1
        if closed and next_id < n_req:
            at = now + (float(gap_rng.exponential(client_gap_s)) if client_gap_s > 0 else 0.0)
            arrive[next_id] = at
            heapq.heappush(pending, (at, next_id))
            next_id += 1

    while done < n_req:
        if closed:
            while pending and pending[0][0] <= t:
                waiting.append(heapq.heappop(pending)[1])
        else:
            while next_id < n_req and arr_sorted[next_id] <= t:
                arrive[next_id] = arr_sorted[next_id]
                waiting.append(next_id)
                next_id += 1
        # ---- preempt when the next decode tokens do not fit ---------------------------------
        while n_run and used + a * n_run > cap:
            while stack:
                v, ver = stack.pop()
                if version[v] == ver and not math.isnan(first[v]) and math.isnan(finish[v]):
                    break
            else:
                break
            g = kd - kd_join[v]
            ctx = prompt[v] + g
            ctx_sum -= a * ctx + held[v]
            used -= a * ctx + held[v]
            n_run -= 1
            reserved -= reservation[v]
            remaining[v] -= g
            prompt[v] = ctx
            todo[v] = ctx
            have[v] = 0
            version[v] += 1
            waiting.appendleft(v)
            ratio = engine.reserve_ratio_init
            preempt += 1
        # ---- schedule -----------------------------------------------------------------------
        decode = n_run > 0
        budget = budget_max - (n_run if decode else 0)
        seqs_in = n_run + len(prefilling)
        chunks: list[tuple[int, int]] = []
        prefill_possible = bool(prefilling) or bool(waiting)
        if not engine.mixed_batches and prefill_possible:
            budget = budget_max  # a prefill-only iteration if any prefill gets scheduled
        for r in prefilling:
            if budget <= 0:
                break
            c = min(todo[r], budget) if engine.chunked_prefill else todo[r]
            if not engine.chunked_prefill and c > budget and chunks:
                break
            chunks.append((r, c))
            budget -= c
        while waiting and seqs_in < max_seqs and (budget > 0 or (not engine.chunked_prefill and not chunks)):
            r = waiting[0]
            need = float(model.kv_tokens(prompt[r] + remaining[r]))
            if need > cap:
                waiting.popleft()
                never[r] = True
                release(r, t)
                continue
            win = window_charge(prompt[r] + remaining[r])
            res = a * (prompt[r] + math.ceil(ratio * remaining[r]) + bs / 2) + win
            if max(reserved, used) + res > cap:
                break
            c = min(todo[r], budget) if engine.chunked_prefill else todo[r]
            if not engine.chunked_prefill and c > budget and chunks:
                break
            waiting.popleft()
            prefilling.append(r)
            reservation[r] = res
            reserved += res
            held[r] = win
            used += a * have[r] + win
            seqs_in += 1
            chunks.append((r, c))
            budget -= c
        if chunks and not engine.mixed_batches:
            decode = False
        if not decode and not chunks:
            if waiting and not n_run and not prefilling:
                # the head request cannot be admitted with nothing running: it never fits
                r = waiting.popleft()
                never[r] = True
                release(r, t)
                continue
            busy = False
            if closed and pending:
                t = max(t, pending[0][0])
            elif not closed and next_id < n_req:
                t = max(t, arr_sorted[next_id])
            else:
                break  # nothing runs, arrives or waits
            continue
        # ---- iteration time -----------------------------------------------------------------
        if decode and not chunks and not waiting and not prefilling:
            # a pure decode run: nothing changes the batch before the next completion, arrival or KV overflow,
            # so advance all its iterations at once (each one's context grows by the batch)
            steps = heap[0][0] - kd
            if a and used + a * n_run * steps > cap:
                steps = max(1, int((cap - used) // (a * n_run)))
            steps = max(1, min(steps, MAX_RUN))
            g0 = tab.gpu(n_run) + tab.per_seq * n_run + tab.per_ctx * ctx_sum
            host = tab.host + tab.host_per_seq * n_run
            floor = tab.launch if n_run > engine.cuda_graph_max_batch else -math.inf
            if tab.overlap:
                floor, extra = max(floor, host), 0.0
            else:
                extra = host
            grow = tab.per_ctx * a * n_run
            nxt = pending[0][0] if closed and pending else (
                arr_sorted[next_id] if not closed and next_id < n_req else math.inf)
            if nxt < t + _run_seconds(g0, grow, floor, extra, steps):
                lo, hi = 1, steps  # the first step whose end reaches the arrival
                while lo < hi:
                    mid = (lo + hi) // 2
                    if t + _run_seconds(g0, grow, floor, extra, mid) >= nxt:
                        hi = mid
                    else:
                        lo = mid + 1
                steps = lo
            dt = _run_seconds(g0, grow, floor, extra, steps)
            dec_time += dt
            batch_time += dt * n_run
            t += dt
            iters += steps
            ratio = max(engine.reserve_ratio_min, ratio - decay * steps)
            kd += steps - 1  # the last iteration of the run goes through the common path below
            ctx_sum += a * n_run * (steps - 1)
            used += a * n_run * (steps - 1)
            kd += 1
            ctx_sum += a * n_run
            used += a * n_run
            while heap and heap[0][0] <= kd:
                _, _, r, ver = heapq.heappop(heap)
                if version[r] != ver:
                    continue
                ctx = prompt[r] + (kd - kd_join[r])
                ctx_sum -= a * ctx + held[r]
                used -= a * ctx + held[r]
                n_run -= 1
                reserved -= reservation[r]
                finish[r] = t
                version[r] += 1
                release(r, t)
            continue
        p_tokens = 0
        pairs = 0.0
        completing = 0
        for r, c in chunks:
            h = have[r]
            pairs += float(model.prefill_pairs(h + c, h))
            p_tokens += c
            if c >= todo[r]:
                completing += 1
        d_tokens = n_run if decode else 0
        tokens = d_tokens + p_tokens
        gpu = tab.gpu(tokens) + tab.per_seq * (d_tokens + completing) + tab.per_pair * pairs
        if decode:
            gpu += tab.per_ctx * ctx_sum
        graphed = decode and not chunks and n_run <= engine.cuda_graph_max_batch
        dt = gpu if graphed else max(gpu, tab.launch)
        host = tab.host + tab.host_per_seq * (n_run + len(prefilling))
        # an overlap scheduler prepares iteration i+1 during step i; after an idle gap there is nothing to hide behind
        dt = max(dt, host) if tab.overlap and busy else dt + host
        if tokens:
            pre_time += dt * p_tokens / tokens
            dec_time += dt * d_tokens / tokens
        batch_time += dt * (n_run + len(prefilling))
        t += dt
        iters += 1
        busy = True
        if ratio > engine.reserve_ratio_min:
            ratio = max(engine.reserve_ratio_min, ratio - decay)
        # ---- advance ------------------------------------------------------------------------
        if decode:
            kd += 1
            ctx_sum += a * n_run
            used += a * n_run
            while heap and heap[0][0] <= kd:
                _, _, r, ver = heapq.heappop(heap)
                if version[r] != ver:
                    continue
                ctx = prompt[r] + (kd - kd_join[r])
                ctx_sum -= a * ctx + held[r]
                used -= a * ctx + held[r]
                n_run -= 1
                reserved -= reservation[r]
                finish[r] = t
                version[r] += 1
                release(r, t)
        for r, c in chunks:
            todo[r] -= c
            have[r] += c
            used += a * c
            if todo[r] > 0:
                continue
            prefilling.remove(r)
            if math.isnan(first[r]):
                first[r] = t
            remaining[r] -= 1
            if remaining[r] <= 0:
                used -= a * prompt[r] + held[r]
                reserved -= reservation[r]
                finish[r] = t
                release(r, t)
                continue
            kd_join[r] = kd
            ctx_sum += a * prompt[r] + held[r]
            n_run += 1
            heapq.heappush(heap, (kd + remaining[r], seq_no, r, version[r]))
            stack.append((r, version[r]))
            seq_no += 1

    arrive_a = np.array(arrive)
    first_a = np.array(first)
    finish_a = np.array(finish)
    out_a = np.array(outputs_l, dtype=float)
    in_a = np.array(inputs_l, dtype=float)
    served = ~np.array(never)
    start = int(warmup * n_req) if not closed else min(n_req - 1, max(int(warmup * n_req), int(concurrency or 1)))
    idx = np.arange(n_req)
    stat = served & (idx >= start)
    ttft = first_a[stat] - arrive_a[stat]
    multi = out_a[stat] > 1
    tpot = np.where(multi, (finish_a[stat] - first_a[stat]) / np.maximum(out_a[stat] - 1, 1), 0.0)
    if closed:
        t_a = arrive_a[start] if n_req > start else 0.0
        t_b = float(np.nanmax(np.where(np.isfinite(arrive_a), arrive_a, np.nan)))
        if not t_b > t_a:
            t_a, t_b = 0.0, float(np.nanmax(finish_a))
        window = served & (finish_a >= t_a) & (finish_a <= t_b)
    else:
        t_a = float(np.min(arrive_a[stat])) if stat.any() else 0.0
        t_b = float(np.nanmax(finish_a[stat])) if stat.any() else 0.0
        window = stat
    span = max(t_b - t_a, 1e-12)
    last_arrival = float(np.max(arrive_a[np.isfinite(arrive_a)])) if np.isfinite(arrive_a).any() else 0.0
    first_stat = float(np.min(arrive_a[stat])) if stat.any() else 0.0
    in_window = served & (finish_a >= first_stat) & (finish_a <= last_arrival)
    completion_rate = float(in_window.sum() / max(last_arrival - first_stat, 1e-12))
    arrived = int((np.isfinite(arrive_a) & (idx >= start)).sum())
    arrival_rate = float(max(arrived - 1, 0) / max(last_arrival - first_stat, 1e-12))
    return SimResult(
        ttft=ttft,
        tpot=tpot,
        e2e=finish_a[stat] - arrive_a[stat],
        output_tokens_per_s=float(out_a[window].sum() / span),
        input_tokens_per_s=float(in_a[window].sum() / span),
        requests_per_s=float(window.sum() / span),
        duration_s=t,
        iterations=iters,
        preemptions=preempt,
        mean_batch=batch_time / t if t > 0 else 0.0,
        unserved=int((~served).sum()),
        completion_rate=completion_rate,
        arrival_rate=arrival_rate,
        prefill_seconds=pre_time,
        decode_seconds=dec_time,
    )


# --------------------------------------------------------------------------------------------
# Disaggregated prefill and decode pools
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DisaggResult:
    """Latencies of a disaggregated deployment: TTFT = prefill-pool queueing and prefill + KV transfer; TPOT
    from the decode pool, which runs no prefill (DistServe, Zhong et al. OSDI'24; Splitwise, Patel et al.
    ISCA'24)."""

    ttft: np.ndarray
    tpot: np.ndarray
    kv_transfer_s: np.ndarray
    prefill: SimResult
    decode: SimResult
    output_tokens_per_s: float

    def percentiles(self, what: str) -> dict[str, float]:
        x = getattr(self, what)
        return {f"p{p}": float(np.percentile(x, p)) * 1e3 for p in PERCENTILES}


def kv_transfer_seconds(prefill_model: ServingModel, tokens: np.ndarray, link_gbs: float) -> np.ndarray:
    """Moving a prompt's KV cache from the prefill replica to the decode replica: every prefill GPU sends its
    shard in parallel over its own link (`link_gbs` GB/s per GPU: the NIC across nodes, NVLink within one)."""
    return prefill_model.kv_tokens(tokens) * prefill_model.kv_bytes_per_token / (link_gbs * 1e9)


def simulate_disaggregated(
    prefill_model: ServingModel, prefill_engine: EngineConfig, prefill_replicas: int,
    decode_model: ServingModel, decode_engine: EngineConfig, decode_replicas: int,
    inputs: np.ndarray, outputs: np.ndarray, arrivals: np.ndarray, link_gbs: float, *, warmup: float = 0.1,
) -> DisaggResult:
    """Requests go round-robin to the prefill replicas; each finished prompt's KV moves to a decode replica
    (round-robin) and decodes there. One replica of each pool is simulated with its share of the requests."""
    if prefill_replicas < 1 or decode_replicas < 1:
        raise InputError("disaggregated pools need at least one prefill and one decode replica")
    n = len(inputs)
    pre_idx = np.arange(0, n, prefill_replicas)
    pre = simulate(prefill_model, prefill_engine, inputs[pre_idx], np.ones(len(pre_idx), dtype=np.int64),
                   arrivals=arrivals[pre_idx], warmup=0.0)
    # first-token times of the simulated prefill replica's requests (every replica behaves alike)
    first = np.full(n, np.nan)
    first[pre_idx] = arrivals[pre_idx] + pre.ttft
    for k in range(1, prefill_replicas):
        idx = np.arange(k, n, prefill_replicas)
        m = min(len(idx), len(pre_idx))
        first[idx[:m]] = arrivals[idx[:m]] + pre.ttft[:m]
    transfer = kv_transfer_seconds(prefill_model, inputs.astype(float), link_gbs)
    ready = first + transfer
    dec_idx = np.arange(0, n, decode_replicas)
    order = dec_idx[np.argsort(ready[dec_idx], kind="stable")]
    multi = outputs[order] > 1
    order = order[multi]
    dec = simulate(decode_model, decode_engine, inputs[order], outputs[order] - 1, arrivals=ready[order],
                   prefilled=True, warmup=0.0)
    start = int(warmup * len(order))
    ttft = (ready[order] - arrivals[order])[start:]
    # the decode replica's "first token" is the request's second; TPOT spans tokens 2..O
    tpot = (dec.e2e / np.maximum(outputs[order] - 1, 1))[start:]
    return DisaggResult(ttft=ttft, tpot=tpot, kv_transfer_s=transfer[order][start:], prefill=pre, decode=dec,
                        output_tokens_per_s=dec.output_tokens_per_s * decode_replicas)


# --------------------------------------------------------------------------------------------
# Closed forms (cross-checks and search bounds)
# --------------------------------------------------------------------------------------------


def md1_wait(arrival_rate: float, service_s: float) -> float:
    """Mean queueing delay of an M/D/1 queue (Pollaczek-Khinchine with zero service variance):
    W = ρ·s / (2(1 − ρ)). DistServe models a prefill instance this way (§3.1)."""
    rho = arrival_rate * service_s
    if rho >= 1:
        return math.inf
    return rho * service_s / (2.0 * (1.0 - rho))


@dataclass(frozen=True)
class AnalyticBounds:
    """Roofline-level bounds for one replica at one request shape."""

    ttft_min_s: float  # prefill alone on an idle replica
    tpot_min_s: float  # decode step of one request
    max_batch: int  # concurrency the batch limit and KV pool allow
    tpot_at_max_batch_s: float
    max_requests_per_s: float  # throughput with the batch full (Little's law on GPU time per request)


def analytic_bounds(
    model: ServingModel, engine: EngineConfig, input_len: float, output_len: float, kv_tokens: int | None = None,
    batch_limit: int | None = None, prefix_hit: float = 0.0,
) -> AnalyticBounds:
    """Serving reference's analytic core: KV capacity bounds the batch, a decode step at that batch bounds TPOT,
    and the replica's throughput is the batch over (its prefills' share + its decode steps)."""
    cap = kv_tokens if kv_tokens is not None else model.kv_pool_tokens(engine)
    limit = min(batch_limit or engine.max_num_seqs, engine.max_num_seqs)
    grows = input_len + max(engine.reserve_ratio_min, 0.5) * output_len + engine.block_size / 2
    # the full-attention layers' share of it, plus the window the sliding-window layers keep
    a = 1.0 - model.window_share
    footprint = a * grows + float(model.kv_tokens(input_len + output_len)) - a * (input_len + output_len)
    batch = int(max(0, min(limit, cap // max(footprint, 1.0))))
    cached = input_len * (prefix_hit if engine.prefix_caching else 0.0)
    prefill = float(model.prefill_seconds(input_len, engine, cached))
    ctx = input_len + output_len / 2
    tpot1 = float(model.decode_step_seconds(1, ctx, engine))
    tpot_b = float(model.decode_step_seconds(max(batch, 1), ctx, engine))
    if batch == 0:
        return AnalyticBounds(prefill, tpot1, 0, tpot_b, 0.0)
    # GPU time per request: its prefill (batched prefill amortises the weight read; count compute only) plus its
    # share of the decode iterations
    per_token_prefill = float(model.gpu_seconds(float(engine.token_budget), 0.0, 0.0, 0.0)) / engine.token_budget
    work = (input_len - cached) * per_token_prefill + (output_len - 1) * tpot_b / batch
    return AnalyticBounds(prefill, tpot1, batch, tpot_b, 1.0 / max(work, 1e-12))
