"""The layout of a run directory and of a sweep directory, and their typed readers.

A run directory (`train --workdir DIR`, or a sweep member `SWEEP/members/<name>/`) holds
`checkpoints/<step>/`, `metrics.jsonl` (one line per logged step), `results.json` (written
when the run ends), `diagnostics.jsonl` (with `log_diagnostics`) and TensorBoard event files.
A sweep directory holds `sweep.json` (every member's overrides, status and losses) and the
members under `members/`. Every module that reads or writes these files takes the names from
here; this module imports nothing of the package but its errors, so any module may use it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from jax_makemore.errors import UserError

CHECKPOINTS_DIR = "checkpoints"
METRICS_FILE = "metrics.jsonl"
RESULTS_FILE = "results.json"
DIAGNOSTICS_FILE = "diagnostics.jsonl"
#: TensorBoard's event files (logs.py writes them into the run directory itself).
EVENTS_GLOB = "events.out.tfevents.*"
SWEEP_FILE = "sweep.json"
#: The lock a `train` or `sweep` holds on its directory while it runs (fcntl.flock), with the
#: process id of its holder.
LOCK_FILE = ".lock"
MEMBERS_DIR = "members"
#: Files a fresh run starts without (a resumed run appends to them).
RUN_FILES = (METRICS_FILE, RESULTS_FILE, DIAGNOSTICS_FILE)


def parse_jsonl(path: str | Path) -> tuple[list[dict[str, Any]], bool]:
    """(the JSON objects of a .jsonl file, one per non-empty line; whether its last line was
    torn). A last line that does not parse is what a process killed while writing it leaves:
    it is left out. A bad line before the last is a one-line UserError naming the line."""
    path = Path(path)
    if not path.is_file():
        return [], False
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = [(n, line) for n, line in enumerate(f, 1) if line.strip()]
    records = []
    for i, (n, line) in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                return records, True
            raise UserError(f"{path}:{n}: not a JSON line: {line[:60]!r}") from None
    return records, False


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The JSON objects of a .jsonl file, one per non-empty line (empty when there is no file);
    a torn last line (a run killed while writing it, or still writing it) is left out."""
    return parse_jsonl(path)[0]


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write `obj` as JSON through a temporary file and a rename: a reader never sees half."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def trim_jsonl(path: Path, last_step: int) -> None:
    """Drop the lines of a .jsonl log whose `step` is past `last_step`, atomically: a run
    resumed from the checkpoint at `last_step` logs those steps again, once. A torn last line
    is dropped too, with one line on stderr that says so."""
    if not path.is_file():
        return
    records, torn = parse_jsonl(path)
    if torn:
        print(
            f"warning: {path}: dropped its torn last line (the run was stopped while writing it)",
            file=sys.stderr,
        )
    keep = [r for r in records if r.get("step", 0) <= last_step]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in keep), encoding="utf-8")
    os.replace(tmp, path)


def amend_last_jsonl(path: Path, extra: dict[str, Any]) -> None:
    """Add the keys of `extra` to the last record of a .jsonl log, atomically (an evaluation
    that a signal interrupted, completed when the run resumes)."""
    records = read_jsonl(path)
    if not records:
        return
    records[-1].update(extra)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    os.replace(tmp, path)


def read_results(run_dir: str | Path) -> dict[str, Any]:
    """A finished run's results.json (steps, split losses, timings, samples)."""
    return json.loads((Path(run_dir) / RESULTS_FILE).read_text(encoding="utf-8"))


def has_results(run_dir: str | Path) -> bool:
    """Whether the run finished (it wrote results.json)."""
    return (Path(run_dir) / RESULTS_FILE).is_file()


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The logged steps of a run, one dict per line of metrics.jsonl (empty without one)."""
    return read_jsonl(Path(run_dir) / METRICS_FILE)


def read_diagnostics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The diagnostics measurements of a run, one dict per line of diagnostics.jsonl."""
    return read_jsonl(Path(run_dir) / DIAGNOSTICS_FILE)


def is_sweep_dir(path: str | Path) -> bool:
    """Whether `path` holds a sweep (its sweep.json)."""
    return (Path(path) / SWEEP_FILE).is_file()


def read_sweep(sweep_dir: str | Path) -> dict[str, Any]:
    """A sweep's sweep.json: the swept values, and per member its name, run directory
    (relative to the sweep's), overrides, group, status, steps and split losses."""
    return json.loads((Path(sweep_dir) / SWEEP_FILE).read_text(encoding="utf-8"))


def members_dir(sweep_dir: str | Path) -> Path:
    """The folder of a sweep's member run directories."""
    return Path(sweep_dir) / MEMBERS_DIR


def checkpoints_dir(run_dir: str | Path) -> Path:
    """The folder of a run's checkpoints (absolute: orbax wants an absolute path)."""
    return Path(run_dir).resolve() / CHECKPOINTS_DIR
