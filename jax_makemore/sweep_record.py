"""A sweep's directory and its record: `DIR/sweep.json` (every member's overrides, group,
status, steps and split losses, as `sweep_record` builds it), the member run directories under
`DIR/members/`, and the table the command prints.
"""

from __future__ import annotations

import math
import os
import shutil
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jax_makemore.data import SPLITS
from jax_makemore.errors import UserError
from jax_makemore.logs import NullLog
from jax_makemore.loop import MemberRun
from jax_makemore.rundir import (
    SWEEP_FILE,
    has_results,
    members_dir,
    read_results,
    read_sweep,
)
from jax_makemore.sweep_members import Group, Member, format_value
from jax_makemore.workdir import make_dir


def member_dir_name(name: str) -> str:
    """A member name as one path component."""
    return name.replace(os.sep, "_").replace("\0", "_") if name not in (".", "..") else f"_{name}"


def prepare_sweep_dir(
    workdir: Path, members: Sequence[Member], resume: bool, overwrite: bool
) -> dict[str, MemberRun]:
    """The member runs by name (pending); with `resume`, the done and diverged ones as
    sweep.json says. A workdir that already holds a sweep needs --resume or --overwrite."""
    make_dir(workdir)
    runs = {
        m.name: MemberRun(
            workdir=members_dir(workdir) / member_dir_name(m.name),
            config=m.config,
            log=NullLog(),  # the member's RunLog opens when its slice trains
            status="pending",
            name=m.name,
        )
        for m in members
    }
    path = workdir / SWEEP_FILE
    if not path.is_file():
        if resume:
            raise UserError(f"--resume: workdir '{workdir}' holds no sweep (no {SWEEP_FILE})")
        return runs
    if overwrite and not resume:
        shutil.rmtree(members_dir(workdir), ignore_errors=True)
        path.unlink()
        return runs
    if not resume:
        raise UserError(
            f"workdir '{workdir}' already holds a sweep; use --resume to finish it or "
            f"--overwrite to replace it"
        )
    saved = read_sweep(workdir)
    if sorted(e["name"] for e in saved["members"]) != sorted(runs):
        raise UserError(
            f"--resume: the sweep in '{workdir}' has other members than these --sweep flags; "
            f"use the same flags, another --workdir, or --overwrite"
        )
    for entry in saved["members"]:
        r = runs[entry["name"]]
        if entry["status"] == "done" and has_results(r.workdir):
            r.status = "done"
            r.results = read_results(r.workdir)
        elif entry["status"] == "diverged":
            r.status, r.error = "diverged", entry.get("error")
    return runs


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def sweep_record(
    config_name: str,
    workdir: Path,
    members: Sequence[Member],
    runs: dict[str, MemberRun],
    groups: Sequence[Group],
) -> dict[str, Any]:
    """The content of sweep.json: the swept values, and per member its overrides, group,
    status, steps and split losses."""
    keys = list(members[0].values)
    group_of = {m.name: gi for gi, g in enumerate(groups) for m in g.members}
    return {
        "config": config_name,
        "swept": {k: list(dict.fromkeys(_jsonable(m.values[k]) for m in members)) for k in keys},
        "members": [
            {
                "name": m.name,
                "workdir": str(r.workdir.relative_to(workdir)),
                "overrides": {k: _jsonable(v) for k, v in m.values.items()},
                "group": group_of[m.name],
                "status": r.status,
                "error": r.error,
                "steps": r.results["steps"] if r.results else None,
                "loss": r.results["loss"] if r.results else None,
            }
            for m, r in ((m, runs[m.name]) for m in members)
        ],
        "groups": [
            {"members": len(g.members), "traced": g.traced, "compile_seconds": g.compile_seconds}
            for g in groups
        ],
    }


def format_table(record: dict[str, Any]) -> str:
    """The members sorted by val loss, then mean ± std over seeds for each setting of the
    other swept keys (when seeds are swept)."""
    keys = list(record["swept"])
    members = record["members"]

    def loss(m: dict, split: str) -> float | None:
        return (m["loss"] or {}).get(split)

    def num(v: float | None) -> str:
        return "–" if v is None else f"{v:.4f}"

    ordered = sorted(members, key=lambda m: (loss(m, "val") is None, loss(m, "val") or 0.0))
    header = [*keys, "train", "val", "test", "status"]
    rows = [
        [format_value(m["overrides"][k]) for k in keys]
        + [num(loss(m, s)) for s in SPLITS]
        + [m["status"]]
        for m in ordered
    ]
    lines = _columns(header, rows)
    others = [k for k in keys if k != "seed"]
    if "seed" in keys and len(record["swept"]["seed"]) > 1:
        settings: dict[tuple, list[dict]] = {}
        for m in members:
            setting = tuple(format_value(m["overrides"][k]) for k in others)
            settings.setdefault(setting, []).append(m)
        stats = []
        for setting, ms in settings.items():
            cells, val_mean = [], math.inf
            for split in SPLITS:
                vals = [v for v in (loss(m, split) for m in ms) if v is not None]
                if not vals:
                    cells.append("–")
                    continue
                sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
                cells.append(f"{statistics.mean(vals):.4f} ± {sd:.4f}")
                val_mean = statistics.mean(vals) if split == "val" else val_mean
            stats.append((val_mean, [*setting, str(len(ms)), *cells]))
        lines += ["", "mean ± std over seeds:"]
        lines += _columns([*others, "seeds", *SPLITS], [row for _, row in sorted(stats)])
    return "\n".join(lines)


def _columns(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    return [
        "  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
