"""Collective costs on the link they cross: NVLink/NVSwitch inside a node, the network across nodes.

Alpha-beta model of NCCL's ring algorithms (the model NCCL itself tunes with, src/graph/tuning.cc):
time = latency + bytes on the wire / bus bandwidth, with

- all-reduce: 2(n−1)/n · bytes, latency base + 2(n−1) ring steps;
- all-gather / reduce-scatter: (n−1)/n · bytes of the full (gathered) buffer, base + (n−1) steps;
- all-to-all: each rank's share for its (n−1) peers, over NVLink for peers in its node and over its
  own NIC for the rest (NCCL cannot spread one rank's all-to-all over several NICs);
- point-to-point: bytes / link bandwidth + one step.

Ranks are laid out as Megatron-LM does: tp innermost, then cp, then dp (ep carved out of its
innermost part), then pp. A group of n ranks whose members are `stride` ranks apart therefore has
max(1, gpus_per_node // stride) members per node, capped at n; it crosses the network when it has
more members than fit in one node. Inside a node a ring runs at NVLink bus bandwidth; across nodes
at the NIC rate times the NICs a rank's share can use (`Efficiency.nic_aggregation`), never faster
than NVLink. Every function takes numpy arrays or Python scalars for the group shape and bytes,
so the solver evaluates whole layout grids with the same formulas `training_time` uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from planner.schema import Efficiency, GpuSku

# A Python float or int, or a numpy array of them: the formulas are arithmetic plus vmax/vmin.
Num = Any

US = 1e-6


def vmax(a: Num, b: Num) -> Num:
    """max(a, b) for scalars and arrays alike."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.maximum(a, b)
    return a if a >= b else b


def vmin(a: Num, b: Num) -> Num:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.minimum(a, b)
    return a if a <= b else b


@dataclass(frozen=True)
class Links:
    """Achievable bandwidths (bytes/s) and latencies (s) of one GPU's links."""

    intra_bw: float  # NVLink bus bandwidth per GPU, after efficiency
    nic_bw: float  # one GPU's NIC, after efficiency
    nic_aggregation: float  # NICs a rank's share of a ring can use when its group shares the node
    gpus_per_node: int
    base_lat: float
    hop_intra: float
    hop_inter: float


def links(gpu: GpuSku, eff: Efficiency | None = None, gpus_per_node: int | None = None) -> Links:
    eff = eff or gpu.efficiency
    return Links(
        intra_bw=gpu.intra_node_gbs * 1e9 * eff.intra_node,
        nic_bw=gpu.network_gbps / 8 * 1e9 * eff.inter_node,
        nic_aggregation=eff.nic_aggregation,
        gpus_per_node=gpus_per_node or gpu.node_size,
        base_lat=eff.nccl_base_latency_us * US,
        hop_intra=eff.nccl_hop_latency_nvlink_us * US,
        hop_inter=eff.nccl_hop_latency_net_us * US,
    )


@dataclass(frozen=True)
class Group:
    """A communicator of n ranks spaced `stride` apart, and what its placement implies."""

    n: Num
    local: Num  # members per node
    nodes: Num
    spans: Num  # 1.0 when the group crosses nodes, else 0.0
    bus_bw: Num  # ring bus bandwidth, bytes/s
    base_lat: Num  # NCCL's fixed latency per collective, seconds; 0 for a single rank
    step_lat: Num  # latency of one ring round (n − 1 steps), seconds
    links: Links


def group(n: Num, stride: Num, ln: Links) -> Group:
    """Place a group on nodes of `ln.gpus_per_node` consecutive ranks. A ring runs at NVLink bus
    bandwidth inside a node and at the NICs its ranks share across nodes, never above NVLink."""
    if isinstance(n, np.ndarray) or isinstance(stride, np.ndarray):
        local = vmin(n, vmax(1, ln.gpus_per_node // stride))
        inter = vmin(ln.intra_bw, vmin(local, ln.nic_aggregation) * ln.nic_bw)
    else:  # one layout: the same arithmetic on Python numbers, without the array dispatch
        local = min(n, max(1, ln.gpus_per_node // stride))
        inter = min(ln.intra_bw, min(local, ln.nic_aggregation) * ln.nic_bw)
    spans = (n > local) * 1.0
    nodes = -(-n // local)
    bus_bw = ln.intra_bw + spans * (inter - ln.intra_bw)
    # NCCL's ring latency (tuning.cc): base + one step per rank, node crossings at network latency
    inter_steps = nodes - 1
    step_lat = (n - 1 - inter_steps) * ln.hop_intra + inter_steps * ln.hop_inter
    return Group(n, local, nodes, spans, bus_bw, (n > 1) * ln.base_lat, step_lat, ln)


def all_reduce(nbytes: Num, g: Group) -> Num:
    """Ring all-reduce of a `nbytes` buffer on every rank: 2(n−1)/n · bytes / busbw + 2 rounds."""
    return 2 * (g.n - 1) / g.n * nbytes / g.bus_bw + g.base_lat + 2 * g.step_lat


def all_gather(nbytes: Num, g: Group) -> Num:
    """Ring all-gather into a `nbytes` output on every rank (each contributes nbytes/n)."""
    return (g.n - 1) / g.n * nbytes / g.bus_bw + g.base_lat + g.step_lat


def reduce_scatter(nbytes: Num, g: Group) -> Num:
    """Ring reduce-scatter of a `nbytes` input on every rank: the same wire bytes as all-gather."""
    return all_gather(nbytes, g)


def all_to_all(nbytes: Num, g: Group) -> Num:
    """All-to-all where every rank holds `nbytes` spread evenly over the n ranks (itself included).
    Local and remote peers are served at once; the remote share goes through the rank's own NIC."""
    ln = g.links
    local_t = (g.local - 1) / g.n * nbytes / ln.intra_bw
    remote_t = (g.n - g.local) / g.n * nbytes / ln.nic_bw
    return vmax(local_t, remote_t) + g.base_lat + g.step_lat


def node_dedup_dispatch(nbytes: Num, remote_bytes: Num, g: Group) -> Num:
    """A node-aware MoE dispatch (DeepEP / HybridEP): `remote_bytes` leave through the rank's own NIC, one
    copy per destination node, and the `nbytes` of per-expert copies are spread inside the destination
    nodes over NVLink (a rank's own share stays put)."""
    ln = g.links
    local_t = (g.local - 1) / g.local * nbytes / ln.intra_bw
    remote_t = g.spans * remote_bytes / ln.nic_bw
    return vmax(local_t, remote_t) + g.base_lat + g.step_lat


def p2p(nbytes: Num, g: Group) -> Num:
    """One send of `nbytes` to the next rank of the group (pipeline stages, ring attention): over the
    NIC when the group crosses nodes (its slowest hop), else NVLink; plus one step of latency."""
    ln = g.links
    bw = ln.intra_bw + g.spans * (ln.nic_bw - ln.intra_bw)
    hop = ln.hop_intra + g.spans * (ln.hop_inter - ln.hop_intra)
    return nbytes / bw + ln.base_lat + hop
