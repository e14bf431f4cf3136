"""A run's working directory: create it (writable, resume or overwrite), decide whether its
checkpoint may be resumed with the given flags. None of it touches the model or the arrays;
the names of the files in it are in `rundir.py`."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import ml_collections

from jax_makemore import checkpoint as ckpt
from jax_makemore.config import DATA_KEYS, flatten_config
from jax_makemore.errors import UserError
from jax_makemore.rundir import EVENTS_GLOB, RUN_FILES

# re-exported for the callers that import them from here (rundir.py is their home)
from jax_makemore.rundir import METRICS_FILE as METRICS_FILE
from jax_makemore.rundir import RESULTS_FILE as RESULTS_FILE
from jax_makemore.rundir import read_jsonl as read_jsonl

#: Top-level keys that, with the whole `model` sub-config, fix what a checkpoint holds: the
#: data and its split (DATA_KEYS), the seed, and the packing of the rows. A checkpoint only
#: resumes when they match the flags.
IDENTITY_KEYS = (*DATA_KEYS, "seed", "packed", "pack_len")


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
