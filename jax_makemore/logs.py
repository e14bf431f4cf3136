"""What a run writes as it trains, and what it shows: `RunLog` keeps one run directory's
`metrics.jsonl`, `diagnostics.jsonl` and TensorBoard event file; `StepProgress` (one run) and
`MemberProgress` (a sweep's members) draw a tqdm bar on a terminal, or print plain lines.

Everything here takes host numbers the loop already has: logging never touches the device.

TensorBoard events are written with tensorboardX's `SummaryWriter`, which needs neither
TensorFlow nor PyTorch (Flax's and CLU's writers import TensorFlow). Tags: `train/loss` (the
mean loss of a chunk), `loss/<split>` at each evaluation (`loss_ema/<split>` for averaged params), `lr`, `steps_per_sec`, the diagnostics
as `tanh/<layer>/...`, `grad/<matrix>/...` and `update_ratio/<matrix>` (histograms and scalars),
and the samples printed at the end as text. A resumed run purges the events past its checkpoint
step, and trims the .jsonl logs the same way, so each step is logged once.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jax_makemore import diagnostics
from jax_makemore.rundir import (
    DIAGNOSTICS_FILE,
    METRICS_FILE,
    amend_last_jsonl,
    read_jsonl,
    trim_jsonl,
)

#: Seconds between flushes of the event file to disk (TensorBoard reloads about as often).
EVENTS_FLUSH_SECONDS = 10


class RunLog:
    """The logs of one run directory. `resume_step` (the checkpoint step a resumed run starts
    from) trims the logs to it; None starts them afresh. `tensorboard=False` writes no events."""

    def __init__(self, workdir: Path, resume_step: int | None, tensorboard: bool) -> None:
        self.workdir = workdir
        if resume_step is not None:
            for name in (METRICS_FILE, DIAGNOSTICS_FILE):
                trim_jsonl(workdir / name, resume_step)
        mode = "a" if resume_step is not None else "w"
        self.metrics_file = open(workdir / METRICS_FILE, mode, encoding="utf-8")
        self.events: Any = None  # a tensorboardX SummaryWriter when tensorboard is on
        if tensorboard:
            from tensorboardX import SummaryWriter

            purge = None if resume_step is None else resume_step + 1
            self.events = SummaryWriter(
                str(workdir), purge_step=purge, flush_secs=EVENTS_FLUSH_SECONDS
            )

    def seen(self) -> tuple[int, int] | None:
        """(words, characters) seen by the last logged step (None without a log): a resumed
        run counts on from there."""
        self.metrics_file.flush()
        records = read_jsonl(self.workdir / METRICS_FILE)
        if not records or "words_seen" not in records[-1]:
            return None
        return records[-1]["words_seen"], records[-1]["chars_seen"]

    def last_record(self) -> dict[str, Any] | None:
        """The last line of metrics.jsonl (None without one)."""
        self.metrics_file.flush()
        records = read_jsonl(self.workdir / METRICS_FILE)
        return records[-1] if records else None

    def amend_last(self, extra: dict[str, Any]) -> None:
        """Add `extra` (split losses) to the last line of metrics.jsonl, and its scalars to
        the event file: the evaluation of that step, which a signal interrupted, done now."""
        self.metrics_file.close()
        amend_last_jsonl(self.workdir / METRICS_FILE, extra)
        self.metrics_file = open(self.workdir / METRICS_FILE, "a", encoding="utf-8")
        last = self.last_record()
        if self.events is not None and last is not None:
            self._split_scalars(extra, last["step"])

    def metrics(self, record: dict[str, Any]) -> None:
        """One line of metrics.jsonl and its scalars in the event file."""
        self.metrics_file.write(json.dumps(record) + "\n")
        self.metrics_file.flush()
        if self.events is None:
            return
        step = record["step"]
        self.events.add_scalar("train/loss", record["loss"], step)
        for key in ("lr", "steps_per_sec", "words_seen", "chars_seen"):
            if key in record:
                self.events.add_scalar(key, record[key], step)
        self._split_scalars(record, step)

    def _split_scalars(self, record: dict[str, Any], step: int) -> None:
        for key, prefix in (("split_loss", "loss"), ("split_loss_ema", "loss_ema")):
            for split, value in (record.get(key) or {}).items():
                if value is not None:
                    self.events.add_scalar(f"{prefix}/{split}", value, step)

    def diagnostics(self, record: dict[str, Any]) -> None:
        """One measurement (diagnostics.record) in diagnostics.jsonl and as histograms."""
        diagnostics.append_records(self.workdir, [record])
        if self.events is None:
            return
        step = record["step"]
        for layer, stats in record.get("tanh", {}).items():
            for key in ("saturated", "mean", "std"):
                self._scalar(f"tanh/{layer}/{key}", stats[key], step)
            self._histogram(f"tanh/{layer}", stats["hist"], -1.0, 1.0, step)
        for name, stats in record.get("grad", {}).items():
            for key in ("mean", "std"):
                self._scalar(f"grad/{name}/{key}", stats[key], step)
            self._histogram(f"grad/{name}", stats["hist"], stats["lo"], stats["hi"], step)
        for name, value in record.get("update_ratio", {}).items():
            self._scalar(f"update_ratio/{name}", value, step)

    def samples(self, words: Sequence[str], step: int) -> None:
        """The words printed at the end of training, as one text entry."""
        if self.events is not None and words:
            self.events.add_text("samples", "\n\n".join(words), step)

    def _scalar(self, tag: str, value: float | None, step: int) -> None:
        if value is not None:
            self.events.add_scalar(tag, value, step)

    def _histogram(
        self, tag: str, counts: Sequence[int], lo: float | None, hi: float | None, step: int
    ) -> None:
        """A histogram of `counts` in equal bins over [lo, hi], as TensorBoard stores one."""
        if lo is None or hi is None:
            return
        counts_NB = np.asarray(counts, np.float64)
        edges = np.linspace(lo, hi, len(counts_NB) + 1)
        centers = (edges[:-1] + edges[1:]) / 2
        total = counts_NB.sum()
        if total == 0:
            return
        mean = float((centers * counts_NB).sum() / total)
        self.events.add_histogram_raw(
            tag,
            min=float(lo),
            max=float(hi),
            num=int(total),
            sum=float(mean * total),
            sum_squares=float((centers**2 * counts_NB).sum()),
            bucket_limits=edges[1:].tolist(),
            bucket_counts=counts_NB.tolist(),
            global_step=step,
        )

    def close(self) -> None:
        self.metrics_file.close()
        if self.events is not None:
            self.events.close()


class NullLog:
    """The log of a process other than process 0 in a multi-process run: writes nothing."""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


#: How a run shows its progress: "auto" (a tqdm bar on a terminal's stderr, else plain lines),
#: "notebook" (tqdm.auto's bar: a widget in Jupyter) or "off" (nothing but warnings).
PROGRESS_MODES = ("auto", "notebook", "off")


class _Display:
    """A tqdm bar (stderr) where `mode` asks for one, else None: plain lines then, or nothing
    but `info` lines with mode "off"."""

    def __init__(self, total: int, initial: int, unit: str, mode: str = "auto") -> None:
        if mode not in PROGRESS_MODES:
            raise ValueError(f"progress must be one of {PROGRESS_MODES}, got {mode!r}")
        self.bar = None
        self.quiet = mode == "off"
        if total > initial and (mode == "notebook" or (mode == "auto" and sys.stderr.isatty())):
            if mode == "notebook":
                from tqdm.auto import tqdm
            else:
                from tqdm import tqdm

            self.bar = tqdm(
                total=total, initial=initial, file=sys.stderr, unit=unit, dynamic_ncols=True
            )

    def info(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class StepProgress(_Display):
    """One run's steps: the bar's loss and steps/s, or a line every tenth of the run; the
    split losses of each evaluation on their own line."""

    def __init__(self, total: int, start: int, mode: str = "auto") -> None:
        super().__init__(total, start, "step", mode)
        self.total, self.last_print = total, start

    def chunk(self, step: int, losses_MxK: np.ndarray, steps_per_sec: float) -> None:
        loss = float(losses_MxK.mean())
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix(loss=f"{loss:.4f}", steps_per_s=f"{steps_per_sec:,.0f}")
        elif step - self.last_print >= max(self.total // 10, 1) or step == self.total:
            self.info(f"step {step}/{self.total}  loss {loss:.4f}  {steps_per_sec:,.0f} steps/s")
            self.last_print = step

    def evaluated(self, step: int, split_loss: Sequence[dict[str, float | None] | None]) -> None:
        if self.quiet:
            return
        shown = "  ".join(f"{s} {v:.4f}" for s, v in (split_loss[0] or {}).items() if v is not None)
        self.info(f"step {step}: {shown}")


class MemberProgress(_Display):
    """A sweep's members done out of all; the running slice's step and speed as the postfix."""

    def __init__(self, total: int, done: int) -> None:
        super().__init__(total, done, "member")
        self.total, self.done, self.where = total, done, ""

    def chunk(self, step: int, losses_MxK: np.ndarray, steps_per_sec: float) -> None:
        if self.bar is not None:
            members = len(losses_MxK)
            self.bar.set_postfix_str(
                f"{self.where} step {step} {steps_per_sec * members:,.0f} model-steps/s"
            )

    def evaluated(self, step: int, split_loss: Sequence[Any]) -> None:
        pass

    def members_done(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        else:
            self.info(f"sweep: {self.done}/{self.total} members done")


class RowProgress:
    """The rows of one long evaluation: a second tqdm bar beside the run's when it has one,
    else a line at every tenth of the rows (nothing with progress "off")."""

    def __init__(self, display: _Display, total: int, done: int, label: str) -> None:
        self.display, self.total, self.done, self.label = display, total, done, label
        self.bar = None
        self.last_tenth = done * 10 // max(total, 1)
        if display.bar is not None:
            self.bar = type(display.bar)(
                total=total,
                initial=done,
                file=sys.stderr,
                unit="row",
                unit_scale=True,
                desc=label,
                leave=False,
                dynamic_ncols=True,
            )

    def update(self, rows: int) -> None:
        self.done += rows
        if self.bar is not None:
            self.bar.update(rows)
            return
        tenth = self.done * 10 // max(self.total, 1)
        if not self.display.quiet and tenth > self.last_tenth and self.done < self.total:
            self.display.info(f"{self.label}: {self.done:,}/{self.total:,} rows")
        self.last_tenth = tenth

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
