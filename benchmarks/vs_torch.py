"""Training against makemore.py in PyTorch, eager and under torch.compile, interleaved with
the JAX step in one process."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.machine import Sizes, interleave
from benchmarks.torch_gru import make_gru
from benchmarks.torch_transformer import TorchTrainer, make_gpt, makemore_generate
from jax_makemore.batches import packing_from_config
from jax_makemore.train import create_train_state, make_train_chunk

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
    """makemore.py's model of `config` (benchmarks.torch_transformer, benchmarks.torch_gru)."""
    m = config.model
    if m.name == "transformer":
        return make_gpt(ds.vocab.size, ds.seq_len, m.n_layer, m.n_head, m.n_embd)
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
    makemore_generate(torch_model, batch, ds.longest_word, ds.seq_len, ds.vocab.boundary_id)
    return float(batch)
