"""The one training loop: `train` drives it with one model, `sweep` with M stacked members.

A `Program` is what differs between the two: how K steps run (one model's fused chunk, with its
data-parallel mesh and diagnostics, or M members under `vmap`), how the members are evaluated,
and how each is saved. The loop owns everything else, once: the chunk boundaries (evaluation,
checkpoint and diagnostics cadence), the divergence check, the metrics and event logs, signals
(checkpoint, then stop), the progress display and each member's `results.json`.

Shape letters: M members, K steps of one chunk.
"""

from __future__ import annotations

import dataclasses
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import ml_collections
import numpy as np

from jax_makemore import parallel
from jax_makemore.errors import Interrupted
from jax_makemore.evaluation import EvaluationStopped, EvalWatch
from jax_makemore.logs import NullLog, RunLog
from jax_makemore.rundir import RESULTS_FILE, write_json_atomic

SplitLoss = dict[str, float | None]


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


def chunk_ends(start: int, stop: int, every: Sequence[int]) -> list[int]:
    """Steps after `start` at which a chunk ends: multiples of each period in `every`, and `stop`.
    Boundaries depend only on the step number, so a resumed run compiles the same chunks."""
    ends = {stop}
    for period in every:
        if period > 0:
            ends.update(range((start // period + 1) * period, stop, period))
    return sorted(e for e in ends if start < e <= stop)


@dataclasses.dataclass
class ChunkOut:
    """What K steps of M members bring back in their one host transfer: the per-step losses,
    the words and characters they trained on, and, when the chunk's first step measured them,
    each member's diagnostics record."""

    losses_MxK: np.ndarray
    diagnostics: list[dict[str, Any]] | None = None
    seen_Mx2: np.ndarray | None = None  # words and characters the K steps trained on


class Program(Protocol):
    """M members that train together from one step (`step`, a host int)."""

    step: int

    def compile(self, k: int) -> None:
        """Compile the program of k steps (once per k; a no-op when it is ready)."""

    def chunk(self, k: int) -> ChunkOut:
        """Run k steps of every member (compiled already); `step` advances by k."""

    def evaluate(self, averaged: bool = False, watch: EvalWatch | None = None) -> list[SplitLoss]:
        """Every member's split losses (train, val, test), at the current step; of the moving
        average of its params with `averaged` (optim.parameter_average). `watch` sees each
        batch go by (evaluation.EvalWatch: it may raise EvaluationStopped)."""

    def save(self, indices: Sequence[int]) -> None:
        """Checkpoint the members at `indices` at the current step (unless they have one)."""

    def latest_checkpoint(self, i: int) -> int | None:
        """The step of member i's newest checkpoint, None when it has none."""

    def learning_rate(self, i: int, step: int) -> float:
        """Member i's learning rate at (0-based) `step`."""


@dataclasses.dataclass
class MemberRun:
    """One member's run directory and where it stands: `status` is pending, running, done or
    diverged (then `error` says how); `results` is its results.json once done; `name` is how
    messages call it (a sweep member's swept values)."""

    workdir: Path
    config: ml_collections.ConfigDict
    log: RunLog | NullLog
    status: str = "running"
    error: str | None = None
    results: dict[str, Any] | None = None
    name: str = ""


@dataclasses.dataclass
class Loop:
    """Drive `program` to `config.num_steps`. `progress` shows the chunks (`chunk`,
    `evaluated`, `info`); `results_base` holds the keys every member's results.json starts with
    (config, model, num_params); `saved_what` names what a signal's checkpoint saved;
    `extra_periods` adds chunk boundaries (the diagnostics cadence); `timing` supplies the
    compile seconds that each results.json reports (default: those this loop measured)."""

    program: Program
    members: list[MemberRun]
    config: ml_collections.ConfigDict
    progress: Any
    results_base: dict[str, Any]
    saved_what: str = "checkpoint"
    extra_periods: Sequence[int] = ()
    compile_seconds: Callable[[], float] | None = None
    t_start: float = dataclasses.field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        self.start = self.program.step
        self.measured_compile = self.train_seconds = 0.0
        self.split_loss: list[SplitLoss] | None = None  # of the last evaluation
        self.split_loss_ema: list[SplitLoss] | None = None  # ... of the averaged params
        self.evaluated_at: int | None = None
        self.stop: StopFlag | None = None  # while `run` runs
        self.forecast = True  # the first slow evaluation says how long it takes
        # words and characters seen so far, continued from the metrics log of a resumed run
        self.seen_Mx2 = np.array([m.log.seen() or (0, 0) for m in self.members], np.int64)

    def live(self) -> list[int]:
        return [i for i, m in enumerate(self.members) if m.status == "running"]

    def run(self) -> None:
        """All chunks, then `finish`. Raises Interrupted after a signal's checkpoint."""
        c = self.config
        periods = (c.steps_per_call, c.eval_every, c.checkpoint_every, *self.extra_periods)
        with StopFlag() as self.stop:
            self.complete_evaluation()
            for end in chunk_ends(self.start, c.num_steps, periods):
                if not self.live():
                    break
                self.one_chunk(end - self.program.step)
                self.check_stop(self.stop)
            self.finish()

    def one_chunk(self, k: int) -> None:
        t0 = time.perf_counter()
        self.program.compile(k)
        t1 = time.perf_counter()
        out = self.program.chunk(k)  # returns after the one host sync of the chunk
        dt = time.perf_counter() - t1
        self.measured_compile += t1 - t0
        self.train_seconds += dt
        if out.seen_Mx2 is not None:
            self.seen_Mx2 += out.seen_Mx2
        step = self.program.step
        for i in self.live():
            self.check_divergence(i, out.losses_MxK[i], step - k)
            if out.diagnostics is not None and out.diagnostics[i] is not None:
                self.members[i].log.diagnostics(out.diagnostics[i])
        live = self.live()
        if live and (step % self.config.eval_every == 0 or step == self.config.num_steps):
            self.evaluate()
        for i in live:
            record: dict[str, Any] = {
                "step": step,
                "loss": float(out.losses_MxK[i].mean()),
                "lr": self.program.learning_rate(i, step - 1),
                "steps_per_sec": k / dt,
                "words_seen": int(self.seen_Mx2[i, 0]),
                "chars_seen": int(self.seen_Mx2[i, 1]),
            }
            if self.evaluated_at == step and self.split_loss is not None:
                record["split_loss"] = self.split_loss[i]
                if self.split_loss_ema is not None:
                    record["split_loss_ema"] = self.split_loss_ema[i]
            self.members[i].log.metrics(record)
        if not live:
            return
        self.progress.chunk(step, out.losses_MxK[live], k / dt)
        if step % self.config.checkpoint_every == 0 or step == self.config.num_steps:
            self.program.save(live)

    def evaluate(self) -> bool:
        """Evaluate every member at the current step; False when a signal stopped it (then
        `check_stop` saves and stops)."""
        eval_set = getattr(self.program, "eval_set", None)
        watch = EvalWatch(
            self.program.step,
            self.progress,
            self.stop,
            describe=eval_set.describe() if eval_set is not None else "",
            forecast=self.forecast,
        )
        try:
            split_loss = self.program.evaluate(watch=watch)
            if self.config.get("ema_decay", 0.0) > 0:
                self.split_loss_ema = self.program.evaluate(averaged=True, watch=watch)
        except EvaluationStopped:
            return False
        finally:
            watch.close()
            self.forecast = self.forecast and not watch.forecast_shown
        self.split_loss = split_loss
        self.evaluated_at = self.program.step
        self.progress.evaluated(self.evaluated_at, self.split_loss)
        return True

    def complete_evaluation(self) -> None:
        """A run resumed from a checkpoint whose evaluation a signal interrupted (its last
        logged step is the checkpoint's, without split losses) evaluates first and completes
        that line of metrics.jsonl."""
        step, every = self.program.step, self.config.eval_every
        if step == 0 or (step % every and step != self.config.num_steps):
            return
        last = [self.members[i].log.last_record() for i in self.live()]
        if not any(r and r.get("step") == step and "split_loss" not in r for r in last):
            return
        if not self.evaluate():
            self.check_stop(self.stop)
        assert self.split_loss is not None  # evaluate() returned True
        for i in self.live():
            extra = {"split_loss": self.split_loss[i]}
            if self.split_loss_ema is not None:
                extra["split_loss_ema"] = self.split_loss_ema[i]
            self.members[i].log.amend_last(extra)

    def check_divergence(self, i: int, losses_K: np.ndarray, start: int) -> None:
        """Mark member i diverged when a loss of the chunk that started at `start` is NaN, inf
        or above its `divergence_loss`; its last checkpoint (if any) stays."""
        c = self.members[i].config
        diverged_K = ~np.isfinite(losses_K) | (losses_K > c.divergence_loss)
        if not diverged_K.any():
            return
        first = int(np.argmax(diverged_K))
        last = self.program.latest_checkpoint(i)
        kept = (
            f"checkpoint {last} in '{self.members[i].workdir}' is kept"
            if last is not None
            else "no checkpoint was written"
        )
        self.members[i].status = "diverged"
        self.members[i].error = (
            f"training diverged: the loss became {losses_K[first]:.4g} at step {start + first + 1} "
            f"(learning_rate={c.learning_rate}, divergence_loss={c.divergence_loss}); {kept}"
        )
        if len(self.members) > 1:
            self.progress.info(f"sweep member {self.members[i].name}: {self.members[i].error}")

    def check_stop(self, stop: StopFlag | None) -> None:
        """After a SIGINT/SIGTERM (in any process): checkpoint the live members, then stop."""
        mine = stop.signum if stop is not None else None
        if not parallel.any_process(mine is not None):
            return
        signum = mine or signal.SIGTERM  # a peer process got the signal
        self.program.save(self.live())
        where = f" in '{self.members[0].workdir}'" if len(self.members) == 1 else ""
        self.progress.info(
            f"{signal.Signals(signum).name}: saved {self.saved_what} at step "
            f"{self.program.step}{where}; continue with --resume"
        )
        raise Interrupted(int(signum))

    def finish(self) -> None:
        """Checkpoint, evaluate (unless the last chunk did) and write each live member's
        results.json."""
        live = self.live()
        if not live:
            return
        self.program.save(live)
        if self.evaluated_at != self.program.step and not self.evaluate():
            self.check_stop(self.stop)
        steps_run = self.program.step - self.start
        compile_seconds = self.compile_seconds() if self.compile_seconds else self.measured_compile
        eval_set = getattr(self.program, "eval_set", None)
        assert self.split_loss is not None  # the evaluation above, or the last chunk's
        for i in live:
            m = self.members[i]
            m.results = {
                **self.results_base,
                "model": m.config.model.name,
                "steps": self.program.step,
                "loss": self.split_loss[i],
                "wall_seconds": time.perf_counter() - self.t_start,
                "compile_seconds": compile_seconds,
                "steps_per_sec": steps_run / self.train_seconds if self.train_seconds > 0 else 0.0,
                "words_seen": int(self.seen_Mx2[i, 0]),
                "chars_seen": int(self.seen_Mx2[i, 1]),
            }
            if self.split_loss_ema is not None:
                m.results["loss_ema"] = self.split_loss_ema[i]
            if eval_set is not None:  # the rows each figure covers, when a split was sampled
                m.results.update(eval_set.coverage())
            if parallel.is_primary():
                write_json_atomic(m.workdir / RESULTS_FILE, m.results)
            m.status = "done"
