"""The project's train step, fused chunks, evaluation and arithmetic throughput, timed."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.machine import Sizes, median_seconds
from jax_makemore import config as config_lib
from jax_makemore.batches import packing_from_config
from jax_makemore.data import dataset_from_config
from jax_makemore.loss import evaluate_loss, make_eval_step
from jax_makemore.models import get_spec
from jax_makemore.restore import variables_of
from jax_makemore.train import create_train_state, make_train_chunk, make_train_step

FUSED_KS = (1, 10, 100, 1000)


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
