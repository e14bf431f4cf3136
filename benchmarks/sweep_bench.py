"""Sweeps: many models in one vmapped program against one model's fused chunk."""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from benchmarks.machine import Sizes, peak_rss_mb
from jax_makemore import sweep_program
from jax_makemore.sweep import expand_members, group_members
from jax_makemore.train import create_train_state, make_train_chunk

SWEEP_NOTE = (
    "N members (seeds) in sweep's compiled chunk (vmapped steps in tiles, members split "
    "over sweep_devices) vs one model's fused chunk, timed alternately in one process; "
    "model-steps/s = N * steps / second"
)


def compile_sweep(
    group, config, fresh_state: Callable[[int], Any], X, Y, k: int
) -> tuple[Callable[[], Any], dict[str, float]]:
    """The sweep command's compiled chunk of `k` steps for `group`'s members, placed as the
    command places them: a call that runs one chunk and syncs, and {devices, memory_mb} (XLA's
    memory analysis: arguments, outputs and temporaries, less what they alias)."""
    n = len(group.members)
    leaves = sweep_program.stack_leaves([fresh_state(m.config.seed) for m in group.members])
    hp = sweep_program.member_hyperparameters(group, [m.config for m in group.members])
    mesh = sweep_program.member_mesh(config.num_devices, n)
    X_sweep, Y_sweep = sweep_program.replicate((X, Y), mesh)
    facts: dict[str, float] = {"devices": 1 if mesh is None else mesh.size}
    size, tile = sweep_program.member_layout(n, mesh)
    leaves, hp = sweep_program.place_members((leaves, hp), mesh, size)
    fn = sweep_program.make_sweep_chunk(group, k, mesh, tile)
    compiled = fn.lower(leaves, hp, X_sweep, Y_sweep).compile()
    mem = compiled.memory_analysis()
    if mem is not None:
        total = mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
        facts["memory_mb"] = (total - mem.alias_size_in_bytes) / 2**20

    def call() -> None:
        nonlocal leaves
        leaves, losses = compiled(leaves, hp, X_sweep, Y_sweep)
        jax.device_get(losses)

    call()  # warm-up
    return call, facts


def alternate(runs: Sequence[Callable[[], None]], repeats: int) -> list[float]:
    """Median seconds of each run, called in turn `repeats` times (both see the same load)."""
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for run, seconds in zip(runs, times, strict=True):
            t0 = time.perf_counter()
            run()
            seconds.append(time.perf_counter() - t0)
    return [statistics.median(seconds) for seconds in times]


def bench_sweep(
    config, counts: Sequence[int], sizes: Sizes, log: Callable[[str], None]
) -> dict[str, Any]:
    """Aggregate model-steps/s of `jax_makemore.sweep`'s compiled chunk with N members (seeds
    0..N-1 of `config`) spread over the local devices as the sweep command spreads them, each
    N timed side by side with one model's fused chunk (`train`'s, on one device), alternating
    calls in this one process so that both see the same load; and the compiled sweep
    program's memory (XLA's memory analysis: arguments, outputs and temporaries)."""
    members = expand_members(config, [("seed", f"0:{max(counts)}")])
    group = group_members(members[:1])[0]
    model, ds = group.model(), group.ds
    X_train, Y_train = (jnp.asarray(a) for a in ds.split("train"))
    k_single = sizes.train_steps
    single = make_train_chunk(
        model, batch_size=config.batch_size, num_steps=k_single, full_batch=config.full_batch,
        spec=group.spec,
    )  # fmt: skip

    def fresh_state(seed: int):
        init_key, data_key, _ = jax.random.split(jax.random.PRNGKey(seed), 3)
        return create_train_state(config, model, init_key, data_key, ds.seq_len)

    state = fresh_state(config.seed)

    def single_call() -> None:
        nonlocal state
        state, losses = single(state, X_train, Y_train)
        jax.device_get(losses)

    single_call()  # compile + warm-up
    keys = ("model_steps_per_sec", "single_steps_per_sec", "speedup", "steps_per_call")
    out: dict[str, Any] = {"sweep_note": SWEEP_NOTE}
    out |= {f"sweep_{key}": {} for key in (*keys, "devices", "memory_mb")}
    for n in counts:
        # steps per call as the sweep command runs them (steps_per_call), capped for large N
        k = min(config.steps_per_call, max(10, 32 * k_single // n))
        g = dataclasses.replace(group, members=members[:n])
        sweep_call, facts = compile_sweep(g, config, fresh_state, X_train, Y_train, k)
        for key, value in facts.items():
            out[f"sweep_{key}"][str(n)] = value
        t_single, t_sweep = alternate([single_call, sweep_call], sizes.repeats)
        one, agg = k_single / t_single, n * k / t_sweep
        for key, value in zip(keys, (agg, one, agg / one, k), strict=True):
            out[f"sweep_{key}"][str(n)] = value
        log(
            f"sweep N={n}: {agg:,.0f} model-steps/s vs one model {one:,.0f} steps/s ({agg / one:.2f}x)"
        )
    out["peak_rss_mb"] = peak_rss_mb()
    return out
