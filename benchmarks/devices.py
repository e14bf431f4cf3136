"""Forced host device counts: the train command in subprocesses, N XLA devices on one CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.machine import Sizes, usable_cpus


def bench_devices(
    config_arg: str, overrides: Sequence[tuple[str, str]], counts: Sequence[int], sizes: Sizes,
    log: Callable[[str], None],
) -> dict[str, Any]:  # fmt: skip
    """Fused steps/s of `python -m jax_makemore.train` with N forced XLA host devices each."""
    steps = sizes.device_steps
    result: dict[str, Any] = {
        "note": (
            f"simulation: N XLA host devices (--xla_force_host_platform_device_count=N) share one "
            f"CPU of {usable_cpus()} cores; `python -m jax_makemore.train` with "
            f"--config.num_devices=N, {steps} steps"
        ),
        "steps_per_sec": {},
    }
    for n in counts:
        with tempfile.TemporaryDirectory(prefix="bench_devices_") as tmp:
            args = [
                sys.executable, "-m", "jax_makemore.train", "--config", config_arg,
                "--workdir", tmp, "--overwrite",
                *(f"--config.{k}={v}" for k, v in overrides),
                f"--config.num_steps={steps}", f"--config.eval_every={steps}",
                f"--config.checkpoint_every={steps}", "--config.num_samples=0",
                f"--config.num_devices={n}",
            ]  # fmt: skip
            env = dict(os.environ)
            env["JAX_PLATFORMS"] = "cpu"
            env["XLA_FLAGS"] = (
                env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={n}"
            ).strip()
            proc = subprocess.run(args, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
                log(f"devices={n}: train command failed: {tail}")
                result["steps_per_sec"][str(n)] = None
                continue
            results = json.loads((Path(tmp) / "results.json").read_text())
            result["steps_per_sec"][str(n)] = results["steps_per_sec"]
            log(f"devices={n} (simulated): {results['steps_per_sec']:,.0f} steps/s")
    return result
