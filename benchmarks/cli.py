"""The benchmark command: every figure of one config (and forced device counts), the sweep
benchmark alone, or the markdown table of earlier results."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax

import benchmarks
from benchmarks.devices import bench_devices
from benchmarks.hlo_profile import profile_train_step
from benchmarks.jax_timings import bench_arithmetic, bench_jax
from benchmarks.machine import (
    Sizes,
    device_name,
    lscpu_model,
    peak_rss_mb,
    torch_missing,
    usable_cpus,
)
from benchmarks.report import format_table, markdown_table
from benchmarks.sampling import bench_sampling
from benchmarks.sweep_bench import bench_sweep
from benchmarks.torch_mlp import torch_reference
from benchmarks.vs_torch import MAKEMORE_TORCH_KEYS, TORCH_MAKEMORE, bench_vs_torch
from jax_makemore import config as config_lib
from jax_makemore.restore import default_max_len


def bench_config(config, sizes: Sizes, log: Callable[[str], None]) -> dict[str, Any]:
    """Every figure of one config: JAX training, evaluation, arithmetic, the step's profile,
    makemore.py in PyTorch (interleaved, for the Transformer and the GRU; the older eager
    references otherwise) and sampling. `load_average` is os.getloadavg() at the start: the
    cores are shared, so only ratios measured within one run mean much."""
    r: dict[str, Any] = {"machine": lscpu_model(), "load_average": list(os.getloadavg())}
    jax_results = bench_jax(config, sizes, log)
    trained = jax_results.pop("_trained")
    r.update(jax_results)
    r.update(device=device_name(), jax_version=jax.__version__, cpu_count=usable_cpus())
    r.update(bench_arithmetic(config, sizes, log))
    r["profile"] = profile_train_step(trained, log)
    r["peak_rss_mb"] = peak_rss_mb()  # before torch is imported and sampling: JAX training
    makemore = config.model.name in TORCH_MAKEMORE
    why = torch_missing() if makemore else None
    torch_sample = None
    if makemore and why is None:
        vs, torch_sample = bench_vs_torch(trained, sizes, log)
        r.update(vs)
        r["torch_sample_batch"] = sizes.torch_sample_batch
    elif makemore:
        log(f"PyTorch reference skipped: {why}")
        r.update(dict.fromkeys(MAKEMORE_TORCH_KEYS), torch_compile_error=why)
    r.update(bench_sampling(trained, sizes, log, torch_sample))
    if not makemore:
        _, ds, _, _, variables, _ = trained
        max_len = default_max_len(ds.longest_word)
        steps_ps, names_ps, why = torch_reference(config, ds, variables, max_len, sizes, log)
        if why:
            log(f"PyTorch reference skipped: {why}")
        r["torch_eager_steps_per_sec"] = steps_ps
        r["torch_sample_names_per_sec"] = names_ps
    steps_ps, names_ps = r.get("torch_eager_steps_per_sec"), r.get("torch_sample_names_per_sec")
    r["speedup_train"] = r["train_fused_steps_per_sec"] / steps_ps if steps_ps else None
    r["speedup_sample"] = r["sample_names_per_sec"] / names_ps if names_ps else None
    return r


def write_json(r: dict[str, Any], out: str | None, log: Callable[[str], None]) -> None:
    """The results as one JSON object at `out` (nothing when None)."""
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(r, indent=2) + "\n", encoding="utf-8")
        log(f"wrote {out}")


def main(argv: Sequence[str]) -> int:
    argv, overrides = config_lib.split_config_args(argv)
    parser = argparse.ArgumentParser(description=benchmarks.__doc__.splitlines()[0])
    parser.add_argument("--config", default="mlp", help="config name or path (default: mlp)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--quick", action="store_true", help="few steps and words (for tests)")
    parser.add_argument(
        "--devices",
        default="",
        help="comma-separated forced host device counts, e.g. 1,2,4,8 (each in a subprocess)",
    )
    parser.add_argument(
        "--sweep",
        default="",
        help="comma-separated member counts, e.g. 1,8,64,512: only the sweep benchmark (bench_sweep)",
    )
    parser.add_argument(
        "--markdown",
        nargs="+",
        metavar="[LABEL=]FILE.json",
        help="print a markdown table of earlier results (one column each) and exit",
    )
    args = parser.parse_args(argv)
    if args.markdown:
        pairs = [m.split("=", 1) if "=" in m else [Path(m).stem, m] for m in args.markdown]
        results = [json.loads(Path(f).read_text(encoding="utf-8")) for _, f in pairs]
        print(markdown_table(results, [label for label, _ in pairs]))
        return 0
    counts = [int(n) for n in args.devices.split(",") if n.strip()]
    config, _ = config_lib.resolve(args.config, overrides)
    sizes = Sizes(args.quick)

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    r: dict[str, Any] = {}
    sweep_counts = [int(n) for n in args.sweep.split(",") if n.strip()]
    if sweep_counts:  # the sweep benchmark alone, members over one CPU device per core
        from jax_makemore.sweep import use_cpu_cores

        use_cpu_cores()
        r.update(device=device_name(), jax_version=jax.__version__, cpu_count=usable_cpus())
        r.update(bench_sweep(config, sweep_counts, sizes, log))
        print(json.dumps(r, indent=2))
        write_json(r, args.out, log)
        return 0
    r = bench_config(config, sizes, log)
    if counts:
        r["train_fused_by_devices"] = bench_devices(args.config, overrides, counts, sizes, log)
    r["load_average_end"] = list(os.getloadavg())

    print(format_table(r))
    write_json(r, args.out, log)
    return 0
