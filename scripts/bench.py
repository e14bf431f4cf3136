"""Throughput benchmarks: the jit train step, fused steps, evaluation and sampling, beside a
PyTorch eager reference.

    python scripts/bench.py [--config NAME|PATH] [--out FILE.json] [--quick] [--devices 1,2,4,8]
                            [--config.KEY=VALUE ...]
    python scripts/bench.py --markdown [LABEL=]FILE.json ...   # the README table from results

Every figure is the median of several timed repeats after a warm-up call, with
`block_until_ready` (or a host transfer) closing each timed region. Everything JAX runs is the
project's own code: `create_train_state`, `make_train_step`, `make_train_chunk`,
`make_eval_step` + `evaluate_loss`, and `make_sampler` + `generate` (the cached default and,
for sequence models, `recompute=True`). The PyTorch references (the `[bench]` extra): for
`transformer` and `gru`, makemore.py's model and training step in eager PyTorch and under
`torch.compile`, timed interleaved with the packed and padded JAX steps in characters/s, and
makemore.py's `generate` (bench_vs_torch); for the MLP, a plain eager makemore MLP of the same
shapes trained with SGD at the same batch size and makemore's per-word `torch.multinomial`
sampling loop on the same weights. `profile` says where the default step's time goes
(jax.profiler trace, by part of the model); `machine` and `load_average` say where and under
what load it was measured.

Prints a table on stdout and, with `--out`, writes one JSON object. `--devices` adds
`train_fused_by_devices`: fused steps/s of the train command with N forced XLA host devices on
this one CPU (a simulation of data parallelism, not N real accelerators).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jax_makemore import config as config_lib
from jax_makemore.batches import packing_from_config
from jax_makemore.data import dataset_from_config
from jax_makemore.loss import evaluate_loss, make_eval_step
from jax_makemore.models import get_spec, input_length
from jax_makemore.restore import variables_of
from jax_makemore.sample import default_max_len, generate
from jax_makemore.train import create_train_state, make_train_chunk, make_train_step

FUSED_KS = (1, 10, 100, 1000)
SAMPLE_BATCHES = (1, 100, 10_000)


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


# ---------------------------------------------------------------------------------------------
# JAX


def bench_jax(config, sizes: Sizes, log: Callable[[str], None]) -> dict[str, Any]:
    """Compile time, per-step and fused steps/s of the config's default train step (packed
    rows for the packing sequence configs) and evaluation; returns the trained state's
    variables under "_trained" for the sampling and PyTorch benches."""
    ds = dataset_from_config(config)
    spec = get_spec(config.model.name)
    model = spec.build(config.model, ds.vocab.size, ds.seq_len)
    init_key, data_key, sample_key = jax.random.split(jax.random.PRNGKey(config.seed), 3)
    state = create_train_state(config, model, init_key, data_key, ds.seq_len)
    X_train, Y_train = (jnp.asarray(a) for a in ds.split("train"))
    step_kw = dict(
        batch_size=config.batch_size, full_batch=config.full_batch, spec=spec,
        packing=packing_from_config(config, ds.split("train")[1], ds.seq_len),
    )  # fmt: skip
    out: dict[str, Any] = {"batch_size": config.batch_size, "layout": spec.layout}

    # compile_seconds: the train chunk of `steps_per_call` steps, lowered and compiled afresh
    def compile_chunk():
        fn = make_train_chunk(model, num_steps=config.steps_per_call, **step_kw)
        return fn.lower(state, X_train, Y_train).compile()

    out["compile_seconds"] = median_seconds(compile_chunk, max(1, sizes.repeats // 2))
    log(f"compile: {out['compile_seconds']:.2f} s")

    # one jit call per step, dispatched asynchronously; the loss is fetched once per repeat
    step = jax.jit(make_train_step(model, **step_kw), donate_argnums=0)
    state, loss = step(state, X_train, Y_train)
    jax.block_until_ready(loss)
    # size the timed work to about a second per repeat for slow models (a Transformer on a CPU)
    t0 = time.perf_counter()
    for _ in range(10):
        state, loss = step(state, X_train, Y_train)
    jax.block_until_ready(loss)
    rate = 10 / (time.perf_counter() - t0)  # rough steps/s
    S = int(min(sizes.train_steps, max(20, rate)))

    def per_step():
        nonlocal state
        for _ in range(S):
            state, loss = step(state, X_train, Y_train)
        jax.block_until_ready((state, loss))

    out["train_per_step_steps_per_sec"] = S / median_seconds(per_step, sizes.repeats)
    log(f"per-step jit: {out['train_per_step_steps_per_sec']:,.0f} steps/s")
    state, by_k = time_fused(model, state, X_train, Y_train, step_kw, config, sizes, S, rate, log)
    out["train_fused_steps_per_sec"] = by_k[str(config.steps_per_call)]
    out["train_fused_by_k"] = {str(k): by_k.get(str(k)) for k in FUSED_KS}

    variables = variables_of(state.params, state.batch_stats)
    out.update(time_eval(model, variables, ds, config, sizes, log))
    out["_trained"] = (config, ds, spec, model, variables, sample_key)
    return out


def time_fused(
    model, state, X, Y, step_kw: dict, config, sizes: Sizes, S: int, rate: float,
    log: Callable[[str], None],
) -> tuple[Any, dict[str, float]]:  # fmt: skip
    """Steps/s of K steps in one lax.scan per call, for the FUSED_KS a slow model can afford
    and the config's `steps_per_call`; returns the state trained on and {K: steps/s}."""
    by_k: dict[str, float] = {}
    for K in sorted({k for k in FUSED_KS if k <= max(5 * rate, 10)} | {config.steps_per_call}):
        chunk = make_train_chunk(model, num_steps=K, **step_kw)
        calls = max(sizes.fused_calls * S // sizes.train_steps, -(-S // K), 1)
        state, out = chunk(state, X, Y)  # compile + warm-up
        jax.device_get(out)

        def fused(chunk=chunk, calls=calls):
            nonlocal state
            for _ in range(calls):
                state, out = chunk(state, X, Y)
            jax.device_get(out)  # the train loop's one host sync per chunk

        repeats = sizes.repeats if K <= S else 2  # a long call: fewer repeats
        by_k[str(K)] = calls * K / median_seconds(fused, repeats)
        log(f"fused K={K}: {by_k[str(K)]:,.0f} steps/s")
    return state, by_k


def time_eval(
    model, variables, ds, config, sizes: Sizes, log: Callable[[str], None]
) -> dict[str, Any]:
    """Examples/s of the evaluation over the val split (test split when val is empty)."""
    eval_step = make_eval_step(model)
    X_eval, Y_eval = ds.split("val") if len(ds.split("val")[1]) else ds.split("test")
    out: dict[str, Any] = {"eval_examples_per_sec": None}
    if len(Y_eval):
        out["eval_characters"] = int(np.sum(Y_eval >= 0))
        evaluate_loss(eval_step, variables, X_eval, Y_eval, config.eval_batch_size)
        dt = median_seconds(
            lambda: evaluate_loss(eval_step, variables, X_eval, Y_eval, config.eval_batch_size),
            sizes.repeats,
        )
        out["eval_examples_per_sec"] = len(Y_eval) / dt
    log(f"eval: {out['eval_examples_per_sec'] or 0:,.0f} examples/s")
    return out


# ---------------------------------------------------------------------------------------------
# arithmetic throughput and model variants

#: Variants timed beside a config's model (same data and sizes): name -> config overrides.
VARIANTS: dict[str, dict[str, list[tuple[str, str]]]] = {
    "mlp": {
        "mlp, fused BatchNorm backward": [("model.bn_fused_backward", "true")],
        "mlp_manual (hand-written backward)": [("model.name", "mlp_manual")],
    },
    "wavenet": {"wavenet_conv": [("model.name", "wavenet_conv")]},
}


def peak_matmul_gflops(repeats: int, n: int = 1024) -> float:
    """GFLOP/s of one jitted float32 n x n matmul: the machine's practical matmul peak."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    matmul = jax.jit(lambda a: a @ a)
    matmul(a).block_until_ready()
    return 2 * n**3 / median_seconds(lambda: matmul(a).block_until_ready(), repeats) / 1e9


def time_train_chunk(config, sizes: Sizes) -> dict[str, float]:
    """Fused steps/s of `config`'s train chunk (`steps_per_call` steps, its default step: packed
    rows where it packs), the characters it trains on per second (the counted targets the
    chunk reports: windows, or the letters + end of the words of a step), and the FLOPs of one
    step as XLA counts them."""
    ds = dataset_from_config(config)
    spec = get_spec(config.model.name)
    model = spec.build(config.model, ds.vocab.size, ds.seq_len)
    state = create_train_state(
        config, model, jax.random.PRNGKey(0), jax.random.PRNGKey(1), ds.seq_len
    )
    X, Y = (jnp.asarray(a) for a in ds.split("train"))
    K = config.steps_per_call
    step_kw = dict(
        batch_size=config.batch_size, full_batch=config.full_batch, spec=spec,
        packing=packing_from_config(config, ds.split("train")[1], ds.seq_len),
    )  # fmt: skip
    compiled = make_train_chunk(model, num_steps=K, **step_kw).lower(state, X, Y).compile()
    # XLA counts a loop body once, so the FLOPs come from one step compiled on its own
    cost = jax.jit(make_train_step(model, **step_kw)).lower(state, X, Y).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    t0 = time.perf_counter()
    state, out = compiled(state, X, Y)
    jax.device_get(out)
    slow = time.perf_counter() - t0 > 2.0  # a chunk of a slow model: one call, two repeats
    calls = 1 if slow else max(1, -(-sizes.train_steps // K))
    chars: list[int] = []

    def run():
        nonlocal state
        seen = []
        for _ in range(calls):
            state, (_, seen_2) = compiled(state, X, Y)
            seen.append(seen_2)
        chars.append(int(np.sum(np.asarray(jax.device_get(seen))[:, 1])))

    seconds = median_seconds(run, 2 if slow else sizes.repeats)
    return {
        "steps_per_sec": calls * K / seconds,
        "chars_per_sec": statistics.median(chars) / seconds,
        "flops_per_step": float(cost.get("flops", 0.0)) if cost else 0.0,
    }


def bench_arithmetic(config, sizes: Sizes, log: Callable[[str], None]) -> dict[str, Any]:
    """Achieved GFLOP/s of the fused train step beside the matmul peak, characters/s, and the
    same figures for the config's VARIANTS."""
    out: dict[str, Any] = {"peak_matmul_gflops": peak_matmul_gflops(sizes.repeats)}
    mine = time_train_chunk(config, sizes)
    out["train_fused_chars_per_sec"] = mine["chars_per_sec"]
    out["train_chunk_steps_per_sec"] = mine["steps_per_sec"]  # beside the variants below
    out["flops_per_step"] = mine["flops_per_step"]
    out["achieved_gflops"] = mine["flops_per_step"] * mine["steps_per_sec"] / 1e9
    log(
        f"{config.model.name}: {mine['chars_per_sec']:,.0f} chars/s, "
        f"{out['achieved_gflops']:.1f} GFLOP/s of a {out['peak_matmul_gflops']:.0f} GFLOP/s matmul peak"
    )
    variants = {}
    for label, overrides in VARIANTS.get(config.model.name, {}).items():
        variant = config.copy_and_resolve_references()
        config_lib.apply_overrides(variant, overrides)
        config_lib.validate_config(variant)
        variants[label] = time_train_chunk(variant, sizes)
        log(
            f"{label}: {variants[label]['steps_per_sec']:,.0f} steps/s, "
            f"{variants[label]['chars_per_sec']:,.0f} chars/s"
        )
    out["variants"] = variants
    return out


