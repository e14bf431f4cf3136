"""The verdict rule: a claim is split into parts (a difference beyond twice its spread over
seeds, a figure within a tolerance, a bound, an exact check); it holds when every part
holds, does not hold when none does, and partly holds otherwise."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

HOLDS, PARTLY, FAILS = "holds", "partly holds", "does not hold"
VERDICTS = (HOLDS, PARTLY, FAILS)


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = [float(v) for v in values]
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def fmt(values: Sequence[float] | float, digits: int = 4) -> str:
    """'mean ± std' over seeds (or one number)."""
    if isinstance(values, int | float):
        return f"{values:.{digits}f}"
    m, s = mean_sd(values)
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def difference_part(
    text: str, a: Sequence[float], b: Sequence[float], sign: int, paired: bool = False
) -> dict[str, Any]:
    """Part 'a - b has sign `sign`': holds when mean(a - b) has that sign and its size exceeds
    twice the spread over seeds: sqrt(sd_a^2 + sd_b^2), or the sd of the per-seed differences
    when `paired` (a and b measured on the same seeds' models)."""
    if paired:
        diff, spread = mean_sd([x - y for x, y in zip(a, b, strict=True)])
    else:
        (ma, sa), (mb, sb) = mean_sd(a), mean_sd(b)
        diff, spread = ma - mb, math.hypot(sa, sb)
    return stat_difference_part(text, diff, spread, sign)


def figure_part(text: str, measured: float, claimed: float, tolerance: float) -> dict[str, Any]:
    """Part 'the figure is about `claimed`': holds when |measured - claimed| <= tolerance."""
    holds = abs(measured - claimed) <= tolerance
    return {
        "part": text,
        "kind": "figure",
        "value": measured,
        "claimed": claimed,
        "tolerance": tolerance,
        "holds": bool(holds),
        "measured": f"{measured:.4f} against {claimed:g} (tolerance {tolerance:g})",
    }


def bound_part(text: str, measured: float, bound: float, below: bool) -> dict[str, Any]:
    """Part 'the figure is below (or above) `bound`': a stated threshold, not a difference."""
    holds = measured < bound if below else measured > bound
    side = "<" if below else ">"
    return {
        "part": text,
        "kind": "bound",
        "value": measured,
        "bound": bound,
        "holds": bool(holds),
        "measured": f"{measured:.4g} (needs {side} {bound:g})",
    }


def combine(parts: Sequence[dict[str, Any]]) -> str:
    """holds when every part holds, does not hold when none does, else partly holds."""
    if not parts:
        raise ValueError("a claim needs at least one part")
    held = sum(bool(p["holds"]) for p in parts)
    return HOLDS if held == len(parts) else FAILS if held == 0 else PARTLY


def claim(
    key: str, title: str, quote: str, commands: list[str], figures: dict[str, Any],
    table: list[list[str]], parts: list[dict[str, Any]], why: str,
) -> dict[str, Any]:  # fmt: skip
    """One claim's record for claims.json / claims.md; the verdict follows from the parts."""
    return {
        "key": key,
        "title": title,
        "quote": quote,
        "commands": commands,
        "figures": figures,
        "table": table,
        "parts": parts,
        "verdict": combine(parts),
        "why": why,
    }


def part(text: str, holds: bool, measured: str) -> dict[str, Any]:
    """A part decided by an exact check (an identity, a NaN, a threshold on one number)."""
    return {"part": text, "kind": "check", "holds": bool(holds), "measured": measured}


def stat_difference_part(text: str, diff: float, spread: float, sign: int) -> dict[str, Any]:
    """Part 'the difference `diff` has sign `sign`' from an already aggregated difference and
    its spread: holds when it has that sign and its size exceeds twice the spread."""
    holds = diff * sign > 0 and abs(diff) > 2 * spread
    return {
        "part": text,
        "kind": "difference",
        "difference": diff,
        "spread": spread,
        "holds": bool(holds),
        "measured": f"difference {diff:+.4f}, 2 × spread {2 * spread:.4f}",
    }
