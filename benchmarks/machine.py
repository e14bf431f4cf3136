"""Where and how the figures are measured: the machine, the timer, the sizes of the work."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    """Median wall time of `fn()` over `repeats` calls; `fn` blocks on its own results."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def device_name() -> str:
    d = jax.devices()[0]
    if d.platform == "cpu":
        return f"cpu ({cpu_name()}, {usable_cpus()} cores)"
    return f"{d.platform} ({d.device_kind})"


def peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux, bytes on macOS
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


class Sizes:
    """How much work each measurement does: full, or `--quick` for tests."""

    def __init__(self, quick: bool) -> None:
        self.repeats = 3 if quick else 5
        # steps per timed repeat: at least `train_steps`, and `fused_calls` calls of K steps
        self.train_steps = 100 if quick else 2_000
        self.fused_calls = 2 if quick else 20
        self.torch_steps = 200 if quick else 5_000
        self.sample_words = (
            {1: 20, 100: 200, 10_000: 10_000}
            if quick
            else {
                1: 300,
                100: 3_000,
                10_000: 30_000,
            }
        )
        self.torch_words = 30 if quick else 1_000
        # interleaved rounds: seconds of work per run and round; rounds of a slow sampler
        self.round_seconds = 0.3 if quick else 1.5
        self.sample_repeats = 2 if quick else 3
        # makemore.py's generate: one batch of this many words per round (the JAX batch)
        self.torch_sample_batch = 200 if quick else 10_000
        self.device_steps = 500 if quick else 20_000


def interleave(runs: dict[str, Callable[[], float]], repeats: int) -> dict[str, dict[str, float]]:
    """Each run called in turn, `repeats` rounds, so that all see the same load (other jobs on
    the cores come and go). A run returns the work it did (characters, names); per run: the
    median of work / seconds over the rounds ("rate") and the median seconds ("seconds")."""
    rates: dict[str, list[float]] = {name: [] for name in runs}
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            t0 = time.perf_counter()
            work = run()
            dt = time.perf_counter() - t0
            rates[name].append(work / dt)
            seconds[name].append(dt)
    return {
        name: {"rate": statistics.median(rates[name]), "seconds": statistics.median(seconds[name])}
        for name in runs
    }


def lscpu_model() -> str:
    """The CPU's model name as `lscpu` prints it (the machine the figures were measured on)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in text.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return cpu_name()


def torch_missing() -> str | None:
    """Why the PyTorch references cannot run (None when torch imports)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return "torch is not installed (pip install -e '.[bench]')"
    return None