# ---------------------------------------------------------------------------------------------
# sampling: the cached default, the recompute path and makemore.py's generate


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


def has_recompute_switch() -> bool:
    """Whether `sample.generate` takes `recompute` (cached decoding is the default then)."""
    return "recompute" in inspect.signature(generate).parameters


def sampling_runs(
    trained: tuple, batch: int, calls: int, recompute: bool
) -> tuple[Callable[[], float], Callable[[], float] | None]:
    """(cached default, recompute path or None) for `calls` batches of `batch` words through
    `generate` (decoding to strings included); each returns the names it drew."""
    config, ds, spec, model, variables, key = trained
    kw = dict(
        layout=spec.layout, input_len=input_length(config.model, ds.seq_len),
        max_len=default_max_len(ds.longest_word), batch_size=batch,
    )  # fmt: skip

    def run(**extra: Any) -> float:
        return len(generate(model, variables, ds.vocab, key, calls * batch, **kw, **extra))

    return run, (lambda: run(recompute=True)) if recompute else None


def bench_sampling(
    trained: tuple, sizes: Sizes, log: Callable[[str], None], torch_sample: Callable | None
) -> dict[str, Any]:
    """Names/s at batches 1, 100 and 10,000 from the cached default and (sequence models) the
    recompute path, interleaved; at the largest batch `torch_sample` (makemore.py's generate,
    sequence models) joins the rounds."""
    layout = trained[2].layout
    recompute = layout == "sequences" and has_recompute_switch()
    cached, slow = {}, {}
    torch_rate = None
    for batch in SAMPLE_BATCHES:
        run, run_slow = sampling_runs(trained, batch, 1, recompute)
        t0 = time.perf_counter()
        run()  # compile + warm-up of one batch (the compiled sampler is cached)
        if run_slow:
            run_slow()
        one = time.perf_counter() - t0
        # about half a second of work per run and round, within the size's word budget
        calls = int(min(max(1, 0.5 // max(one, 1e-3)), max(1, sizes.sample_words[batch] // batch)))
        run, run_slow = sampling_runs(trained, batch, calls, recompute)
        runs = {"cached": run} | ({"recompute": run_slow} if run_slow else {})
        if torch_sample is not None and batch == max(SAMPLE_BATCHES):
            runs["torch"] = torch_sample
        rates = interleave(runs, sizes.sample_repeats if one > 1.0 else sizes.repeats)
        cached[str(batch)] = rates["cached"]["rate"]
        slow[str(batch)] = rates["recompute"]["rate"] if run_slow else None
        torch_rate = rates["torch"]["rate"] if "torch" in rates else torch_rate
        log(f"sample batch {batch}: {num(cached[str(batch)])} names/s cached, "
            f"{num(slow[str(batch)])} recompute")  # fmt: skip
    top = str(max(SAMPLE_BATCHES))
    out: dict[str, Any] = {
        "sample_names_per_sec": cached[top],
        "sample_by_batch": cached,
        "sample_recompute_names_per_sec": slow[top],
        "sample_recompute_by_batch": slow if recompute else None,
        "sample_cached_vs_recompute": cached[top] / slow[top] if slow[top] else None,
    }
    if not recompute:
        out["sample_recompute_note"] = (
            "windows layout: no cache, its sampler reads the whole window (the default)"
            if layout == "windows"
            else "generate() has no recompute switch yet: the default is the recompute sampler"
        )
    if torch_sample is not None:
        out["torch_sample_names_per_sec"] = torch_rate
    return out


# ---------------------------------------------------------------------------------------------
# training against makemore.py in PyTorch, eager and under torch.compile, interleaved

#: Models with a makemore.py PyTorch reference timed against the JAX step interleaved.
TORCH_MAKEMORE = ("transformer", "gru")
#: Their keys (null, with torch_compile_error the reason, when torch is missing).
MAKEMORE_TORCH_KEYS = (
    "train_chars_per_sec",
    "train_padded_chars_per_sec",
    "torch_eager_chars_per_sec",
    "torch_compile_chars_per_sec",
    "torch_eager_steps_per_sec",
    "torch_sample_names_per_sec",
    "speedup_train_chars",
    "speedup_vs_compile_chars",
)


def torch_makemore_model(config, ds) -> Any:
    """makemore.py's model of `config` (scripts/torch_transformer.py, scripts/torch_gru.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    m = config.model
    if m.name == "transformer":
        from torch_transformer import make_gpt

        return make_gpt(ds.vocab.size, ds.seq_len, m.n_layer, m.n_head, m.n_embd)
    from torch_gru import make_gru

    return make_gru(ds.vocab.size, ds.seq_len, m.n_embd, m.n_embd2)


def jax_chars_run(config, ds, spec, model, packed: bool, seconds: float) -> Callable[[], float]:
    """A run of about `seconds` of JAX train chunks (the packed default or the padded step),
    returning the characters (counted targets) it trained on, with its one host sync."""
    Y_np = ds.split("train")[1]
    X, Y = (jnp.asarray(a) for a in ds.split("train"))
    packing = packing_from_config(config, Y_np, ds.seq_len) if packed else None
    K = min(config.steps_per_call, 50)
    chunk = make_train_chunk(
        model, batch_size=config.batch_size, num_steps=K, packing=packing, spec=spec
    )
    state = create_train_state(
        config, model, jax.random.PRNGKey(0), jax.random.PRNGKey(1), ds.seq_len
    )
    state, out = chunk(state, X, Y)  # compile + warm-up
    jax.device_get(out)
    t0 = time.perf_counter()
    state, out = chunk(state, X, Y)
    jax.device_get(out)
    calls = max(1, round(seconds / (time.perf_counter() - t0)))

    def run() -> float:
        nonlocal state
        seen = []
        for _ in range(calls):
            state, (_, seen_2) = chunk(state, X, Y)
            seen.append(seen_2)
        return float(np.sum(np.asarray(jax.device_get(seen))[:, 1]))

    run.steps = calls * K  # type: ignore[attr-defined]
    return run


def threads_run(trainer: Any, threads: int, steps: int = 10) -> float:
    """`steps` steps of a TorchTrainer on `threads` threads; returns the steps."""
    import torch

    torch.set_num_threads(threads)
    trainer.run(steps)
    return float(steps)


def torch_runs(
    config, ds, seconds: float, log: Callable[[str], None]
) -> tuple[dict[str, Callable[[], float]], Any, dict[str, Any]]:
    """Runs of about `seconds` of makemore.py's step in PyTorch, eager and under
    torch.compile (left out, with the reason, when it fails), at torch's best thread count
    (its default or one: OpenMP spin-waits collapse when other jobs share the cores); the
    eager model (for sampling) and facts for the JSON."""
    import torch
    from torch_transformer import TorchTrainer

    X, Y = ds.split("train")
    kw = dict(batch_size=config.batch_size, lr=config.learning_rate, seed=config.seed)
    torch.manual_seed(config.seed)
    eager = TorchTrainer(torch_makemore_model(config, ds), X, Y, **kw)
    eager.run(3)  # warm-up
    trial = interleave(
        {n: functools.partial(threads_run, eager, n) for n in sorted({1, torch.get_num_threads()})},
        3,
    )
    torch.set_num_threads(max(trial, key=lambda n: trial[n]["rate"]))
    facts: dict[str, Any] = {
        "torch_threads": torch.get_num_threads(),
        "torch_thread_trial_steps_per_sec": {str(n): v["rate"] for n, v in trial.items()},
        "torch_compile_error": None,
        "torch_compile_seconds": None,
    }
    runs = {"torch_eager": eager}
    torch.manual_seed(config.seed)
    try:
        compiled = TorchTrainer(torch_makemore_model(config, ds), X, Y, compile=True, **kw)
        t0 = time.perf_counter()
        compiled.run(3)  # compiles the forward and backward
        facts["torch_compile_seconds"] = time.perf_counter() - t0
        runs["torch_compile"] = compiled
    except Exception as e:  # noqa: BLE001 -- any failure to compile is reported, not raised
        facts["torch_compile_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
        log(f"torch.compile failed: {facts['torch_compile_error']}")
    out: dict[str, Callable[[], float]] = {}
    for name, trainer in runs.items():
        t0 = time.perf_counter()
        trainer.run(5)
        steps = max(5, round(5 * seconds / (time.perf_counter() - t0)))
        out[name] = functools.partial(trainer.run, steps)
        out[name].steps = steps  # type: ignore[attr-defined]
    return out, eager.model, facts


def bench_vs_torch(
    trained: tuple, sizes: Sizes, log: Callable[[str], None]
) -> tuple[dict[str, Any], Callable[[], float] | None]:
    """Characters/s of the JAX step (packed default and padded) and of makemore.py's step in
    PyTorch (eager, torch.compile), timed interleaved in this process; and makemore.py's
    `generate` at the sampling batch on the eager model, for bench_sampling."""
    config, ds, spec, model, _, _ = trained
    runs = {
        "jax": jax_chars_run(config, ds, spec, model, True, sizes.round_seconds),
        "jax_padded": jax_chars_run(config, ds, spec, model, False, sizes.round_seconds),
    }
    torch_trainers, torch_model, out = torch_runs(config, ds, sizes.round_seconds, log)
    runs |= torch_trainers
    r = interleave(runs, sizes.repeats)
    rate = {name: v["rate"] for name, v in r.items()}
    out |= {
        "train_chars_per_sec": rate["jax"],
        "train_padded_chars_per_sec": rate["jax_padded"],
        "torch_eager_chars_per_sec": rate["torch_eager"],
        "torch_compile_chars_per_sec": rate.get("torch_compile"),
        "torch_eager_steps_per_sec": runs["torch_eager"].steps / r["torch_eager"]["seconds"],
        "speedup_train_chars": rate["jax"] / rate["torch_eager"],
        "speedup_vs_compile_chars": (
            rate["jax"] / rate["torch_compile"] if "torch_compile" in rate else None
        ),
        "train_interleaved_steps_per_call": min(config.steps_per_call, 50),
    }
    out["torch_compile_steps_per_sec"] = (
        runs["torch_compile"].steps / r["torch_compile"]["seconds"]
        if "torch_compile" in r
        else None
    )
    log(", ".join(f"{k}: {v:,.0f} chars/s" for k, v in rate.items()))
    return out, functools.partial(torch_generate, torch_model, ds, sizes.torch_sample_batch)


def torch_generate(torch_model: Any, ds, batch: int) -> float:
    """Names drawn by makemore.py's generate (`print_samples`: its longest word's steps, the
    prefix cropped to the block size) for one batch; it returns the batch size."""
    from torch_transformer import makemore_generate

    makemore_generate(torch_model, batch, ds.longest_word, ds.seq_len, ds.vocab.boundary_id)
    return float(batch)


# ---------------------------------------------------------------------------------------------
# where a train step's time goes: jax.profiler's trace of the ops, by part of the model

PROFILE_STEPS = 20


def hlo_op_sources(hlo_text: str) -> dict[str, tuple[str, str, str]]:
    """{HLO instruction: (op_name, source file, function)} from a compiled module's text: the
    op_name metadata carries the Flax module path, the stack frame the innermost function."""
    table: dict[str, dict[int, str]] = {}
    section = None
    for line in hlo_text.splitlines():
        if line in ("FileNames", "FunctionNames", "FileLocations", "StackFrames"):
            section, table[line] = line, {}
        elif section and re.match(r"\d+ ", line):
            key, value = line.split(" ", 1)
            table[section][int(key)] = value.strip('"')
        elif section:
            section = None
    loc = {
        k: re.search(r"file_name_id=(\d+) function_name_id=(\d+)", v).groups()
        for k, v in table.get("FileLocations", {}).items()
    }
    frame = {
        k: int(re.search(r"file_location_id=(\d+)", v).group(1))
        for k, v in table.get("StackFrames", {}).items()
    }
    pattern = r"^\s*(?:ROOT )?%?([\w.\-]+) = [^\n]*?metadata=\{op_name=\"([^\"]*)\"(?: stack_frame_id=(\d+))?"
    ops = {}
    for m in re.finditer(pattern, hlo_text, re.M):
        file = function = ""
        if m.group(3) and int(m.group(3)) in frame:
            file_id, function_id = loc[frame[int(m.group(3))]]
            file = table["FileNames"][int(file_id)].rsplit("/", 1)[-1]
            function = table["FunctionNames"][int(function_id)]
        ops[m.group(1)] = (m.group(2), file, function)
    return ops


def op_part(op_name: str, file: str, function: str) -> str:
    """The part of a train step an HLO op belongs to (by its module path or source)."""
    if file in ("packing.py", "batches.py"):
        return "batch draw (packing)"
    if file in ("loss.py", "_classification.py"):
        return "loss (log-softmax, NLL)"
    if file in ("train_state.py", "update.py", "_tree_math.py", "transform.py", "numerics.py",
                "_adding.py", "_combining.py", "base.py") and "jvp(" not in op_name:  # fmt: skip
        return "optimizer (AdamW)"
    if "jvp(" not in op_name:
        return "other (loop, keys)"
    path = op_name.split("jvp(", 1)[1]  # the module path inside the model
    if "/attn/" in path:
        if "/c_attn/" in path or "/attn/c_proj/" in path:
            return "attention: c_attn, c_proj matmuls"
        return "attention: scores, mask, softmax, weighted sum"
    if "/ln_" in path or file == "normalization.py":
        return "LayerNorm"
    if "/wte/" in path or "/wpe/" in path or function == "Embed.__call__":
        return "embeddings (gather, scatter-add)"
    if "/lm_head/" in path:
        return "lm_head"
    if "/c_fc/" in path or "/c_proj/" in path or function == "Block.__call__":
        return "MLP: c_fc, GELU, c_proj (and residual adds)"
    if "/cell" in path:
        return "recurrent cell"
    if "/while/" in path:  # the scan over time: slicing inputs, stacking the states
        return "recurrent scan (slicing, stacking the states)"
    return "model, other"


def trace_op_micros(trace_dir: str) -> dict[str, float]:
    """{op name: microseconds} summed over the complete events of a perfetto trace."""
    import gzip

    files = sorted(Path(trace_dir).rglob("perfetto_trace.json.gz"))
    if not files:
        raise RuntimeError(f"jax.profiler wrote no perfetto trace under {trace_dir}")
    data = json.loads(gzip.decompress(files[-1].read_bytes()))
    events = data["traceEvents"] if isinstance(data, dict) else data
    micros: dict[str, float] = {}
    for e in events:
        if e.get("ph") == "X":
            micros[e["name"]] = micros.get(e["name"], 0.0) + float(e.get("dur", 0.0))
    return micros


def profile_train_step(trained: tuple, log: Callable[[str], None]) -> dict[str, Any]:
    """Where the default train step's time goes: a jax.profiler trace of PROFILE_STEPS fused
    steps, each op's time given to a part of the step (`op_part`) through the compiled HLO's
    metadata. Loops and calls are containers (their ops count); the shares are of op time."""
    config, ds, spec, model, _, _ = trained
    X, Y = (jnp.asarray(a) for a in ds.split("train"))
    packing = packing_from_config(config, ds.split("train")[1], ds.seq_len)
    chunk = make_train_chunk(
        model, batch_size=config.batch_size, num_steps=PROFILE_STEPS, packing=packing, spec=spec
    )
    state = create_train_state(
        config, model, jax.random.PRNGKey(0), jax.random.PRNGKey(1), ds.seq_len
    )
    ops = hlo_op_sources(chunk.lower(state, X, Y).compile().as_text())
    state, out = chunk(state, X, Y)  # warm-up
    jax.device_get(out)
    with tempfile.TemporaryDirectory(prefix="bench_profile_") as tmp:
        jax.profiler.start_trace(tmp, create_perfetto_trace=True)
        t0 = time.perf_counter()
        state, out = chunk(state, X, Y)
        jax.device_get(out)
        wall = time.perf_counter() - t0
        jax.profiler.stop_trace()
        micros = trace_op_micros(tmp)
    parts: dict[str, float] = {}
    backward = 0.0
    for name, us in micros.items():
        if name not in ops or name.split(".")[0] in ("while", "call", "conditional"):
            continue
        part = op_part(*ops[name])
        parts[part] = parts.get(part, 0.0) + us
        backward += us if "transpose(jvp(" in ops[name][0] else 0.0
    total = sum(parts.values())
    result = {
        "steps": PROFILE_STEPS,
        "packing": dataclasses.asdict(packing) if packing else None,
        "wall_ms_per_step": 1e3 * wall / PROFILE_STEPS,
        "op_ms_per_step": total / 1e3 / PROFILE_STEPS,
        "backward_share": backward / total,
        "parts": {
            p: {"ms_per_step": us / 1e3 / PROFILE_STEPS, "share": us / total}
            for p, us in sorted(parts.items(), key=lambda kv: -kv[1])
        },
    }
    log("profile: " + ", ".join(f"{p} {v['share']:.0%}" for p, v in result["parts"].items()))
    return result


# ---------------------------------------------------------------------------------------------
# PyTorch eager reference


def torch_reference(
    config, ds, variables, max_len: int, sizes: Sizes, log: Callable[[str], None]
) -> tuple[float | None, float | None, str | None]:
    """(steps/s, names/s, reason when None) of the eager PyTorch reference of the config's
    model: makemore's MLP (training and per-word sampling) or the WaveNet lecture's window
    model (training only). makemore.py's Transformer and GRU: bench_vs_torch."""
    name = config.model.name
    if name == "wavenet":
        return torch_reference_training(config, ds, sizes, log)
    if name != "mlp" or not config.model.use_batchnorm:
        return None, None, f"no PyTorch reference for model {name}"
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None, None, "torch is not installed (pip install -e '.[bench]')"

    torch.manual_seed(config.seed)
    g = torch.Generator().manual_seed(config.seed)
    mc = config.model
    V, T, E, H = ds.vocab.size, mc.block_size, mc.n_embd, mc.n_hidden
    Xtr, Ytr = (torch.from_numpy(np.asarray(a, np.int64)) for a in ds.split("train"))
    C = torch.randn((V, E), generator=g)
    W1 = torch.randn((T * E, H), generator=g) * mc.kaiming_gain / (T * E) ** 0.5
    W2 = torch.randn((H, V), generator=g) * 0.01
    b2 = torch.zeros(V)
    bngain, bnbias = torch.ones((1, H)), torch.zeros((1, H))
    bnmean_running, bnvar_running = torch.zeros((1, H)), torch.ones((1, H))
    params = [C, W1, W2, b2, bngain, bnbias]
    for p in params:
        p.requires_grad = True
    m, eps, lr = mc.bn_momentum, mc.bn_eps, config.learning_rate

    def train_steps(n: int) -> None:
        for _ in range(n):
            ix = torch.randint(0, Xtr.shape[0], (config.batch_size,), generator=g)
            Xb, Yb = Xtr[ix], Ytr[ix]
            hpreact = C[Xb].view(Xb.shape[0], -1) @ W1
            bnmeani = hpreact.mean(0, keepdim=True)
            bnvari = hpreact.var(0, keepdim=True, unbiased=False)
            hpreact = bngain * (hpreact - bnmeani) / torch.sqrt(bnvari + eps) + bnbias
            with torch.no_grad():
                bnmean_running.mul_(1 - m).add_(m * bnmeani)
                bnvar_running.mul_(1 - m).add_(m * bnvari)
            logits = torch.tanh(hpreact) @ W2 + b2
            loss = F.cross_entropy(logits, Yb)
            for p in params:
                p.grad = None
            loss.backward()
            for p in params:
                p.data += -lr * p.grad
        loss.item()

    # torch's best thread count: its default (one per core) or one, which a batch of 32 favours
    # and which does not collapse when other processes share the cores (OpenMP spin-waits)
    trial: dict[int, float] = {}
    for threads in sorted({1, torch.get_num_threads()}):
        torch.set_num_threads(threads)
        train_steps(20)
        trial[threads] = median_seconds(lambda: train_steps(50), 3)
    torch.set_num_threads(min(trial, key=trial.get))
    steps = sizes.torch_steps
    steps_per_sec = steps / median_seconds(lambda: train_steps(steps), sizes.repeats)
    log(f"torch eager: {steps_per_sec:,.0f} steps/s ({torch.get_num_threads()} threads)")

    # sample from the JAX-trained weights, so that both sample the same word lengths
    p, stats = variables["params"], variables["batch_stats"]["BatchNorm_0"]
    tt = {
        "C": p["Embed_0"]["embedding"],
        "W1": p["Dense_0"]["kernel"],
        "W2": p["Dense_1"]["kernel"],
        "b2": p["Dense_1"]["bias"],
        "gain": p["BatchNorm_0"]["scale"],
        "bias": p["BatchNorm_0"]["bias"],
        "mean": stats["mean"],
        "var": stats["var"],
    }
    tt = {k: torch.from_numpy(np.array(v, np.float32)) for k, v in tt.items()}
    boundary = ds.vocab.boundary_id

    @torch.no_grad()
    def sample_words(n: int) -> list[list[int]]:
        words = []
        for _ in range(n):
            out, context = [], [boundary] * T
            while True:
                hpreact = tt["C"][torch.tensor([context])].view(1, -1) @ tt["W1"]
                hpreact = (hpreact - tt["mean"]) / torch.sqrt(tt["var"] + eps)
                logits = torch.tanh(hpreact * tt["gain"] + tt["bias"]) @ tt["W2"] + tt["b2"]
                probs = F.softmax(logits, dim=1)
                ix = torch.multinomial(probs, num_samples=1, generator=g).item()
                context = context[1:] + [ix]
                if ix == boundary:
                    break
                out.append(ix)
                if len(out) >= max_len:
                    break
            words.append(out)
        return words

    sample_words(5)
    n = sizes.torch_words
    names_per_sec = n / median_seconds(lambda: sample_words(n), sizes.repeats)
    log(f"torch per-word sampling: {names_per_sec:,.0f} names/s")
    return steps_per_sec, names_per_sec, None


def torch_reference_training(
    config, ds, sizes: Sizes, log: Callable[[str], None]
) -> tuple[float | None, None, str | None]:
    """Train steps/s of scripts/torch_wavenet.py on the same data, shapes and batch size as the
    config (no sampling reference). The Transformer and the GRU are timed interleaved with
    the JAX step instead (bench_vs_torch)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return None, None, "torch is not installed (pip install -e '.[bench]')"
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from torch_wavenet import torch_wavenet_chars_per_sec

    X, Y = ds.split("train")
    m = config.model
    steps = max(sizes.torch_steps // 20, 20)
    chars = torch_wavenet_chars_per_sec(
        X, Y, ds.vocab.size, n_embd=m.n_embd, n_hidden=m.n_hidden,
        batch_size=config.batch_size, steps=steps * 10,
    )  # fmt: skip
    steps_per_sec = chars / config.batch_size  # a window is one character
    log(f"torch eager {m.name}: {steps_per_sec:,.1f} steps/s")
    return steps_per_sec, None, None


# ---------------------------------------------------------------------------------------------
# forced host device counts


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


# ---------------------------------------------------------------------------------------------
# sweeps: many models in one vmapped program


def bench_sweep(
    config, counts: Sequence[int], sizes: Sizes, log: Callable[[str], None]
) -> dict[str, Any]:
    """Aggregate model-steps/s of `jax_makemore.sweep`'s compiled chunk with N members (seeds
    0..N-1 of `config`) spread over the local devices as the sweep command spreads them, each
    N timed side by side with one model's fused chunk (`train`'s, on one device), alternating
    calls in this one process so that both see the same load; and the compiled sweep
    program's memory (XLA's memory analysis: arguments, outputs and temporaries)."""
    from jax_makemore import sweep, sweep_program

    members = sweep.expand_members(config, [("seed", f"0:{max(counts)}")])
    group = sweep.group_members(members[:1])[0]
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
    state, losses = single(state, X_train, Y_train)  # compile + warm-up
    jax.device_get(losses)
    out: dict[str, Any] = {
        "sweep_note": (
            "N members (seeds) in sweep's compiled chunk (vmapped steps in tiles, members split "
            "over sweep_devices) vs one model's fused chunk, timed alternately in one process; "
            "model-steps/s = N * steps / second"
        ),
        "sweep_model_steps_per_sec": {},
        "sweep_single_steps_per_sec": {},
        "sweep_speedup": {},
        "sweep_steps_per_call": {},
        "sweep_devices": {},
        "sweep_memory_mb": {},
    }
    for n in counts:
        g = dataclasses.replace(group, members=members[:n])
        leaves = sweep_program.stack_leaves([fresh_state(m.config.seed) for m in g.members])
        hp = sweep_program.member_hyperparameters(g, [m.config for m in g.members])
        mesh = sweep_program.member_mesh(config.num_devices, n)
        X_sweep, Y_sweep = sweep_program.replicate((X_train, Y_train), mesh)
        out["sweep_devices"][str(n)] = 1 if mesh is None else mesh.size
        size, tile = sweep_program.member_layout(n, mesh)
        leaves, hp = sweep_program.place_members((leaves, hp), mesh, size)
        # steps per call as the sweep command runs them (steps_per_call), capped for large N
        k = min(config.steps_per_call, max(10, 32 * k_single // n))
        fn = sweep_program.make_sweep_chunk(g, k, mesh, tile)
        compiled = fn.lower(leaves, hp, X_sweep, Y_sweep).compile()
        mem = compiled.memory_analysis()
        if mem is not None:
            total = mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
            out["sweep_memory_mb"][str(n)] = (total - mem.alias_size_in_bytes) / 2**20
        leaves, losses = compiled(leaves, hp, X_sweep, Y_sweep)  # warm-up
        jax.device_get(losses)
        t_single, t_sweep = [], []
        for _ in range(sizes.repeats):
            t0 = time.perf_counter()
            state, losses = single(state, X_train, Y_train)
            jax.device_get(losses)
            t_single.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            leaves, losses = compiled(leaves, hp, X_sweep, Y_sweep)
            jax.device_get(losses)
            t_sweep.append(time.perf_counter() - t0)
        one = k_single / statistics.median(t_single)
        agg = n * k / statistics.median(t_sweep)
        out["sweep_model_steps_per_sec"][str(n)] = agg
        out["sweep_single_steps_per_sec"][str(n)] = one
        out["sweep_speedup"][str(n)] = agg / one
        out["sweep_steps_per_call"][str(n)] = k
        log(
            f"sweep N={n}: {agg:,.0f} model-steps/s vs one model {one:,.0f} steps/s ({agg / one:.2f}x)"
        )
    out["peak_rss_mb"] = peak_rss_mb()
    return out


# ---------------------------------------------------------------------------------------------


def num(v: Any, unit: str = "") -> str:
    """The tables' format: thousands separators from 100 on, two decimals below."""
    return "n/a" if v is None else f"{v:,.0f}{unit}" if v >= 100 else f"{v:.2f}{unit}"


