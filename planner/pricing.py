"""What one GPU-hour costs under a pricing option: a rental rate from the catalog (or the scenario's
override), or a purchase amortised over its life plus the electricity it draws."""

from __future__ import annotations

from dataclasses import dataclass

from planner.errors import InputError
from planner.scenario import Pricing
from planner.schema import GpuSku, Price

HOURS_PER_YEAR = 8_760.0


@dataclass(frozen=True)
class HourlyRate:
    usd_per_gpu_hour: float  # what an hour of one GPU costs, all in
    label: str  # e.g. "Lambda on-demand 2026-09-20"
    source: str
    max_gpus: int | None = None  # the offer's largest cluster (Price.max_gpus); None: not limited


def select_price(gpu: GpuSku, kind: str, provider: str | None = None) -> Price | None:
    """The first catalog price of that kind (and provider): catalogs list the default first."""
    for p in gpu.prices:
        if p.kind == kind and (provider is None or p.provider.lower() == provider.lower()):
            return p
    return None


def hourly_rate(gpu: GpuSku, pricing: Pricing) -> HourlyRate:
    """The all-in hourly cost of one GPU. Purchase: capex / (life in hours) + TDP × PUE × $/kWh
    (straight-line amortisation, busy all the time: an upper bound on utilisation, a lower bound on cost)."""
    if pricing.usd_per_gpu_hour and gpu.name in pricing.usd_per_gpu_hour:
        return HourlyRate(pricing.usd_per_gpu_hour[gpu.name], "scenario override", "scenario")
    price = select_price(gpu, pricing.kind, pricing.provider)
    if price is None:
        who = f" from {pricing.provider}" if pricing.provider else ""
        kinds = ", ".join(sorted({p.kind for p in gpu.prices})) or "none"
        raise InputError(f"pricing: {gpu.name} has no {pricing.kind} price{who} (catalog has: {kinds})")
    label = f"{price.provider} {price.kind} {price.date}"
    if price.kind == "purchase":
        assert price.usd_per_gpu is not None
        capex = price.usd_per_gpu / (pricing.amortisation_years * HOURS_PER_YEAR)
        power = gpu.tdp_w / 1000.0 * pricing.pue * pricing.usd_per_kwh
        return HourlyRate(capex + power, label, price.source, price.max_gpus)
    assert price.usd_per_gpu_hour is not None
    return HourlyRate(price.usd_per_gpu_hour, label, price.source, price.max_gpus)


def priced(gpu: GpuSku, pricing: Pricing) -> Pricing | None:
    """The pricing when the SKU has a price of that kind; None to report everything but the cost."""
    try:
        hourly_rate(gpu, pricing)
    except InputError:
        return None
    return pricing
