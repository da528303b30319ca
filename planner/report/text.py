"""Numbers and layouts as people read them: one formatter each for GiB, days, dollars and a layout, and
user text made safe to print. A leaf: explanations and findings phrase their sentences with it too.
"""

from __future__ import annotations

import json
import re
from typing import Any

from planner.model.perf import SECONDS_PER_DAY
from planner.schema import GIB, Layout

# Control characters (C0 but tab and newline, DEL, C1): a terminal would act on them (ANSI escapes move
# the cursor, recolour, set a window title or a hyperlink), so user text shows them escaped instead.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def gib(nbytes: float, digits: int = 1, unit: bool = True) -> str:
    """Bytes as GiB (2^30 B): '12.3 GiB', or '12.34' with digits=2, unit=False (a table column)."""
    text = f"{nbytes / GIB:,.{digits}f}"
    return f"{text} GiB" if unit else text


def days(seconds: float) -> str:
    """A duration: '29.9 days', or '5.0 hours' below a day."""
    d = seconds / SECONDS_PER_DAY
    return f"{d:,.1f} days" if d >= 1 else f"{seconds / 3600:,.1f} hours"


def usd(amount: float) -> str:
    """Whole dollars: '$414,301'."""
    return f"${amount:,.0f}"


def layout_text(layout: Layout) -> str:
    """'TP8 PP16 VPP2 DP12 CP2 EP4 ZeRO-1 rc=selective SP mbs1': sizes of 1 left out but TP, PP and DP; ETP where
    the experts split otherwise than TP; a partial full recompute as 'rc=full(4/chunk)'; activation offload of the
    first 40 layers as 'offload40'."""
    return (f"TP{layout.tp} PP{layout.pp}" + (f" VPP{layout.vpp}" if layout.vpp > 1 else "") + f" DP{layout.dp}"
            + (f" CP{layout.cp}" if layout.cp > 1 else "") + (f" EP{layout.ep}" if layout.ep > 1 else "")
            + (f" ETP{layout.expert_tp}" if layout.expert_tp is not None and layout.expert_tp != layout.tp else "")
            + f" ZeRO-{layout.zero} rc={layout.recompute}" + _partial(layout)
            + (f" offload{layout.activation_offload_layers}" if layout.activation_offload_layers else "")
            + (" SP" if layout.sequence_parallel else "") + f" mbs{layout.micro_batch}")


def _partial(layout: Layout) -> str:
    """'(4/chunk)': full recompute of 4 layers of each model chunk (block), '(uniform 2)': in groups of 2."""
    n = layout.recompute_num_layers
    if n is None or layout.recompute != "full":
        return ""
    return f"(uniform {n})" if layout.recompute_method == "uniform" else f"({n}/chunk)"


def flatten(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dicts → dotted keys, for CSV and Markdown of a single result."""
    if isinstance(obj, dict):
        rows: list[tuple[str, Any]] = []
        for k, v in obj.items():
            rows += flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return rows
    if isinstance(obj, list):
        # a warning object reads as its message
        return [(prefix, "; ".join(str(x.get("message", x)) if isinstance(x, dict) else str(x) for x in obj))]
    return [(prefix, obj)]


def dotted_settings(data: Any) -> dict[str, str]:
    """A parsed JSON or TOML config as flat dotted key → value (as JSON): how a change between two is keyed."""
    return {k: json.dumps(v) for k, v in flatten(data)}


def literal(value: Any) -> str:
    """User text (a scenario or job name, a flag, a file name) as it should appear on a terminal: control
    characters shown as escapes ('\\x1b'), never acted on."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))


def md_literal(value: Any) -> str:
    """User text inside a Markdown line (a bold title, a list item): `literal`, and a line break as a space, so
    that the text cannot end the title or the item."""
    return literal(value).replace("\r\n", " ").replace("\n", " ")


def md_cell(value: Any) -> str:
    """One Markdown table cell: `md_literal`, a pipe escaped so that it cannot end the cell; nothing as '—', as the
    tables show it."""
    return "—" if value is None else md_literal(value).replace("|", "\\|")


class Shown(float):
    """A float that prints with a fixed number of decimals (display rows only)."""

    digits: int

    def __new__(cls, value: float, digits: int) -> Shown:
        obj = super().__new__(cls, value)
        obj.digits = digits
        return obj


def rounded(value: float, digits: int) -> Any:
    """A number for a display row: an int at 0 digits, else a Shown at `digits` decimals."""
    return round(float(value)) if digits == 0 else Shown(round(float(value), digits), digits)


def setting_text(value: Any) -> str:
    """One side of a configuration change: (absent) where the key is not there, (set) for a switch."""
    return "(absent)" if value is None else "(set)" if value == "" else str(value)


def cell(v: Any) -> str:
    """A table cell: '—' for nothing, numbers with thousands separators (a Shown at its decimals, other
    floats at two), user text literal."""
    if v is None:
        return "—"
    if isinstance(v, Shown):
        return f"{v:,.{v.digits}f}"
    if isinstance(v, float):
        return f"{v:,.2f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return literal(v)


def numeric(rows: Any, col: str) -> bool:
    """Whether a column of dict rows holds numbers (right-aligned)."""
    return any(isinstance(r.get(col), int | float) and not isinstance(r.get(col), bool) for r in rows)