def makemore_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    """Table rows of the cached/recompute sampling and the interleaved makemore comparison
    (present only where the JSON has them)."""
    rows = []
    if r.get("sample_recompute_by_batch"):
        rows += [
            (f"sample recompute, batch {b}", num(v, " names/s"))
            for b, v in r["sample_recompute_by_batch"].items()
        ]
    labelled = [
        ("train_chars_per_sec", "train, default step (interleaved)", " chars/s"),
        ("train_padded_chars_per_sec", "train, padded step (interleaved)", " chars/s"),
        ("torch_eager_chars_per_sec", "torch eager (interleaved)", " chars/s"),
        ("torch_compile_chars_per_sec", "torch.compile (interleaved)", " chars/s"),
        ("speedup_train_chars", "speedup chars (JAX / torch eager)", "x"),
        ("speedup_vs_compile_chars", "speedup chars (JAX / torch.compile)", "x"),
        ("sample_cached_vs_recompute", "sample cached / recompute", "x"),
    ]
    rows += [(label, num(r[key], unit)) for key, label, unit in labelled if key in r]
    if r.get("torch_compile_error"):
        rows.append(("torch.compile error", r["torch_compile_error"]))
    return rows


def format_table(r: dict[str, Any]) -> str:
    rows = [
        ("machine", r.get("machine", "")),
        ("load average (1, 5, 15 min)", ", ".join(f"{x:.2f}" for x in r.get("load_average", []))),
        ("device", r["device"]),
        ("jax", r["jax_version"]),
        ("compile (train chunk)", num(r["compile_seconds"], " s")),
        ("train, one jit call per step", num(r["train_per_step_steps_per_sec"], " steps/s")),
        ("train, fused (steps_per_call)", num(r["train_fused_steps_per_sec"], " steps/s")),
    ]
    rows += [(f"  fused K={k}", num(v, " steps/s")) for k, v in r["train_fused_by_k"].items()]
    rows += [("eval (val split)", num(r["eval_examples_per_sec"], " examples/s"))]
    rows += [(f"sample, batch {b}", num(v, " names/s")) for b, v in r["sample_by_batch"].items()]
    rows += [
        ("train, characters", num(r.get("train_fused_chars_per_sec"), " chars/s")),
        (
            "achieved / matmul peak",
            f"{num(r.get('achieved_gflops'))} / {num(r.get('peak_matmul_gflops'))} GFLOP/s",
        ),
    ]
    rows += [
        (
            f"variant: {label}",
            num(v["steps_per_sec"], " steps/s") + ", " + num(v["chars_per_sec"], " chars/s"),
        )
        for label, v in r.get("variants", {}).items()
    ]
    rows += [
        ("peak RSS", num(r["peak_rss_mb"], " MB")),
        ("torch eager train", num(r["torch_eager_steps_per_sec"], " steps/s")),
        # makemore.py's batched generate for sequence models, its per-word loop for windows
        ("torch sampling", num(r["torch_sample_names_per_sec"], " names/s")),
        ("speedup train (fused / torch)", num(r["speedup_train"], "x")),
        ("speedup sample (batch / torch)", num(r["speedup_sample"], "x")),
    ]
    rows += makemore_rows(r)
    if "train_fused_by_devices" in r:
        for n, v in r["train_fused_by_devices"]["steps_per_sec"].items():
            rows.append((f"simulated devices={n}", num(v, " steps/s")))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def markdown_table(results: Sequence[dict[str, Any]], labels: Sequence[str]) -> str:
    """One column per bench JSON, one row per figure (the README's benchmark table)."""

    def num(v: Any) -> str:
        return "–" if v is None else f"{v:,.0f}" if v >= 100 else f"{v:.2f}"

    rows: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
        ("compile, train chunk (s)", lambda r: r["compile_seconds"]),
        ("train, one jit call per step (steps/s)", lambda r: r["train_per_step_steps_per_sec"]),
    ]
    rows += [
        (f"train, fused, K={k} steps per call (steps/s)", lambda r, k=k: r["train_fused_by_k"][k])
        for k in results[0]["train_fused_by_k"]
    ]
    rows += [("eval, val split (examples/s)", lambda r: r["eval_examples_per_sec"])]
    rows += [
        (f"sample, batch {b} (names/s)", lambda r, b=b: r["sample_by_batch"][b])
        for b in results[0]["sample_by_batch"]
    ]
    rows += [
        (
            f"PyTorch eager train, batch {results[0]['batch_size']} (steps/s)",
            lambda r: r["torch_eager_steps_per_sec"],
        ),
        ("PyTorch sampling (names/s)", lambda r: r["torch_sample_names_per_sec"]),
        ("speedup, fused train / PyTorch", lambda r: r["speedup_train"]),
        ("speedup, batch sampling / PyTorch", lambda r: r["speedup_sample"]),
        ("peak RSS of the bench, JAX part (MB)", lambda r: r["peak_rss_mb"]),
    ]
    with_devices = [r["train_fused_by_devices"] for r in results if "train_fused_by_devices" in r]
    if with_devices:
        rows += [
            (
                f"train, {n} simulated CPU devices (steps/s)",
                lambda r, n=n: r.get("train_fused_by_devices", {}).get("steps_per_sec", {}).get(n),
            )
            for n in with_devices[0]["steps_per_sec"]
        ]
    lines = [
        "| | " + " | ".join(labels) + " |",
        "|---|" + "---:|" * len(labels),
        "| device | " + " | ".join(r["device"] for r in results) + " |",
        "| jax | " + " | ".join(r["jax_version"] for r in results) + " |",
    ]
    lines += [
        f"| {name} | " + " | ".join(num(get(r)) for r in results) + " |" for name, get in rows
    ]
    return "\n".join(lines)


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


def main(argv: Sequence[str]) -> int:
    argv, overrides = config_lib.split_config_args(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(r, indent=2) + "\n", encoding="utf-8")
            log(f"wrote {args.out}")
        return 0
    r = bench_config(config, sizes, log)
    if counts:
        r["train_fused_by_devices"] = bench_devices(args.config, overrides, counts, sizes, log)
    r["load_average_end"] = list(os.getloadavg())

    print(format_table(r))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(r, indent=2) + "\n", encoding="utf-8")
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
