"""The periodic evaluation of a run (or of a sweep's members): which rows it scores, and what
it shows while it scores them.

Each split is estimated on a fixed sample of at most `eval_max_rows` rows, drawn once from a
generator seeded by the split seed (the whole split, in order, when it is no larger): every
evaluation of a run, a resumed run and a sweep's members score the same rows, and a split
smaller than the cap gives exactly the figure of the whole split. `EvalWatch` sees every
evaluation batch go by: it stops the evaluation at the first batch after a SIGINT/SIGTERM
(`EvaluationStopped`), and when the batches it has timed say the evaluation will take longer
than `SLOW_SECONDS` it prints one line that says how many rows and about how long (with the
key that shortens it, before the first such evaluation of the run) and shows the rows' progress.

Shape letters: R rows of a split's sample.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from jax_makemore import parallel
from jax_makemore.data import SPLITS

#: An evaluation expected to take longer than this many seconds shows its progress.
SLOW_SECONDS = 5.0


class EvaluationStopped(Exception):
    """A SIGINT/SIGTERM arrived during an evaluation; the loop saves and stops."""


def sample_indices(n: int, max_rows: int, seed: int, split: str) -> np.ndarray | None:
    """The sorted indices of `max_rows` of a split's `n` rows, drawn without replacement from
    a generator seeded by (`seed`, the split's index); None (every row) when n <= max_rows."""
    if n <= max_rows:
        return None
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    return np.sort(rng.choice(n, size=max_rows, replace=False))


@dataclasses.dataclass(frozen=True)
class EvalSet:
    """The rows each split is evaluated on (`arrays`: X, Y per split), the size of each whole
    split (`split_rows`) and the cap (`max_rows`)."""

    arrays: dict[str, tuple[np.ndarray, np.ndarray]]
    split_rows: dict[str, int]
    max_rows: int

    @property
    def eval_rows(self) -> dict[str, int]:
        return {s: len(X) for s, (X, _) in self.arrays.items()}

    @property
    def sampled(self) -> bool:
        return self.eval_rows != self.split_rows

    @property
    def total_rows(self) -> int:
        return sum(self.eval_rows.values())

    def coverage(self) -> dict[str, Any]:
        """What results.json adds when a split was sampled: the rows each figure covers and
        the rows of each whole split; nothing when every split was scored whole."""
        if not self.sampled:
            return {}
        return {"eval_rows": self.eval_rows, "split_rows": self.split_rows}

    def describe(self) -> str:
        """e.g. "train 500,000 of 15,714,093 rows, val 1,964,000, test ..."."""
        parts = []
        for s in SPLITS:
            n, whole = self.eval_rows[s], self.split_rows[s]
            parts.append(f"{s} {n:,}" + (f" of {whole:,}" if n != whole else ""))
        return ", ".join(parts) + " rows"


def eval_set(ds: Any, max_rows: int, seed: int) -> EvalSet:
    """The EvalSet of dataset `ds` (data.Dataset) with at most `max_rows` rows per split,
    sampled with `seed` (the config's split_seed)."""
    arrays, split_rows = {}, {}
    for s in SPLITS:
        X, Y = ds.split(s)
        idx = sample_indices(len(X), max_rows, seed, s)
        arrays[s] = (X, Y) if idx is None else (X[idx], Y[idx])
        split_rows[s] = len(X)
    return EvalSet(arrays, split_rows, max_rows)


def eval_set_from_config(ds: Any, config: Any) -> EvalSet:
    """`eval_set` with the config's eval_max_rows and split_seed."""
    return eval_set(ds, config.get("eval_max_rows", 500_000), config.split_seed)


def format_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class EvalWatch:
    """Watches the batches of one evaluation at `step` (all its splits, and the averaged
    params' too): the program calls `begin(rows)` with the rows it will score and `tick(rows)`
    after each batch. `stop` is the loop's StopFlag (None: never stops); `display` the run's
    progress display (logs._Display); `describe` says what is scored, for the forecast line,
    which only a watch with `forecast` prints."""

    def __init__(
        self,
        step: int,
        display: Any,
        stop: Any = None,
        describe: str = "",
        forecast: bool = False,
    ) -> None:
        self.step, self.display, self.stop = step, display, stop
        self.describe, self.forecast = describe, forecast
        self.total = self.done = self.batches = 0
        self.t_first: float | None = None  # after the first batch (its compilation included)
        self.rows_first = 0
        self.decided = False
        self.bar: Any = None
        self.forecast_shown = False

    def begin(self, rows: int) -> None:
        self.total += rows

    def tick(self, rows: int) -> None:
        """One batch of `rows` rows is scored: stop after a signal (in any process), else
        decide once whether the evaluation is slow, and show its progress when it is."""
        if self.stop is not None and parallel.any_process(self.stop.signum is not None):
            raise EvaluationStopped
        now = time.perf_counter()
        self.done += rows
        self.batches += 1
        if self.batches == 1:
            self.t_first, self.rows_first = now, self.done
        elif not self.decided and self.t_first is not None and now > self.t_first:
            self.decided = True
            rate = (self.done - self.rows_first) / (now - self.t_first)
            left = (self.total - self.done) / max(rate, 1e-9)
            if left > SLOW_SECONDS:
                self._show(left)
        if self.bar is not None:
            self.bar.update(rows)

    def _show(self, left: float) -> None:
        if self.forecast:
            self.forecast_shown = True
            self.display.info(
                f"evaluation at step {self.step}: {self.total:,} rows ({self.describe}), about "
                f"{format_seconds(left)} left; fewer rows with --config.eval_max_rows=N"
            )
        from jax_makemore.logs import RowProgress

        self.bar = RowProgress(self.display, self.total, self.done, f"eval step {self.step}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
