"""What buying GPUs costs beyond the price tag, and how long they take to arrive (catalogs/procurement.yaml).

A purchased GPU costs, for every hour it is held, its all-in price (server share × (1 + network share))
spread straight-line over its amortisation life plus colocation for its IT load; and for every hour it
runs, its TDP × PUE × $/kWh. The capex and power terms are the ones `planner.pricing.hourly_rate`
charges a purchase in `planner compare` (which assumes the GPU runs every hour it is held).
"""

from __future__ import annotations

from pydantic import Field

from planner.pricing import HOURS_PER_YEAR
from planner.schema import GpuSku, Price, Strict

HOURS_PER_MONTH = HOURS_PER_YEAR / 12


class Sourced(Strict):
    """One number with its date and source."""

    value: float = Field(ge=0)
    date: str
    source: str
    note: str | None = None


class SkuProcurement(Strict):
    sku: str
    lead_time_weeks: float = Field(gt=0, le=260, description="order to delivery")
    lead_time_range_weeks: tuple[float, float] | None = None
    date: str
    source: str
    note: str | None = None
    purchase_provider: str | None = Field(
        None, description="the catalog purchase price (by provider) that is a whole-server price per GPU")


class Procurement(Strict):
    amortisation_years: Sourced
    usd_per_kwh: Sourced
    pue: Sourced
    network_share: Sourced
    colocation_usd_per_kw_month: Sourced
    server_kw_per_gpu_tdp: Sourced
    skus: list[SkuProcurement] = Field(default_factory=list)

    def sku(self, gpu: GpuSku) -> SkuProcurement | None:
        """The SKU's procurement terms; a scenario's own GPU (`base:`) buys as its catalog base does."""
        from planner.catalog import get_gpu

        names = {gpu.name, gpu.base} - {None}
        return next((s for s in self.skus if get_gpu(s.sku).name in names), None)


def server_price(gpu: GpuSku, procurement: Procurement) -> Price | None:
    """The catalog purchase price to buy this SKU at: the whole-server price procurement.yaml names,
    else the catalog's first purchase price."""
    entry = procurement.sku(gpu)
    purchases = [p for p in gpu.prices if p.kind == "purchase"]
    if entry is not None and entry.purchase_provider is not None:
        named = [p for p in purchases if p.provider.lower() == entry.purchase_provider.lower()]
        if named:
            return named[0]
    return purchases[0] if purchases else None


def held_usd_per_gpu_hour(gpu: GpuSku, usd_per_gpu: float, *, amortisation_years: float,
                          colocation_usd_per_kw_month: float, server_kw_per_gpu_tdp: float) -> float:
    """What one bought GPU costs per hour held, run or not: capex straight-line over its life (as
    `planner.pricing.hourly_rate` amortises a purchase) plus colocation for its server's IT load."""
    capex = usd_per_gpu / (amortisation_years * HOURS_PER_YEAR)
    colocation = colocation_usd_per_kw_month / HOURS_PER_MONTH * gpu.tdp_w / 1000.0 * server_kw_per_gpu_tdp
    return capex + colocation


def power_usd_per_gpu_hour(gpu: GpuSku, *, pue: float, usd_per_kwh: float) -> float:
    """Electricity of one GPU-hour at TDP, as `planner.pricing.hourly_rate` charges a purchase."""
    return gpu.tdp_w / 1000.0 * pue * usd_per_kwh
