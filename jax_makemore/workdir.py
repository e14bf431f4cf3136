"""A run's working directory: create it (writable, resume or overwrite), decide whether its
checkpoint may be resumed with the given flags, and read and write its JSON files atomically.
None of it touches the model or the arrays."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import ml_collections

from jax_makemore import checkpoint as ckpt
from jax_makemore import diagnostics
from jax_makemore.errors import UserError

#: Top-level keys that, with the whole `model` sub-config, fix what a checkpoint holds; a
#: checkpoint only resumes when they match the flags.
IDENTITY_KEYS = (
    "data_path", "seed", "split_seed", "split_fractions", "split_by", "packed", "pack_len",
)  # fmt: skip
METRICS_FILE = "metrics.jsonl"
RESULTS_FILE = "results.json"
#: TensorBoard's event files (logs.py writes them into the workdir itself).
EVENTS_GLOB = "events.out.tfevents.*"
#: Files a fresh run starts without (a resumed run appends to them).
RUN_FILES = (METRICS_FILE, RESULTS_FILE, diagnostics.FILENAME)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The JSON objects of a .jsonl file, one per non-empty line (empty when there is no file)."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write `obj` as JSON through a temporary file and a rename: a reader never sees half."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def trim_jsonl(path: Path, last_step: int) -> None:
    """Drop the lines of a .jsonl log whose `step` is past `last_step`, atomically: a run
    resumed from the checkpoint at `last_step` logs those steps again, once."""
    if not path.is_file():
        return
    keep = [r for r in read_jsonl(path) if r.get("step", 0) <= last_step]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in keep), encoding="utf-8")
    os.replace(tmp, path)


def prepare_workdir(workdir: Path, resume: bool, overwrite: bool) -> bool:
    """Create the workdir; returns True when resuming from an existing checkpoint."""
    if workdir.exists() and not workdir.is_dir():
        raise UserError(f"workdir '{workdir}' is a file, not a directory")
    workdir.mkdir(parents=True, exist_ok=True)
    try:  # a real write, not os.access: root passes access checks on read-only mounts
        probe = workdir / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as err:
        raise UserError(f"workdir '{workdir}' is not writable ({err.strerror})") from None
    if ckpt.has_checkpoint(workdir):
        if resume:
            return True
        if not overwrite:
            raise UserError(
                f"workdir '{workdir}' already holds a checkpoint; use --resume to continue it or --overwrite to replace it"
            )
        shutil.rmtree(ckpt.checkpoint_dir(workdir))
    elif resume:
        raise UserError(f"--resume: workdir '{workdir}' has no checkpoint to resume from")
    for name in RUN_FILES:
        (workdir / name).unlink(missing_ok=True)
    for events in workdir.glob(EVENTS_GLOB):
        events.unlink()
    return False


def flatten_config(config: ml_collections.ConfigDict, prefix: str = "") -> dict[str, Any]:
    """{dotted key: value} of every leaf of a config (tuples for sequences)."""
    out = {}
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            out.update(flatten_config(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = tuple(value) if isinstance(value, list | tuple) else value
    return out


def check_resumable(
    saved: ml_collections.ConfigDict, config: ml_collections.ConfigDict, workdir: Path
) -> None:
    """A one-line UserError when the checkpoint's model sub-config or data keys differ from the
    flags' (the first differing key is named)."""
    old = {
        k: v
        for k, v in flatten_config(saved).items()
        if k.split(".")[0] in ("model", *IDENTITY_KEYS)
    }
    new = {
        k: v
        for k, v in flatten_config(config).items()
        if k.split(".")[0] in ("model", *IDENTITY_KEYS)
    }
    for key in ["model.name", *sorted(set(old) | set(new))]:
        if old.get(key) != new.get(key):
            raise UserError(
                f"checkpoint in '{workdir}' was trained with {key}={old.get(key)!r} but the flags "
                f"ask for {key}={new.get(key)!r}; use another --workdir or --overwrite"
            )


def check_checkpoint(
    meta: Any, config: ml_collections.ConfigDict, workdir: Path, vocab: Any
) -> None:
    """A checkpoint resumes only with the flags it was trained with (`check_resumable`) and
    the vocabulary of the data it was trained on."""
    check_resumable(meta.config, config, workdir)
    if meta.vocab != vocab:
        raise UserError(
            f"checkpoint in '{workdir}' has a different vocabulary than '{config.data_path}'"
        )
