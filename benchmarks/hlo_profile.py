"""Where a train step's time goes: jax.profiler's trace of the ops, by part of the model."""

from __future__ import annotations

import dataclasses
import json
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from jax_makemore.batches import packing_from_config
from jax_makemore.train import create_train_state, make_train_chunk

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
