"""A run's working directory: create it (writable, resume or overwrite), lock it for the run's
lifetime (`WorkdirLock`), decide whether its checkpoint may be resumed with the given flags.
None of it touches the model or the arrays; the names of the files in it are in `rundir.py`.
Every OS error on the way (a path under a file or in /proc, no permission, a name too long) is
a one-line UserError naming the workdir."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ml_collections

from jax_makemore import checkpoint as ckpt
from jax_makemore.config import DATA_KEYS, flatten_config
from jax_makemore.errors import UserError
from jax_makemore.rundir import EVENTS_GLOB, LOCK_FILE, RUN_FILES

# re-exported for the callers that import them from here (rundir.py is their home)
from jax_makemore.rundir import METRICS_FILE as METRICS_FILE
from jax_makemore.rundir import RESULTS_FILE as RESULTS_FILE
from jax_makemore.rundir import read_jsonl as read_jsonl

#: Top-level keys that, with the whole `model` sub-config, fix what a checkpoint holds: the
#: data and its split (DATA_KEYS), the seed, and the packing of the rows. A checkpoint only
#: resumes when they match the flags.
IDENTITY_KEYS = (*DATA_KEYS, "seed", "packed", "pack_len")


@contextlib.contextmanager
def os_errors(workdir: Path) -> Iterator[None]:
    """Turn an OSError raised inside into a one-line UserError naming `workdir`."""
    try:
        yield
    except OSError as err:
        what = err.strerror or str(err)
        where = f" ('{err.filename}')" if err.filename and str(err.filename) != str(workdir) else ""
        raise UserError(f"workdir '{workdir}' cannot be used: {what}{where}") from None


def make_dir(workdir: Path) -> None:
    """Create `workdir` and its parents; any OS error is a one-line UserError."""
    with os_errors(workdir):
        if workdir.exists() and not workdir.is_dir():
            raise UserError(f"workdir '{workdir}' is a file, not a directory")
        workdir.mkdir(parents=True, exist_ok=True)


class WorkdirLock:
    """An exclusive `fcntl.flock` on `workdir/.lock`, held until `release` (or the process
    ends: the OS drops the lock of a process that dies, so a stale lock never blocks). The
    holder's pid is written into the file, for the message that refuses a second run."""

    def __init__(self, workdir: Path) -> None:
        make_dir(workdir)
        path = workdir / LOCK_FILE
        with os_errors(workdir):
            self.fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(self.fd)
            self.fd = None
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise UserError(f"workdir '{workdir}' cannot be locked: {err.strerror}") from None
            raise UserError(
                f"workdir '{workdir}' is in use by another run (pid {holder}); wait for it to "
                f"end or use another --workdir"
            ) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        """Drop the lock (the file stays: removing it would let two runs lock two files)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> WorkdirLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def prepare_workdir(workdir: Path, resume: bool, overwrite: bool) -> bool:
    """Create the workdir; returns True when resuming from an existing checkpoint."""
    make_dir(workdir)
    try:  # a real write, not os.access: root passes access checks on read-only mounts
        probe = workdir / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as err:
        raise UserError(f"workdir '{workdir}' is not writable ({err.strerror})") from None
    with os_errors(workdir):
        return _clear_or_resume(workdir, resume, overwrite)


def _clear_or_resume(workdir: Path, resume: bool, overwrite: bool) -> bool:
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
