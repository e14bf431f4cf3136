"""Run bookkeeping around training: the workdir (create, check writable, resume or overwrite),
whether a checkpoint may be resumed with the given flags, the metrics log and progress display,
and the stop flag that SIGINT/SIGTERM set. None of it touches the model or the arrays."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import ml_collections

from jax_makemore import checkpoint as ckpt
from jax_makemore import diagnostics
from jax_makemore.errors import UserError

#: Top-level keys that, with the whole `model` sub-config, fix what a checkpoint holds; a
#: checkpoint only resumes when they match the flags.
IDENTITY_KEYS = ("data_path", "seed", "split_seed", "split_fractions")
#: Files a fresh run starts without (a resumed run appends to them).
RUN_FILES = ("metrics.jsonl", "results.json", diagnostics.FILENAME)


class StopFlag:
    """Records SIGINT/SIGTERM so the loop can checkpoint at the end of the current chunk."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame) -> None:
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Logger:
    """metrics.jsonl lines, and progress on stderr: a tqdm bar on a terminal, else log lines."""

    def __init__(self, workdir: Path, total: int, start: int, append: bool) -> None:
        self.metrics = open(workdir / "metrics.jsonl", "a" if append else "w", encoding="utf-8")
        self.total, self.last_print = total, start
        self.bar = None
        if sys.stderr.isatty() and total > start:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total, initial=start, file=sys.stderr, unit="step", dynamic_ncols=True
            )

    def write(self, record: dict[str, Any]) -> None:
        self.metrics.write(json.dumps(record) + "\n")
        self.metrics.flush()

    def progress(self, step: int, loss: float, steps_per_sec: float) -> None:
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix(loss=f"{loss:.4f}", steps_per_s=f"{steps_per_sec:,.0f}")
        elif step - self.last_print >= max(self.total // 10, 1) or step == self.total:
            print(
                f"step {step}/{self.total}  loss {loss:.4f}  {steps_per_sec:,.0f} steps/s",
                file=sys.stderr,
            )
            self.last_print = step

    def info(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.metrics.close()


class NullLogger:
    """The logger of processes other than process 0: logs nothing."""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The JSON objects of a .jsonl file, one per non-empty line (empty when there is no file)."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
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
